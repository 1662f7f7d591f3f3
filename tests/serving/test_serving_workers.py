"""Enforcement across real worker processes (``extraction-monitor serve --workers 4``):
one throttle rate for all workers, counted in rows; and a 10 s Redis outage under load that
loses at most 1% of counts while a blocked client gets no answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from redis_server import redis_server_fixture
from serving_helpers import serve_process

from monitor.serving import ClientIdentifier
from victims import load_victim

VICTIM = "cancer-logreg"
SALT = "workers-test-salt"
TOKEN = "workers-test-token"
redis_server = redis_server_fixture()


@pytest.fixture(scope="module")
def victim():
    return load_victim(VICTIM)


def client_id(key: str) -> str:
    return ClientIdentifier(SALT).hash_key(key)


def attack(victim, n, seed=3):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper,
                                               (n, victim.n_features))


def fresh_connections(base: str, key: str) -> httpx.Client:
    """A client that opens a new connection per request, so requests spread over workers."""
    return httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))


def flag(c: httpx.Client, victim, refused: int) -> None:
    for row in attack(victim, 80):
        if c.post("/predict", json={"instances": [row.tolist()]}).status_code == refused:
            return
    raise AssertionError("the attacker was never flagged")


RATE, BURST, SECONDS, ROWS = 10.0, 4, 10.0, 2


@pytest.mark.slow
def test_four_workers_throttle_one_rate_counted_in_rows(victim, tmp_path):
    config = (f'[serving]\nactions = ["throttle"]\nthrottle_rate = {RATE}\n'
              f"throttle_burst = {BURST}\n")
    args = ["serve", "--victim", VICTIM, "--state", f"sqlite://{tmp_path}/state.db",
            "--workers", "4"]
    with serve_process(args, TOKEN, SALT, config=config, workdir=tmp_path) as admin:
        base = str(admin.base_url)
        with fresh_connections(base, "greedy") as c:
            flag(c, victim, refused=429)
        answered = []
        X = attack(victim, ROWS, seed=4).tolist()
        stop = time.monotonic() + SECONDS

        def hammer():
            with fresh_connections(base, "greedy") as c:
                while time.monotonic() < stop:
                    r = c.post("/predict", json={"instances": X})
                    if r.status_code == 200:
                        answered.append(ROWS)
                    else:
                        assert r.status_code == 429, r.text

        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(hammer) for _ in range(8)]:
                future.result()
    rows = sum(answered)
    rate = (rows - BURST) / SECONDS
    print(f"throttle at R={RATE} rows/s over 4 workers: {rows} rows answered in "
          f"{SECONDS:g} s = {rate:.2f} rows/s ({rate / RATE:.2f} R)")
    assert rate <= 1.1 * RATE, f"{rate:.1f} rows/s allowed at a rate of {RATE}"
    assert rate >= 0.5 * RATE, "the throttle refused nearly everything"


@pytest.mark.slow
def test_a_redis_outage_of_10_s_under_load_loses_under_1_percent_and_blocks(victim,
                                                                              redis_server):
    config = ('[serving]\nactions = ["log", "block"]\nflag_refresh_seconds = 1.0\n')
    args = ["serve", "--victim", VICTIM, "--state", redis_server.url + "?timeout=0.2",
            "--workers", "4"]
    benign = [f"benign-{i}" for i in range(4)]
    answered = {key: 0 for key in benign}
    blocked_answers = []
    with serve_process(args, TOKEN, SALT, config=config) as admin:
        base = str(admin.base_url)
        with fresh_connections(base, "mallory") as c:
            flag(c, victim, refused=403)
        time.sleep(2.5)  # every worker's flag cache refreshes from the store
        phase = {"running": True}

        def load(key):
            rng = np.random.default_rng(abs(hash(key)) % 2**32)
            with fresh_connections(base, key) as c:
                while phase["running"]:
                    row = victim.X_public[rng.integers(len(victim.X_public))]
                    r = c.post("/predict", json={"instances": [row.tolist()]})
                    assert r.status_code == 200, r.text
                    answered[key] += 1

        threads = [threading.Thread(target=load, args=(key,)) for key in benign]
        for t in threads:
            t.start()
        time.sleep(3)
        redis_server.stop()
        outage_end = time.monotonic() + 10
        with fresh_connections(base, "mallory") as c:
            while time.monotonic() < outage_end:
                r = c.post("/predict", json={"instances": [victim.X_public[0].tolist()]})
                blocked_answers.append(r.status_code)
                time.sleep(0.2)
        redis_server.start()
        time.sleep(6)  # every worker probes, flushes and merges its buffer
        phase["running"] = False
        for t in threads:
            t.join(60)
        time.sleep(1.5)
        counted = {key: admin.get(f"/monitor/clients/{client_id(key)}").json()["n_queries"]
                   for key in benign}
    total, lost = sum(answered.values()), sum(answered[k] - counted[k] for k in benign)
    print(f"Redis outage of 10 s under load: {total} answered, {total - lost} counted, "
          f"{lost} lost ({100 * lost / total:.2f}%); blocked client answered "
          f"{sum(s == 200 for s in blocked_answers)} of {len(blocked_answers)}")
    assert set(blocked_answers) == {403}, "the blocked client was answered during the outage"
    assert len(blocked_answers) >= 20
    assert all(counted[k] <= answered[k] for k in benign)
    assert lost <= 0.01 * total, f"{lost} of {total} counts lost"
