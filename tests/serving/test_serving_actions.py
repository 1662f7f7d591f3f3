"""Webhook alerts with retries, fail-open / fail-closed when the monitor breaks, and the text
a blocked client gets."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from serving_helpers import client, running, wait_for

from monitor.serving import ServingConfig
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "t"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def webhook_receiver(failures: int):
    """A real HTTP webhook that fails its first ``failures`` calls with 500."""
    received: list[dict] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request):
        received.append(await request.json())
        if len(received) <= failures:
            return JSONResponse({"error": "try again"}, status_code=500)
        return {"ok": True}

    return app, received


def test_alert_is_posted_with_retries_and_listed():
    v = load_victim("wine-tree")
    hook_app, received = webhook_receiver(failures=1)
    with running(hook_app) as hook:
        cfg = ServingConfig(salt="s", webhook_url=f"{hook}/hook", webhook_backoff=0.05)
        app = build_victim_app(v, build_victim_monitor(v), cfg, admin_token=TOKEN)
        with running(app) as base, client(base, "attacker") as c:
            X = np.random.default_rng(0).uniform(v.lower, v.upper, (60, v.n_features))
            r = c.post("/predict", json={"instances": X.tolist()})
            assert r.status_code == 200  # default: log + alert, answer unchanged

            def delivered():
                alerts = c.get("/monitor/alerts", headers=ADMIN).json()["alerts"]
                return alerts and alerts[0]["status"] == "sent"

            assert wait_for(delivered)
            alert = c.get("/monitor/alerts", headers=ADMIN).json()["alerts"][0]
            assert alert["attempts"] == 2 and alert["verdict"]["flagged"]
            assert len(received) == 2 and received[1]["event"] == "client_flagged"
            assert received[1]["verdict"]["client_id"] == alert["verdict"]["client_id"]
            metrics = c.get("/monitor/metrics", headers=ADMIN).text
            assert 'extraction_monitor_alerts_total{result="sent"} 1.0' in metrics
            c.post("/predict", json={"instances": X[:5].tolist()})
            assert len(c.get("/monitor/alerts", headers=ADMIN).json()["alerts"]) == 1


class Broken:
    """Stands in for a bug: raises when called."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("exploded")


@pytest.mark.parametrize(("fail_mode", "status"), [("open", 200), ("closed", 503)])
def test_monitor_exception_fails_open_by_default(fail_mode, status):
    v = load_victim("wine-tree")
    monitor = build_victim_monitor(v)
    monitor._update = Broken()  # a bug in the monitor itself, outside the detectors
    app = build_victim_app(v, monitor, ServingConfig(salt="s", fail_mode=fail_mode),
                           admin_token=TOKEN)
    with running(app) as base, client(base, "k") as c:
        r = c.post("/predict", json={"features": v.X_public[0].tolist()})
        assert r.status_code == status
        if status == 200:
            assert np.allclose(r.json()["prediction"], v.answer(v.X_public[:1])[0])
        assert "extraction_monitor_observe_errors_total 1.0" in c.get("/monitor/metrics", headers=ADMIN).text


def test_a_broken_detector_is_counted_by_name_and_never_breaks_serving():
    v = load_victim("wine-tree")
    monitor = build_victim_monitor(v)
    monitor.detectors[monitor.detector_index("boundary")].pvalues = Broken()
    app = build_victim_app(v, monitor, ServingConfig(salt="s", fail_mode="closed"),
                           admin_token=TOKEN)
    with running(app) as base, client(base, "k") as c:
        for row in v.X_public[:3]:
            assert c.post("/predict", json={"features": row.tolist()}).status_code == 200
        metrics = c.get("/monitor/metrics", headers=ADMIN).text
    assert 'extraction_monitor_detector_errors_total{detector="boundary"} 3.0' in metrics
    assert 'extraction_monitor_detector_errors_total{detector="density"}' not in metrics or \
        'extraction_monitor_detector_errors_total{detector="density"} 0.0' in metrics
    assert "extraction_monitor_observe_errors_total 0.0" in metrics


@pytest.mark.parametrize("shadow", [False, True])
def test_shadow_mode_answers_the_flagging_request_and_blocks_from_the_next(shadow):
    v = load_victim("wine-tree")
    cfg = ServingConfig(salt="s", actions=["log", "block"], shadow=shadow)
    app = build_victim_app(v, build_victim_monitor(v), cfg, admin_token=TOKEN)
    rng = np.random.default_rng(11)
    with running(app) as base, client(base, "uniform") as c:
        statuses = [c.post("/predict", json={"features": rng.uniform(v.lower, v.upper)
                                             .tolist()}).status_code for _ in range(60)]
        from monitor.serving import ClientIdentifier

        cid = ClientIdentifier("s").hash_key("uniform")
        record = c.get(f"/monitor/clients/{cid}", headers=ADMIN).json()
    assert record["flagged"], record
    first_refused = statuses.index(403)
    flag_query = record["flag_at"]  # 0-based: the request that raised the flag
    # without shadow mode the flagging request itself is refused; with it, answered in full,
    # and the block holds once its observe has finished (a request sent while that observe
    # still ran is answered too: the client does not wait for the monitor)
    if shadow:
        assert flag_query < first_refused <= flag_query + 3, (statuses, flag_query)
    else:
        assert first_refused == flag_query, (statuses, flag_query)
    assert all(s == 200 for s in statuses[:first_refused])
    assert all(s == 403 for s in statuses[first_refused:])


@pytest.mark.parametrize("configured", [None, "service unavailable for this key"])
def test_a_blocked_client_gets_the_configured_refusal_text(configured):
    """The 403 does not tell an attacker it was caught: a neutral default, or the
    operator's own words."""
    v = load_victim("wine-tree", output_mode="proba")
    options = {} if configured is None else {"refusal_message": configured}
    app = build_victim_app(v, build_victim_monitor(v),
                           ServingConfig(salt="refusal", actions=["block"], **options))
    rng = np.random.default_rng(5)
    with running(app) as base, client(base, "thief") as c:
        answers = [c.post("/predict", json={"features": row.tolist()})
                   for row in rng.uniform(v.lower, v.upper, (60, v.n_features))]
    refused = [a for a in answers if a.status_code == 403]
    assert refused and answers[0].status_code == 200
    expected = configured or "request refused"
    assert all(a.json() == {"error": expected} for a in refused), refused[0].text
    assert all("flag" not in a.text and "extraction" not in a.text for a in refused)
