"""Acceptance over HTTP: ``extraction-monitor serve --state URI --workers 4`` on SQLite and on
Redis counts every query of a client across workers, flags the attacker only, matches a
single-process replay, keeps state across a restart, and rides out a Redis outage."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from redis_server import redis_server_fixture
from serving_helpers import serve_process

from monitor.serving import ClientIdentifier
from victims import load_victim
from victims.app import build_victim_monitor

VICTIM = "cancer-logreg"
SALT = "stores-http-test-salt"
TOKEN = "stores-http-test-token"
N_ATTACK = 120
BENIGN = ("benign-1", "benign-2", "benign-3")
N_BENIGN = 20
redis_server = redis_server_fixture()


def serving(state: str, workers: int, startup_timeout: float = 150.0):
    """``extraction-monitor serve`` as a subprocess; yields an httpx client to it."""
    return serve_process(["serve", "--victim", VICTIM, "--state", state,
                          "--workers", str(workers)], TOKEN, SALT, startup_timeout)


@pytest.fixture(scope="module")
def traffic():
    victim = load_victim(VICTIM)
    rng = np.random.default_rng(5)
    attack = rng.uniform(victim.lower, victim.upper, size=(N_ATTACK, victim.n_features))
    benign = {key: victim.X_public[rng.choice(len(victim.X_public), N_BENIGN, replace=False)]
              for key in BENIGN}
    replay = build_victim_monitor(victim)  # the single-process reference
    for key, rows in [("attacker", attack), *benign.items()]:
        for row in rows:
            replay.observe(key, row)
    return attack, benign, replay


def send(client: httpx.Client, key: str, row: np.ndarray) -> int:
    response = client.post("/predict", json={"instances": [row.tolist()]},
                           headers={"X-API-Key": key})
    return response.status_code


def send_all(client: httpx.Client, jobs: list[tuple[str, np.ndarray]]) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda job: send(client, *job), jobs))


def verdict(client: httpx.Client, key: str) -> dict:
    client_id = ClientIdentifier(salt=SALT).hash_key(key)
    response = client.get(f"/monitor/clients/{client_id}")
    assert response.status_code == 200, response.text
    return response.json()


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.split(" ")[0] == name]
    assert len(values) == 1, f"{name} appears {len(values)} times in /metrics"
    return values[0]


def interleaved(attack, benign) -> list[tuple[str, np.ndarray]]:
    jobs = [("attacker", row) for row in attack]
    jobs += [(key, row) for key, rows in benign.items() for row in rows]
    order = np.random.default_rng(6).permutation(len(jobs))
    return [jobs[i] for i in order]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_four_workers_share_one_verdict_per_client_and_survive_a_restart(
        backend, request, tmp_path, traffic):
    attack, benign, replay = traffic
    state = (f"sqlite://{tmp_path}/state.db" if backend == "sqlite"
             else request.getfixturevalue("redis_server").url)
    with serving(state, workers=4) as client:
        statuses = send_all(client, interleaved(attack, benign))
        assert statuses == [200] * len(statuses)
        got = verdict(client, "attacker")
        want = replay.verdict("attacker")
        assert got["n_queries"] == N_ATTACK == want.n_queries
        assert got["flagged"] and want.flagged
        for key in BENIGN:
            b = verdict(client, key)
            assert b["n_queries"] == N_BENIGN and not b["flagged"]
            assert b["flagged"] == replay.verdict(key).flagged
        # metrics are summed over the workers (prometheus multiprocess mode)
        assert metric(client.get("/monitor/metrics").text, "extraction_monitor_queries_total") == len(
            statuses)
        # a delete through one worker holds in all: whichever worker answers, it is gone
        gone = ClientIdentifier(salt=SALT).hash_key(BENIGN[0])
        assert client.delete(f"/monitor/clients/{gone}").status_code == 200
        assert {client.get(f"/monitor/clients/{gone}").status_code for _ in range(8)} == {404}
    with serving(state, workers=1) as client:  # restart: state and flags survive
        again = verdict(client, "attacker")
        assert (again["n_queries"], again["flagged"], again["flag_at"]) == (
            N_ATTACK, True, got["flag_at"])


@pytest.mark.slow
def test_redis_outage_over_http_fails_open_and_catches_up(redis_server, traffic):
    attack, _, replay = traffic
    with serving(redis_server.url + "?timeout=0.2", workers=1) as client:
        assert all(send(client, "attacker", row) == 200 for row in attack[:40])
        redis_server.stop()
        assert all(send(client, "attacker", row) == 200 for row in attack[40:80])
        metrics = client.get("/monitor/metrics").text
        assert metric(metrics, "extraction_monitor_store_missed_updates_total") >= 40
        assert metric(metrics, "extraction_monitor_store_down") == 1
        redis_server.start()
        time.sleep(1.2)  # one probe interval
        assert all(send(client, "attacker", row) == 200 for row in attack[80:])
        got = verdict(client, "attacker")
    assert got["n_queries"] == N_ATTACK and got["flagged"] == replay.verdict("attacker").flagged
