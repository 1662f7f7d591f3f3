"""Property-based: schemathesis cases from the served OpenAPI schema never get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from serving_helpers import running

from monitor.serving import ServingConfig
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor


@pytest.mark.slow
def test_no_server_errors_on_any_schema_case():
    v = load_victim("wine-tree")
    app = build_victim_app(v, build_victim_monitor(v), ServingConfig(salt="s"), admin_token="t")
    with running(app) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert [op.path for op in operations] == ["/predict"]
        statuses: list[int] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=200, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def no_5xx(case):
                response = case.call(base_url=base, headers={"X-API-Key": "fuzzer"})
                statuses.append(response.status_code)
                assert response.status_code < 500, response.text

            no_5xx()
        assert len(statuses) >= 50 and 200 in statuses  # valid requests were generated too
