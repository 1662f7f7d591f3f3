"""Issue 13, serving: every request format the real servers accept, end to end over real
HTTP through the proxy with its default routes; an app's own schema and /metrics survive the
middleware; the extractor hook; key lookup; the startup banner and the warnings that say
when nothing (or no boundary evidence) is observed."""

from __future__ import annotations

import json
import logging
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from serving_helpers import client, running
from upstreams import format_upstream

from monitor import Monitor
from monitor.serving import (
    DEFAULT_EXTRACTORS,
    ClientIdentifier,
    ExtractionMonitorMiddleware,
    ServingConfig,
    build_proxy_app,
    extractor,
)
from monitor.serving.extractors import PredictionsExtractor
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "formats-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SALT = "formats-salt"


@pytest.fixture(scope="module")
def victim():
    return load_victim("wine-tree", output_mode="proba", seed=0)


def cases(victim):
    X = victim.X_public[:3]
    names = list(victim.feature_names)
    cols = {n: X[:, i].tolist() for i, n in enumerate(names)}
    records = [dict(zip(names, row, strict=True)) for row in X.tolist()]
    csv = ",".join(names) + "\n" + "\n".join(",".join(map(repr, r)) for r in X.tolist())
    tensor = {"name": "x", "shape": list(X.shape), "datatype": "FP64",
              "data": X.ravel().tolist()}
    per_column = [{"name": n, "shape": [3], "datatype": "FP64", "data": cols[n]}
                  for n in names]
    return X, [
        ("/invocations", {"dataframe_split": {"columns": names[::-1],
                                              "data": X[:, ::-1].tolist()}}, "predictions"),
        ("/invocations", {"dataframe_records": records}, "predictions"),
        ("/invocations", {"instances": X.tolist()}, "predictions"),
        ("/invocations", {"inputs": cols}, "predictions"),
        ("/invocations", {"inputs": X.tolist()}, "predictions"),
        ("/invocations", csv, "predictions"),
        ("/v1/models/wine:predict", {"instances": X.tolist()}, "predictions"),
        ("/v1/models/wine:predict", {"instances": records}, "predictions"),
        ("/v1/models/wine:predict", {"signature_name": "serving_default", "inputs": cols},
         "outputs"),
        ("/v1/models/wine/versions/2:predict", {"instances": X.tolist()}, "predictions"),
        ("/v2/models/wine/infer", {"inputs": [tensor]}, "v2"),
        ("/v2/models/wine/infer", {"inputs": per_column}, "v2"),
        ("/predictions/wine", {"instances": X.tolist()}, "predictions"),
        ("/predict", {"features": X.tolist()}, "predictions"),
    ]


def test_every_format_through_the_default_routes(victim):
    X, formats = cases(victim)
    expected = victim.answer(X)
    with running(format_upstream(victim)) as upstream:
        app = build_proxy_app(upstream, build_victim_monitor(victim),
                              ServingConfig(salt=SALT), TOKEN,
                              feature_names=list(victim.feature_names))
        with running(app) as base, client(base, "formats") as c:
            for i, (path, body, kind) in enumerate(formats):
                if isinstance(body, str):
                    r = c.post(path, content=body, headers={"content-type": "text/csv"})
                else:
                    r = c.post(path, json=body)
                assert r.status_code == 200, (path, r.text)
                out = r.json()
                got = (np.reshape(out["outputs"][0]["data"], out["outputs"][0]["shape"])
                       if kind == "v2" else out[kind])
                assert np.allclose(got, expected), path
                cid = ClientIdentifier(SALT).hash_key("formats")
                n = c.get(f"/monitor/clients/{cid}", headers=ADMIN).json()["n_queries"]
                assert n == 3 * (i + 1), f"{path} {str(body)[:60]} was not observed"


