"""Property-based: no request body gives a server error, on serve and on the proxy.

Hypothesis generates JSON values (nested up to a depth and size limit), objects shaped like
each request format with arbitrary members, v2 tensors with arbitrary shapes and datatypes,
deep nesting, huge numbers and bytes that are not JSON; at least 2,000 bodies per server,
each sent over real HTTP. Every answer must be below 500.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import running
from upstreams import lenient_upstream

from monitor.serving import ServingConfig, build_proxy_app
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

EXAMPLES = 2_000
KEYS = ("instances", "inputs", "dataframe_split", "dataframe_records", "features", "columns",
        "data", "shape", "datatype", "name", "id", "parameters")

numbers = (st.integers(min_value=-(10**400), max_value=10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5))
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=4),
    max_leaves=40)
rows = st.lists(st.lists(numbers | scalars, min_size=0, max_size=15), min_size=0, max_size=4)
tensor = st.fixed_dictionaries(
    {"name": st.text(max_size=4) | st.integers(), "shape": st.lists(
        st.integers(-2, 2**33) | scalars, max_size=3),
     "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL"]) | json_values,
     "data": rows | json_values})
shaped = st.one_of(
    st.fixed_dictionaries({"instances": rows | json_values}),
    st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3) | rows | st.dictionaries(
        st.text(max_size=4), st.lists(numbers, max_size=4), max_size=4)}),
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries(
        {"columns": st.lists(scalars | json_values, max_size=14), "data": rows})}),
    st.fixed_dictionaries({"dataframe_records": st.lists(st.dictionaries(
        st.text(max_size=6), numbers | json_values, max_size=14), max_size=3)}),
    st.fixed_dictionaries({"features": rows | st.lists(numbers, max_size=14) | json_values}),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4),
)


def encoded(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


valid = st.lists(st.lists(st.floats(-10, 10), min_size=13, max_size=13), min_size=1,
                 max_size=3)
bodies = st.one_of(
    valid.map(lambda r: encoded({"instances": r})),
    json_values.map(encoded),
    shaped.map(encoded),
    shaped.map(encoded),
    st.integers(1, 4000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 4000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.binary(max_size=64),
    st.tuples(shaped, shaped).map(lambda p: encoded(p[0])[:-1] + b"," + encoded(p[1])[1:]),
)


@pytest.fixture(scope="module")
def victim():
    return load_victim("wine-tree", output_mode="proba", seed=0)


def fuzz(base: str) -> list[int]:
    statuses: list[int] = []
    with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": "fuzzer"}) as c:

        @given(body=bodies)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_5xx(body):
            r = c.post("/predict", content=body, headers={"content-type": "application/json"})
            statuses.append(r.status_code)
            assert r.status_code < 500, (body[:200], r.text[:200])

        no_5xx()
    return statuses


@pytest.mark.slow
@pytest.mark.parametrize("where", ["serve", "proxy"])
def test_no_body_gives_a_server_error(victim, where):
    config = ServingConfig(salt="fuzz")
    if where == "serve":
        server = running(build_victim_app(victim, build_victim_monitor(victim), config))
        statuses = _run(server)
    else:
        with running(lenient_upstream(victim)) as upstream:
            server = running(build_proxy_app(upstream, build_victim_monitor(victim), config))
            statuses = _run(server)
    assert len(statuses) >= EXAMPLES
    assert 200 in statuses and max(statuses) < 500
    assert {400, 422} <= set(statuses)  # both kinds of refusal reached


def _run(server) -> list[int]:
    with server as base:
        return fuzz(base)
