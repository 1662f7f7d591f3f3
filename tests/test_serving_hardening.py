"""Issue 12 over real HTTP: each defect a hostile client found, reproduced against serve and
proxy on 127.0.0.1 (uvicorn, a real upstream behind the proxy)."""

from __future__ import annotations

import gzip
import json

import httpx
import numpy as np
import pytest
from serving_helpers import client, running

from monitor.serving import ClientIdentifier, ServingConfig, build_proxy_app
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "hardening-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SALT = "hardening-salt"
BLOCK = {"actions": ["log", "block"]}


@pytest.fixture(scope="module")
def victim():
    return load_victim("wine-tree", output_mode="proba", seed=0)


def serve(victim, **config):
    app = build_victim_app(victim, build_victim_monitor(victim),
                           ServingConfig(salt=SALT, **config), admin_token=TOKEN)
    return running(app)


def attack_rows(victim, n, seed=1):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper, (n, victim.n_features))


def verdict_of(c: httpx.Client, key: str) -> dict:
    cid = ClientIdentifier(SALT).hash_key(key)
    r = c.get(f"/monitor/clients/{cid}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ 1. forged retries
_OLD_MULT = np.random.default_rng(20190101).integers(1, 2**63, size=4096, dtype=np.uint64) | 1


def old_row_hashes(X: np.ndarray) -> np.ndarray:
    """The retry hash before issue 12: linear mod 2^64 with a public seed."""
    bits = np.ascontiguousarray(np.asarray(X, dtype=np.float64) + 0.0).view(np.uint64)
    mult = _OLD_MULT[np.arange(bits.shape[1])]
    with np.errstate(over="ignore"):
        mixed = bits ^ (bits >> np.uint64(29))
        h = (mixed * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(32)
        h *= np.uint64(0x9E3779B97F4A7C15)
    return h


def forge(row: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``row`` with its last coordinate solved so that it hashes like ``target`` under the
    old scheme (the multipliers are odd, hence invertible mod 2^64; the mixing is a
    xorshift, hence invertible)."""
    mod = 2**64

    def linear(bits):
        return sum(int(b ^ (b >> 29)) * int(m) for b, m in zip(bits, _OLD_MULT, strict=False)) % mod

    tb = [int(v) for v in np.asarray(target, np.float64).view(np.uint64)]
    rb = [int(v) for v in np.asarray(row, np.float64).view(np.uint64)]
    need = (linear(tb) - linear(rb[:-1])) % mod
    mixed = need * pow(int(_OLD_MULT[len(rb) - 1]), -1, mod) % mod
    last = mixed
    for _ in range(3):  # undo b ^ (b >> 29)
        last = mixed ^ (last >> 29)
    return np.array(rb[:-1] + [last], dtype=np.uint64).view(np.float64)


def forged_queries(victim, n, seed=5):
    rng = np.random.default_rng(seed)
    target = victim.X_public[0]
    out = []
    while len(out) < n:
        row = forge(rng.uniform(victim.lower, victim.upper), target)
        if np.isfinite(row).all() and np.abs(row).max() < 1e30:  # the server accepts it
            out.append(row)
    return target, np.array(out)


def test_forged_retry_collisions_are_distinct_queries_and_get_flagged(victim):
    target, forged = forged_queries(victim, 150)
    # the attack works against the old scheme: every forged row "retries" the benign one
    assert (old_row_hashes(forged) == old_row_hashes(target[None])[0]).all()
    with serve(victim, **BLOCK) as base, client(base, "forger") as c:
        assert c.post("/predict", json={"features": target.tolist()}).status_code == 200
        statuses = [c.post("/predict", json={"features": row.tolist()}).status_code
                    for row in forged]
        assert 403 in statuses, "forged 'retries' were answered without evidence"
        v = verdict_of(c, "forger")
        assert v["flagged"] and v["n_distinct"] > 10