def records_app(registry, extractors=DEFAULT_EXTRACTORS, victim=None, monitor=None,
                metrics_registry=None):
    """A FastAPI app with its own /metrics and its own body schema on /predict."""
    app = FastAPI()
    hits = Counter("app_predictions", "the app's own metric", registry=registry)
    names = list(victim.feature_names)

    @app.post("/predict")
    async def predict(request: Request):
        body = await request.json()
        X = pd.DataFrame(body["records"])[names].to_numpy()
        hits.inc()
        return JSONResponse({"predictions": victim.answer(X).tolist()})

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type="text/plain")

    app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor,
                       config=ServingConfig(salt=SALT), admin_token=TOKEN,
                       extractors=extractors, metrics_registry=metrics_registry,
                       feature_names=names)
    return app


@extractor(matches=lambda body: isinstance(body, dict) and "records" in body)
def records(body):
    return pd.DataFrame(body["records"])


def test_an_apps_own_schema_and_metrics_survive_and_the_hook_reads_the_schema(victim):
    X = victim.X_public[:2]
    body = {"records": [dict(zip(victim.feature_names, r, strict=True)) for r in X.tolist()]}
    registry = CollectorRegistry()
    app = records_app(registry, victim=victim, monitor=build_victim_monitor(victim))
    with running(app) as base, client(base, "own-schema") as c:
        r = c.post("/predict", json=body)  # no extractor knows it: passed, not broken
        assert r.status_code == 200 and np.allclose(r.json()["predictions"], victim.answer(X))
        own = c.get("/metrics").text
        assert "app_predictions_total 1.0" in own and "extraction_monitor" not in own
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'extraction_monitor_unobserved_requests_total{reason="unrecognised_format"} 1.0' \
            in text
    registry = CollectorRegistry()
    app = records_app(registry, extractors=(*DEFAULT_EXTRACTORS, records), victim=victim,
                      monitor=build_victim_monitor(victim), metrics_registry=registry)
    with running(app) as base, client(base, "own-schema") as c:
        r = c.post("/predict", json=body)
        assert r.status_code == 200, r.text
        cid = ClientIdentifier(SALT).hash_key("own-schema")
        assert c.get(f"/monitor/clients/{cid}", headers=ADMIN).json()["n_queries"] == 2
        merged = c.get("/metrics").text  # merged into the app's registry
        assert "app_predictions_total 1.0" in merged
        assert "extraction_monitor_queries_total 2.0" in merged


class BrokenRecords(PredictionsExtractor):
    """A class-based extractor with a bug: its own code raises, not the request's."""

    name = "broken"

    def matches(self, payload):
        return isinstance(payload, dict) and "records" in payload

    def parse_request(self, payload, feature_names):
        raise KeyError("a bug in the user's extractor")


def test_an_extractor_that_raises_passes_the_request_to_the_app(victim, caplog):
    X = victim.X_public[:2]
    body = {"records": [dict(zip(victim.feature_names, r, strict=True)) for r in X.tolist()]}
    app = records_app(CollectorRegistry(), extractors=(BrokenRecords(), *DEFAULT_EXTRACTORS),
                      victim=victim, monitor=build_victim_monitor(victim))
    with running(app) as base, client(base, "buggy") as c:
        r = c.post("/predict", json=body)
        assert r.status_code == 200 and np.allclose(r.json()["predictions"], victim.answer(X))
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'unobserved_requests_total{reason="extractor_failed"} 1.0' in text
        assert "extraction_monitor_observe_errors_total 1.0" in text
    assert any("reading a request on /predict failed" in m.message for m in caplog.records)


