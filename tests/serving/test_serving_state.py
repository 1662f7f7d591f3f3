"""Serving on a shared state store: flags and resets across workers, export/delete, TTL,
store metrics, fail-closed 503, and the salt that keeps client ids stable across restarts.

"Workers" here are separate apps (each its own Monitor and store connection) on separate
uvicorn servers sharing one SQLite file, so a test can address each worker by port;
tests/serving/test_stores_http.py runs the real ``serve --workers 4``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time

import numpy as np
import pytest
from serving_helpers import client, running

from monitor import Monitor
from monitor.environment import default_state_uri
from monitor.serving import ClientIdentifier, ServingConfig
from monitor.serving.identity import resolve_salt
from monitor.serving.launch import (
    WorkerOptions,
    check_state,
    proxy_app_from_env,
    worker_environment,
)
from monitor.settings import Settings
from monitor.state_record import decode_state
from monitor.stores import open_store
from victims.app import build_victim_app, victim_app_from_env

TOKEN = "state-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SALT = "state-test-salt"


@pytest.fixture(scope="module")
def victim_profile(fitted_victim):
    return fitted_victim("cancer-logreg")


def worker(victim_profile, state: str, **config):
    """One serving worker on ``state``: a fresh Monitor and store connection, its own server."""
    victim, profile = victim_profile
    monitor = Monitor(profile, model=victim.model, store=open_store(state))
    app = build_victim_app(victim, monitor, ServingConfig(salt=SALT, **config),
                           admin_token=TOKEN)
    return running(app)


def attack(victim, n=60, seed=3):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper,
                                               (n, victim.n_features))


def client_id(key: str) -> str:
    return ClientIdentifier(SALT).hash_key(key)


def test_flag_and_reset_hold_in_every_worker(victim_profile, tmp_path):
    victim, _ = victim_profile
    state = f"sqlite://{tmp_path}/state.db"
    block = {"actions": [{"action": "log"}, {"action": "block"}]}
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(client(stack.enter_context(worker(victim_profile, state,
                                                                   **block)), "mallory"))
        b = stack.enter_context(client(stack.enter_context(worker(victim_profile, state,
                                                                   **block)), "mallory"))
        statuses = [a.post("/predict", json={"instances": [row.tolist()]}).status_code
                    for row in attack(victim)]
        assert 403 in statuses and statuses[0] == 200
        # worker b never saw mallory's flag itself: it reads it from the store
        r = b.post("/predict", json={"instances": [victim.X_public[0].tolist()]})
        assert r.status_code == 403
        detail = b.get(f"/monitor/clients/{client_id('mallory')}", headers=ADMIN).json()
        assert detail["flagged"] and detail["action"] == "block"
        # reset through b unblocks in a (whose own bookkeeping still says "flagged")
        assert b.post(f"/monitor/clients/{client_id('mallory')}/reset",
                      headers=ADMIN).status_code == 200
        r = a.post("/predict", json={"instances": [victim.X_public[0].tolist()]})
        assert r.status_code == 200
        assert a.get(f"/monitor/clients/{client_id('mallory')}",
                     headers=ADMIN).json()["n_queries"] == 1


def test_flag_alerts_once_across_workers(victim_profile, tmp_path):
    victim, _ = victim_profile
    state = f"sqlite://{tmp_path}/state.db"
    rows = attack(victim, 80, seed=4)
    with contextlib.ExitStack() as stack:
        workers = [stack.enter_context(client(stack.enter_context(worker(victim_profile, state)),
                                              "mallory")) for _ in range(2)]
        for i, row in enumerate(rows):  # alternate workers, one row per request
            assert workers[i % 2].post("/predict",
                                       json={"instances": [row.tolist()]}).status_code == 200
        alerts = [w.get("/monitor/alerts", headers=ADMIN).json()["alerts"] for w in workers]
        flags = [float(line.split()[-1]) for w in workers
                 for line in w.get("/monitor/metrics", headers=ADMIN).text.splitlines()
                 if line.startswith("extraction_monitor_flags_total")]
        verdict = workers[0].get(f"/monitor/clients/{client_id('mallory')}",
                                 headers=ADMIN).json()
    assert verdict["flagged"] and verdict["n_queries"] == len(rows)
    assert sum(len(a) for a in alerts) == 1 and sum(flags) == 1


def test_export_delete_and_ttl(victim_profile, tmp_path):
    victim, _ = victim_profile
    state = f"sqlite://{tmp_path}/state.db"
    with worker(victim_profile, state) as base, client(base, "alice") as c:
        assert c.post("/predict", json={"instances": victim.X_public[:7].tolist()}
                      ).status_code == 200
        alice = client_id("alice")
        r = c.get(f"/monitor/clients/{alice}/state", headers=ADMIN)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert int(decode_state(r.content)["counters"][0]) == 7
        assert c.get(f"/monitor/clients/{alice}/state").status_code == 401
        assert c.get("/monitor/clients/nobody/state", headers=ADMIN).status_code == 404
        assert c.delete(f"/monitor/clients/{alice}", headers=ADMIN).json() == {
            "client_id": alice, "deleted": True}
        assert c.get(f"/monitor/clients/{alice}", headers=ADMIN).status_code == 404
        assert c.delete(f"/monitor/clients/{alice}", headers=ADMIN).status_code == 404
        assert c.get("/monitor/clients", headers=ADMIN).json()["total"] == 0
    with worker(victim_profile, "memory://?ttl=0.5") as base, client(base, "bob") as c:
        assert c.post("/predict", json={"instances": victim.X_public[:2].tolist()}
                      ).status_code == 200
        assert c.get("/monitor/clients", headers=ADMIN).json()["total"] == 1
        time.sleep(1.0)
        assert c.get("/monitor/clients", headers=ADMIN).json()["total"] == 0


def test_corrupt_stored_record_resets_only_that_client_and_is_counted(victim_profile, tmp_path):
    victim, _ = victim_profile
    db = tmp_path / "state.db"
    with worker(victim_profile, f"sqlite://{db}") as base, client(base, "carol") as c:
        assert c.post("/predict", json={"instances": victim.X_public[:3].tolist()}
                      ).status_code == 200
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE client_state SET blob = ? WHERE client_id = ?",
                         (b"EMSTATE\x01garbage", client_id("carol")))
        r = c.post("/predict", json={"instances": victim.X_public[3:5].tolist()})
        assert r.status_code == 200
        assert c.get(f"/monitor/clients/{client_id('carol')}",
                     headers=ADMIN).json()["n_queries"] == 2
        metrics = c.get("/monitor/metrics", headers=ADMIN).text
    assert "extraction_monitor_store_corrupt_records_total 1.0" in metrics


def test_unreachable_fail_closed_store_answers_503(victim_profile):
    victim, _ = victim_profile
    state = "redis://127.0.0.1:1/0?on_error=closed&timeout=0.05"  # nothing listens on port 1
    with worker(victim_profile, state) as base, client(base, "dave") as c:
        r = c.post("/predict", json={"instances": victim.X_public[:1].tolist()})
        assert r.status_code == 503 and "state store is unavailable" in r.json()["error"]
        r = c.get("/monitor/clients", headers=ADMIN)
        assert r.status_code == 503 and "retry later" in r.json()["error"]
        metrics = c.get("/monitor/metrics", headers=ADMIN).text
    assert 'extraction_monitor_requests_total{outcome="store_unavailable"} 1.0' in metrics


def test_salt_is_shared_and_survives_restarts(tmp_path):
    db = tmp_path / "state.db"
    uri = f"sqlite://{db}"
    first = resolve_salt(uri, environ={})
    salt_file = tmp_path / "state.db.salt"
    assert stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600
    assert resolve_salt(uri, environ={}) == first  # a restart reads the same salt
    assert resolve_salt(uri, environ={"EXTRACTION_MONITOR_SALT": "env"}) == "env"
    assert resolve_salt(uri, configured="cfg", environ={"EXTRACTION_MONITOR_SALT": "e"}) == "cfg"
    with pytest.raises(ValueError, match="EXTRACTION_MONITOR_SALT"):
        resolve_salt("redis://127.0.0.1:6379/0", environ={})
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}  # memory:// keeps its salt in the data folder
    memory = resolve_salt("memory://", environ=data)
    assert resolve_salt("memory://", environ=data) == memory
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "extraction-monitor" / "memory.salt"
                                ).st_mode) == 0o600


def test_default_state_is_an_embedded_sqlite_file(tmp_path):
    uri = default_state_uri({"XDG_DATA_HOME": str(tmp_path)})
    assert uri == f"sqlite://{tmp_path}/extraction-monitor/state.db"
    check_state(uri, workers=4)
    assert (tmp_path / "extraction-monitor" / "state.db").exists()
    with pytest.raises(ValueError, match="memory:// keeps state inside one process"):
        check_state("memory://", workers=2)
    with pytest.raises(ValueError, match="directory"):
        check_state(f"sqlite://{tmp_path}/missing/state.db", workers=1)


def test_worker_factories_build_the_apps_from_the_parent_options(victim_profile, tmp_path):
    victim, profile = victim_profile
    profile.save(tmp_path / "profile")
    state = f"sqlite://{tmp_path}/state.db"
    settings = Settings.from_dict({"store": {"uri": state}}).to_dict()
    common = {"settings": settings, "salt": SALT, "admin_token": TOKEN}
    upstream_options = WorkerOptions(**common, factory_options={  # the unmonitored upstream
        "name": "cancer-logreg", "output_mode": "proba", "seed": 0})
    with worker_environment(upstream_options, workers=1):
        upstream_app = victim_app_from_env()
    with running(upstream_app) as upstream:
        proxy_options = WorkerOptions(**common, upstream=upstream, timeout=10.0,
                                      profile=str(tmp_path / "profile"))
        with worker_environment(proxy_options, workers=2):
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
            proxy_app = proxy_app_from_env()
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # restored afterwards
        with running(proxy_app) as base, client(base, "erin") as c:
            r = c.post("/predict", json={"instances": victim.X_public[:4].tolist()})
            assert r.status_code == 200
            assert np.allclose(r.json()["predictions"], victim.answer(victim.X_public[:4]))
    assert open_store(state).clients() == [client_id("erin")]


@pytest.mark.parametrize(("state", "workers", "message"), [
    ("memory://", 2, "memory:// keeps state inside one process"),
    ("sqlite:///no/such/folder/state.db", 1, "directory /no/such/folder does not exist"),
    ("postgres://db", 1, "unsupported state store URI"),
    ("memory://", 0, "--workers must be >= 1"),
])
def test_serve_rejects_bad_state_options_in_one_line(capsys, state, workers, message):
    from monitor.cli import main

    status = main(["serve", "--victim", "cancer-logreg", "--state", state,
                   "--workers", str(workers)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and "\n" not in err


def test_a_blocked_client_stays_blocked_after_a_detector_change_and_a_restart(tmp_path):
    """Issue 13: safety state is never silently lost. The attacker is blocked by one
    deployment; a second one on the same SQLite file with another detector list (its
    evidence resets, with a log line) refuses the attacker's very first request."""
    from monitor import MonitorConfig
    from monitor.stores import open_store
    from victims import load_victim
    from victims.app import build_victim_app, build_victim_monitor

    victim = load_victim("cancer-logreg")
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = ServingConfig(salt="restart", actions=["log", "block"])
    rng = np.random.default_rng(4)
    first = build_victim_app(victim, build_victim_monitor(victim, store=open_store(uri)), cfg)
    with running(first) as base, client(base, "thief") as c:
        statuses = [c.post("/predict", json={"features": rng.uniform(victim.lower, victim.upper)
                                             .tolist()}).status_code for _ in range(40)]
    assert 403 in statuses
    changed = build_victim_monitor(victim, MonitorConfig(detectors=("density",)),
                                   store=open_store(uri))
    cid = ClientIdentifier("restart").hash_key("thief")
    second = build_victim_app(victim, changed, cfg)
    with running(second) as base, client(base, "thief") as c, client(base, "other") as o:
        assert c.post("/predict", json={"features": victim.X_public[0].tolist()}) \
            .status_code == 403
        assert o.post("/predict", json={"features": victim.X_public[0].tolist()}) \
            .status_code == 200
    status = changed.flag_status(cid)
    assert status is not None and status.flagged
