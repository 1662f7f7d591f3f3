"""The monitored victim app over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from serving_helpers import client, running

from monitor.serving import ServingConfig
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def victim():
    return load_victim("wine-tree", output_mode="proba", seed=0)


def serve(victim, **config):
    monitor = build_victim_monitor(victim)
    app = build_victim_app(victim, monitor, ServingConfig(salt="t", **config), admin_token=TOKEN)
    return running(app)


def attack_rows(victim, n, seed=1):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper, (n, victim.n_features))


def benign_rows(victim, n, seed=2):
    rng = np.random.default_rng(seed)
    return victim.X_public[rng.integers(0, len(victim.X_public), n)]


def test_every_format_answers_in_its_own_format(victim):
    X = benign_rows(victim, 3)
    expected = victim.answer(X)
    names = victim.feature_names
    with serve(victim) as base, client(base, "formats") as c:
        r = c.post("/predict", json={"instances": X.tolist()})
        assert r.status_code == 200
        assert np.allclose(r.json()["predictions"], expected)
        r = c.post("/predict", json={"inputs": X.tolist()})
        assert np.allclose(r.json()["predictions"], expected)
        r = c.post("/predict", json={"instances": [dict(zip(names, row, strict=True))
                                                   for row in X.tolist()]})
        assert np.allclose(r.json()["predictions"], expected)
        r = c.post("/predict", json={"inputs": [{"name": "x", "shape": list(X.shape),
                                                 "datatype": "FP64", "data": X.ravel().tolist()}],
                                     "id": "req-1"})
        out = r.json()
        assert out["id"] == "req-1" and out["model_name"] == "wine-tree"
        tensor = out["outputs"][0]
        assert tensor["shape"] == list(expected.shape) and tensor["datatype"] == "FP64"
        assert np.allclose(np.reshape(tensor["data"], tensor["shape"]), expected)
        cols = names[::-1]  # columns in another order are mapped by name
        r = c.post("/predict", json={"dataframe_split": {
            "columns": cols, "data": X[:, ::-1].tolist()}})
        assert np.allclose(r.json()["predictions"], expected)
        r = c.post("/predict", json={"dataframe_records": [dict(zip(names, row, strict=True))
                                                           for row in X.tolist()]})
        assert np.allclose(r.json()["predictions"], expected)
        r = c.post("/predict", json={"features": X[0].tolist()})
        assert np.allclose(r.json()["prediction"], expected[0])
        r = c.post("/predict", json={"features": X.tolist()})
        assert np.allclose(r.json()["predictions"], expected)
        detail = c.get(f"/monitor/clients/{_client_id(c, base)}", headers=ADMIN).json()
        assert detail["n_queries"] == 8 * 3 - 2  # the single-row request has one row


def _client_id(c, base):
    rows = c.get("/monitor/clients", headers=ADMIN).json()["clients"]
    assert len(rows) == 1
    return rows[0]["client_id"]


def test_label_output_mode_answers_labels():
    v = load_victim("wine-tree", output_mode="label")
    with serve(v) as base, client(base, "k") as c:
        X = benign_rows(v, 4)
        r = c.post("/predict", json={"instances": X.tolist()})
        assert r.json()["predictions"] == v.answer(X).tolist()


def test_benign_stays_unflagged_attacker_is_blocked_from_the_flagging_query(victim):
    with serve(victim, actions=[{"action": "log"}, {"action": "block"}]) as base, \
            client(base, "benign-key") as good, client(base, "attacker-key") as bad:
        for row in benign_rows(victim, 80):
            assert good.post("/predict", json={"instances": [row.tolist()]}).status_code == 200
        statuses = [bad.post("/predict", json={"instances": [row.tolist()]}).status_code
                    for row in attack_rows(victim, 60)]
        assert 403 in statuses, "the uniform-random attacker was not blocked within 60 queries"
        first = statuses.index(403)
        assert set(statuses[:first]) == {200} and set(statuses[first:]) == {403}
        clients = good.get("/monitor/clients", params={"sort": "-score"}, headers=ADMIN).json()
        assert clients["total"] == 2
        top, other = clients["clients"]
        assert top["flagged"] and not other["flagged"]
        assert top["flag_at"] == first  # the request holding the flagging row got the 403
        detail = good.get(f"/monitor/clients/{top['client_id']}", headers=ADMIN).json()
        for key in ("client_id", "n_queries", "score", "flagged", "flag_at", "reason",
                    "detectors"):
            assert key in detail
        assert detail["action"] == "block" and len(detail["history"]) > 0
        assert "attacker-key" not in json.dumps(clients)  # raw keys are never exposed
        metrics = good.get("/monitor/metrics", headers=ADMIN).text
        assert 'extraction_monitor_requests_total{outcome="blocked"} 61.0' not in metrics
        assert 'outcome="blocked"' in metrics and "attacker" not in metrics
        assert "extraction_monitor_flagged_clients 1.0" in metrics
        r = good.post(f"/monitor/clients/{top['client_id']}/reset", headers=ADMIN)
        assert r.status_code == 200
        row = attack_rows(victim, 1, seed=9)[0]
        assert bad.post("/predict", json={"instances": [row.tolist()]}).status_code == 200


def test_batch_request_that_flags_is_throttled_with_retry_after(victim):
    with serve(victim, actions=["throttle"], throttle_rate=0.01) as base, \
            client(base, "batcher") as c:
        r = c.post("/predict", json={"instances": attack_rows(victim, 60).tolist()})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and "retry after" in r.json()["error"]
        again = c.post("/predict", json={"features": attack_rows(victim, 1, 5)[0].tolist()})
        assert again.status_code == 429


@pytest.mark.parametrize("mode", ["flatten", "label", "round"])
def test_degraded_answers_after_flag(victim, mode):
    with serve(victim, actions=["degrade"], degrade_mode=mode, degrade_decimals=0) as base, \
            client(base, "degraded") as c:
        X = attack_rows(victim, 60)
        r = c.post("/predict", json={"instances": X.tolist()})
        assert r.status_code == 200
        got, true = r.json()["predictions"], victim.answer(X)
        if mode == "label":
            assert got == victim.classes[true.argmax(axis=1)].tolist()
        else:
            got = np.asarray(got)
            assert got.shape == true.shape and not np.allclose(got, true)
            if mode == "flatten":
                assert np.allclose(got.sum(axis=1), 1)
                assert (got.argmax(axis=1) == true.argmax(axis=1)).all()
                assert got.max() <= 0.5 + 0.5 / 3 + 1e-9
            else:
                assert set(np.unique(got)) <= {0.0, 1.0}
        v2 = c.post("/predict", json={"inputs": [{"name": "x", "shape": [1, victim.n_features],
                                                  "datatype": "FP64",
                                                  "data": X[0].tolist()}]}).json()
        assert v2["outputs"][0]["datatype"] == ("INT64" if mode == "label" else "FP64")


def test_bad_input_gets_4xx_and_leaves_state_untouched(victim):
    d = victim.n_features
    with serve(victim, max_body_bytes=4096) as base, client(base, "sloppy") as c:
        ok = c.post("/predict", json={"features": [1.0] * d})
        assert ok.status_code == 200
        cases = [
            (b"{not json", 400, "not valid JSON"),
            (b'{"rows": [[1, 2]]}', 400, "unrecognised request format"),
            (json.dumps({"features": [1.0] * (d + 1)}).encode(), 422, f"expected {d} features"),
            (("{\"features\": [NaN" + ", 1" * (d - 1) + "]}").encode(), 422, "finite"),
            (("{\"instances\": [[Infinity" + ", 1" * (d - 1) + "]]}").encode(), 422, "finite"),
            (json.dumps({"instances": [["a"] * d]}).encode(), 422, "numbers"),
            (json.dumps({"instances": [[1.0] * d, [1.0]]}).encode(), 422, "equal-length"),
            (json.dumps({"features": [[1.0] * d] * 200}).encode(), 413, "exceeds the limit"),
        ]
        for body, status, message in cases:
            r = c.post("/predict", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:40], r.text)
            assert message in r.json()["error"]

        def chunks():  # no content-length: the limit is enforced while streaming
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/predict", content=chunks())
        assert r.status_code == 413
        detail = c.get(f"/monitor/clients/{_client_id(c, base)}", headers=ADMIN).json()
        assert detail["n_queries"] == 1


def test_admin_api_needs_the_token(victim):
    with serve(victim) as base, client(base) as c:
        assert c.get("/monitor/clients").status_code == 401
        assert c.get("/monitor/clients", headers={"Authorization": "Bearer nope"}
                     ).status_code == 401
        r = c.get("/monitor/clients", params={"limit": 0}, headers=ADMIN)
        assert r.status_code == 400 and "limit" in r.json()["error"]
        assert c.get("/monitor/clients/nobody", headers=ADMIN).status_code == 404
        assert c.get("/monitor/alerts", headers=ADMIN).json() == {"alerts": []}
        assert c.get("/monitor/metrics", headers=ADMIN).status_code == 200
    app = build_victim_app(victim, build_victim_monitor(victim), ServingConfig(salt="t"),
                           admin_token="")
    with running(app) as base, client(base) as c:
        assert c.get("/monitor/clients", headers=ADMIN).status_code == 404


def test_pagination_sorted_by_score(victim):
    with serve(victim) as base:
        for i in range(5):
            with client(base, f"user-{i}") as c:
                X = attack_rows(victim, 3 + 10 * i, seed=i)
                assert c.post("/predict", json={"instances": X.tolist()}).status_code == 200
        with client(base) as c:
            page1 = c.get("/monitor/clients", params={"limit": 2, "sort": "-n_queries"},
                          headers=ADMIN).json()
            page2 = c.get("/monitor/clients", params={"limit": 2, "offset": 2,
                                                      "sort": "-n_queries"},
                          headers=ADMIN).json()
            by_score = c.get("/monitor/clients", headers=ADMIN).json()["clients"]
    assert page1["total"] == 5
    counts = [r["n_queries"] for r in page1["clients"] + page2["clients"]]
    assert counts == [43, 33, 23, 13]
    scores = [r["score"] for r in by_score]
    assert scores == sorted(scores, reverse=True)