def test_a_number_past_float64_is_a_422_saying_so(victim):
    row = ", ".join(["0"] * (victim.X_public.shape[1] - 1) + ["9" * 400])
    with running(build_victim_app(victim, build_victim_monitor(victim), ServingConfig(
            salt=SALT), admin_token=TOKEN)) as base, client(base, "big") as c:
        r = c.post("/predict", content=f'{{"instances": [[{row}]]}}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "too large" in r.text


def test_a_typod_column_is_a_422_naming_the_unknown_and_the_missing_column(victim):
    names = list(victim.feature_names)
    record = dict(zip(names, victim.X_public[0].tolist(), strict=True))
    record["malc_acid"] = record.pop("malic_acid")  # a typo
    with running(build_victim_app(victim, build_victim_monitor(victim), ServingConfig(
            salt=SALT), admin_token=TOKEN)) as base, client(base, "typist") as c:
        r = c.post("/predict", json={"instances": [record]})
        assert r.status_code == 422, r.text
        assert r.json()["error"] == ("unknown column 'malc_acid' (did you mean 'malic_acid'?); "
                                     "missing column 'malic_acid'")
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'rejected_requests_total{reason="missing_column"} 1.0' in text


def test_unreadable_bodies_per_policy(victim, caplog):
    body = {"records": [{"a": 1}]}
    with running(build_victim_app(victim, build_victim_monitor(victim), ServingConfig(
            salt=SALT, unparseable="observe-none"), admin_token=TOKEN)) as base, \
            client(base, "k") as c:
        caplog.clear()
        r = c.post("/predict", json=body)  # passed to the app (which refuses it), not logged
        assert r.status_code == 400 and not any("passed unobserved" in m.message
                                                for m in caplog.records)
        assert 'unobserved_requests_total{reason="unrecognised_format"} 1.0' in c.get(
            "/monitor/metrics", headers=ADMIN).text
    with running(build_victim_app(victim, build_victim_monitor(victim), ServingConfig(
            salt=SALT, unparseable="reject"), admin_token=TOKEN)) as base, \
            client(base, "k") as c:
        r = c.post("/predict", json=body)
        assert r.status_code == 400 and "unrecognised request format" in r.json()["error"]
    X = np.random.default_rng(0).uniform(victim.lower, victim.upper, (60, victim.n_features))
    with running(build_victim_app(victim, build_victim_monitor(victim), ServingConfig(
            salt=SALT, actions=["degrade"]), admin_token=TOKEN)) as base, \
            client(base, "flagged") as c:
        c.post("/predict", json={"instances": X.tolist()})
        r = c.post("/predict", json=body)  # a flagged client's unreadable body: refused
        assert r.status_code == 403 and "cannot be read" in r.json()["error"]


def test_lookup_by_key_over_http_and_on_the_command_line(victim, tmp_path, capsys):
    from monitor.cli import main

    db = f"sqlite://{tmp_path}/state.db"
    from monitor.stores import open_store

    monitor = Monitor(build_victim_monitor(victim).profile, model=victim.model,
                      store=open_store(db))
    app = build_victim_app(victim, monitor, ServingConfig(salt=SALT), admin_token=TOKEN)
    with running(app) as base, client(base, "alice-key") as c:
        assert c.post("/predict", json={"features": victim.X_public[0].tolist()}
                      ).status_code == 200
        r = c.post("/monitor/lookup", json={"key": "alice-key"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["known"]
        assert r.json()["client_id"] == ClientIdentifier(SALT).hash_key("alice-key")
        assert r.json()["verdict"]["n_queries"] == 1
        assert c.post("/monitor/lookup", json={"key": "alice-key"}).status_code == 401
        assert c.post("/monitor/lookup", json={"kee": "x"}, headers=ADMIN).status_code == 400
    import os

    os.environ["EXTRACTION_MONITOR_SALT"] = SALT
    try:
        assert main(["admin", "lookup", "alice-key", "--state", db]) == 0
    finally:
        del os.environ["EXTRACTION_MONITOR_SALT"]
    out = json.loads(capsys.readouterr().out)
    assert out["client_id"] == ClientIdentifier(SALT).hash_key("alice-key")
    assert out["known"] and out["n_queries"] == 1


def test_banner_label_only_and_silence_warnings(caplog):
    v = load_victim("wine-tree", output_mode="label")
    monitor = build_victim_monitor(v)
    monitor.model = None  # a label-only API, and no --model
    caplog.set_level(logging.INFO, logger="extraction_monitor")
    app = build_victim_app(v, monitor, ServingConfig(salt=SALT, silence_seconds=0.5),
                           admin_token=TOKEN)
    with running(app) as base, client(base, "k") as c:
        banner = [r.message for r in caplog.records if r.message.startswith("watching ")]
        assert any(line.startswith("watching /invocations (MLflow): formats") for line in banner)
        assert len(banner) == len(ServingConfig().routes)
        for row in v.X_public[:3]:
            assert c.post("/predict", json={"features": row.tolist()}).status_code == 200
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'extraction_monitor_detector_without_evidence{detector="boundary"} 1.0' in text
        time.sleep(0.6)
        for _ in range(12):  # requests flow, none observed
            c.get("/openapi.json")
        text = c.get("/monitor/metrics", headers=ADMIN).text
    warnings = [r.message for r in caplog.records if "boundary detector gets no evidence"
                in r.message]
    assert len(warnings) == 1
    assert "extraction_monitor_silence_warnings_total 1.0" in text
    assert any("none observed" in r.message for r in caplog.records)


@pytest.mark.slow
def test_route_option_on_proxy_and_serve(victim, tmp_path):
    from serving_helpers import serve_process

    with serve_process(["serve", "--victim", "wine-tree", "--state", "memory://",
                        "--route", "/score"], TOKEN, SALT) as admin:
        with httpx.Client(base_url=str(admin.base_url), headers={"X-API-Key": "r"}) as c:
            r = c.post("/predict", json={"features": victim.X_public[0].tolist()})
            assert r.status_code == 200  # /predict is no longer watched
        assert admin.get("/monitor/clients").json()["total"] == 0


def test_the_app_gets_the_rows_the_middleware_read(victim):
    seen = []
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        ex = getattr(request.state, "extraction_monitor_rows", None)
        seen.append(None if ex is None else ex.X.copy())
        X = ex.X if ex is not None else np.asarray((await request.json())["instances"])
        return JSONResponse({"predictions": victim.answer(X).tolist()})

    app.add_middleware(ExtractionMonitorMiddleware, monitor=build_victim_monitor(victim),
                       config=ServingConfig(salt=SALT), admin_token=TOKEN,
                       feature_names=list(victim.feature_names))
    X = victim.X_public[:3]
    with running(app) as base, client(base, "parsed-once") as c:
        r = c.post("/predict", json={"instances": X.tolist()})
        assert r.status_code == 200 and np.allclose(r.json()["predictions"], victim.answer(X))
        r = c.post("/predict", json={"dataframe_records": [
            dict(zip(victim.feature_names[::-1], row[::-1], strict=True)) for row in X.tolist()]})
        assert r.status_code == 200
    assert len(seen) == 2 and all(s is not None for s in seen)
    np.testing.assert_array_equal(seen[0], X)
    np.testing.assert_array_equal(seen[1], X)  # named columns in the profile's order


def test_an_unreadable_answer_is_warned_once_per_route_and_counted(victim, caplog):
    """The app answers in its own shape, which no extractor reads: the monitor observes
    without outputs, says so once for the route (naming the fix) and counts every one."""
    caplog.set_level(logging.WARNING, logger="extraction_monitor")
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        X = np.asarray((await request.json())["instances"], dtype=float)
        return {"results": [{"p": p} for p in victim.answer(X).tolist()]}

    monitor = build_victim_monitor(victim)
    app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor, routes=["/predict"],
                       config=ServingConfig(salt=SALT), admin_token=TOKEN)
    with running(app) as base, client(base, "custom") as c:
        for row in victim.X_public[:4]:
            r = c.post("/predict", json={"instances": [row.tolist()]})
            assert r.status_code == 200 and "results" in r.json()
        text = c.get("/monitor/metrics", headers=ADMIN).text
    warnings = [m.getMessage() for m in caplog.records if "cannot be read" in m.getMessage()]
    assert len(warnings) == 1, warnings
    assert "/predict" in warnings[0] and "@extractor(outputs=...)" in warnings[0]
    assert 'extraction_monitor_unread_answers_total{reason="no_outputs"} 4.0' in text
    assert monitor.verdict(ClientIdentifier(SALT).hash_key("custom")).n_queries == 4
