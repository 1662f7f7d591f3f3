"""Oracles, streams, benign behaviours and the demo client mix."""

import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException

from attacks import BudgetExhausted, ClientStream, HttpOracle, Oracle, benign_streams
from attacks.benign import (
    bursty_client,
    drifted_records,
    duplicate_records,
    sorted_batch,
    tiny_client,
)
from attacks.synthetic import demo_clients
from victims import load_victim


def test_oracle_records_and_enforces_budget():
    v = load_victim("wine-tree", output_mode="label")
    o = Oracle(v.answer, budget=5)
    o(v.X_public[:3])
    with pytest.raises(BudgetExhausted):
        o(v.X_public[3:6])
    o(v.X_public[3:5])
    assert o.n_queries == 5 and o.remaining == 0
    np.testing.assert_array_equal(o.queries, v.X_public[:5])
    np.testing.assert_array_equal(o.answers, v.answer(v.X_public[:5]))


def test_stream_rejects_bad_timestamps():
    with pytest.raises(ValueError, match="non-decreasing"):
        ClientStream("c", "k", False, np.zeros((3, 2)), ts=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        ClientStream("c", "k", False, np.zeros((3, 2)), ts=np.array([0.0, 1.0]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_victim():
    v = load_victim("cancer-logreg")
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict, x_api_key: str | None = Header(default=None)):
        if x_api_key != "secret":
            raise HTTPException(status_code=401, detail="bad key")
        return {"predictions": v.answer(np.asarray(body["instances"], dtype=float)).tolist()}

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield v, f"http://127.0.0.1:{port}/predict"
    server.should_exit = True
    thread.join(timeout=5)


def test_http_oracle_against_a_real_server(served_victim):
    import httpx

    v, url = served_victim
    with HttpOracle(url, api_key="secret", budget=10) as o:
        out = o(v.X_public[:4])
        np.testing.assert_allclose(out, v.answer(v.X_public[:4]))
        assert o.n_queries == 4
    with HttpOracle(url, api_key="wrong", budget=10) as bad, pytest.raises(httpx.HTTPStatusError):
        bad(v.X_public[:1])


PERTURBED = {"benign-tail-jitter", "benign-prototype", "benign-what-if", "benign-full-sweep"}


@pytest.mark.parametrize("name", ["wine-tree", "digits-mlp"])
def test_benign_streams_use_public_records_only(name):
    v = load_victim(name)
    public = {r.tobytes() for r in v.X_public}
    private = {r.tobytes() for r in np.vstack([v.X_train, v.X_cal])} - public
    streams = benign_streams(v, seed=1, n=120, hard=True)
    assert {s.kind for s in streams} >= {"benign-random", "benign-one-class", "benign-two-class",
                                         "benign-drift", "benign-duplicates",
                                         "benign-sorted-batch", "benign-tiny", "benign-bursty",
                                         *PERTURBED}
    for s in streams:
        assert not s.is_attack and s.X.shape[1] == v.n_features
        rows = {r.tobytes() for r in s.X}
        assert not rows & private, s.kind
        if s.kind in PERTURBED:  # near a public record: jittered, or one feature changed
            sd = np.where(v.X_public.std(axis=0) > 0, v.X_public.std(axis=0), 1.0)
            far = np.abs(s.X[:, None, :] - v.X_public[None]) > 0.2 * sd
            assert np.all(far.sum(axis=2).min(axis=1) <= 1), s.kind
        elif s.kind != "benign-drift":
            assert rows <= public, s.kind


def test_benign_behaviour_shapes():
    v = load_victim("cancer-logreg")
    rng = np.random.default_rng(3)
    assert tiny_client(v, 300, rng).n_queries <= 20
    dup = duplicate_records(v, 200, rng)
    same_as_prev = np.all(dup.X[1:] == dup.X[:-1], axis=1)
    assert same_as_prev.any()
    runs = np.diff(np.flatnonzero(np.r_[True, ~same_as_prev, True]))
    assert runs.max() <= 4
    batch = sorted_batch(v, 300, rng)
    assert np.all(np.diff(batch.X[:, batch.meta["sorted_by"]]) >= 0)
    bursty = bursty_client(v, 300, rng)
    gaps = np.diff(bursty.ts)
    assert (gaps >= 60).sum() >= 3 and np.median(gaps) < 1.0
    drift = drifted_records(v, 300, rng)
    assert np.all((np.array(drift.meta["scale"]) >= 0.9) & (np.array(drift.meta["scale"]) <= 1.15))
    assert not {r.tobytes() for r in drift.X} <= {r.tobytes() for r in v.X_public}


def test_demo_clients_really_attack():
    v = load_victim("cancer-logreg", output_mode="label")
    clients = demo_clients(v, seed=0, n=200)
    attacks = [c for c in clients if c.is_attack]
    assert [c.kind for c in attacks] == ["uniform", "jbda", "line-search"]
    for c in clients:
        assert c.n_queries == 200
        assert c.ts is not None and np.all(np.diff(c.ts) >= 0)
    majority = np.bincount(v.y_public).max() / len(v.y_public)
    jbda_model = attacks[1].meta["result"].surrogate
    assert np.mean(jbda_model.predict(v.X_public) == v.model.predict(v.X_public)) > majority
