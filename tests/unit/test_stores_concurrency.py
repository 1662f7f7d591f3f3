"""Several processes hammer the same clients through Monitor + SQLite / Redis: no update is
lost and the verdict equals a sequential replay of the same queries."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from redis_server import redis_server_fixture

from monitor import Monitor, Profile
from monitor.stores import open_store
from victims import load_victim

N_PROCESSES = 3
redis_server = redis_server_fixture(scope="module")
_profiles: dict[str, Profile] = {}


def hammer(uri: str, profile_dir: str, batches: list) -> int:
    """In a worker process: observe ``(client_id, X, outputs)`` batches through a store."""
    profile = _profiles.get(profile_dir)
    if profile is None:
        profile = _profiles[profile_dir] = Profile.load(profile_dir)
    store = open_store(uri)
    mon = Monitor(profile, store=store)
    for client_id, X, outputs in batches:
        mon.observe(client_id, X, outputs)
    store.close()
    return sum(len(X) for _, X, _ in batches)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    victim = load_victim("cancer-logreg")
    profile = Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                            y_cal=victim.y_cal)
    profile_dir = tmp_path_factory.mktemp("profile")
    profile.save(profile_dir)
    rng = np.random.default_rng(11)
    attack = rng.uniform(victim.lower, victim.upper, size=(240, victim.n_features))
    benign = victim.X_public[rng.permutation(len(victim.X_public))[:120]]
    batches = [("mallory", attack[i:i + 2], victim.model.predict_proba(attack[i:i + 2]))
               for i in range(0, len(attack), 2)]
    batches += [("bob", benign[i:i + 2], victim.model.predict_proba(benign[i:i + 2]))
                for i in range(0, len(benign), 2)]
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    replay = Monitor(Profile.load(profile_dir))  # sequential, in memory
    for client_id, X, outputs in batches:
        replay.observe(client_id, X, outputs)
    return str(profile_dir), batches, replay


@pytest.fixture(scope="module")
def pool():
    with multiprocessing.get_context("spawn").Pool(N_PROCESSES) as pool:
        yield pool


def run_concurrently(pool, uri: str, profile_dir: str, batches: list) -> int:
    chunks = [batches[i::2 * N_PROCESSES] for i in range(2 * N_PROCESSES)]
    return sum(pool.starmap(hammer, [(uri, profile_dir, chunk) for chunk in chunks]))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_concurrent_processes_lose_no_update_and_match_a_sequential_replay(
        backend, request, tmp_path, setup, pool):
    profile_dir, batches, replay = setup
    uri = (f"sqlite://{tmp_path}/state.db" if backend == "sqlite"
           else request.getfixturevalue("redis_server").url)
    if backend == "redis":
        open_store(uri).redis.flushdb()
    observed = run_concurrently(pool, uri, profile_dir, batches)
    assert observed == 360
    shared = Monitor(Profile.load(profile_dir), store=open_store(uri))
    for client_id, n in (("mallory", 240), ("bob", 120)):
        got, want = shared.verdict(client_id), replay.verdict(client_id)
        assert got.n_queries == want.n_queries == n  # no lost update
        assert got.n_distinct == want.n_distinct
        assert got.flagged == want.flagged
    assert shared.verdict("mallory").flagged and not shared.verdict("bob").flagged
    assert shared.clients() == ["bob", "mallory"]
