"""Issue 12 over real HTTP: each defect a hostile client found, reproduced against serve and
proxy on 127.0.0.1 (uvicorn, a real upstream behind the proxy)."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import numpy as np
import pytest
from serving_helpers import client, raw_request, running
from upstreams import lenient_upstream

from monitor import Monitor
from monitor.serving import ClientIdentifier, ServingConfig, build_proxy_app
from monitor.stores import open_store
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


@contextlib.contextmanager
def proxied(victim, upstream_app=None, monitor=None, **config):
    """The monitored proxy in front of a real upstream (default: the lenient one)."""
    with running(upstream_app or lenient_upstream(victim)) as upstream:
        app = build_proxy_app(upstream, monitor or build_victim_monitor(victim),
                              ServingConfig(salt=SALT, **config), TOKEN)
        with running(app) as base:
            yield base


def flag(c: httpx.Client, victim, path="/predict", n=60) -> list[int]:
    """Send uniform-random rows one by one until the client is refused; the statuses."""
    statuses = []
    for row in attack_rows(victim, n, seed=11):
        statuses.append(c.post(path, json={"features": row.tolist()}).status_code)
        if statuses[-1] != 200:
            break
    return statuses


def metric(c: httpx.Client, name: str) -> float:
    text = c.get("/monitor/metrics", headers=ADMIN).text
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.split(" ")[0] == name]
    return values[0] if values else 0.0


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
        # every forged row counted as a distinct query until the block (flagged early now)
        assert v["flagged"] and v["n_distinct"] == v["n_queries"] >= 5, v


# ------------------------------------------------------------------ 2. identity
def test_a_second_identity_header_or_a_disagreeing_bearer_is_refused(victim):
    row = victim.X_public[0].tolist()
    with proxied(victim, identity=["bearer", "header", "peer"]) as base, \
            httpx.Client(base_url=base) as c:
        r = c.post("/predict", json={"features": row},
                   headers=[("X-API-Key", "blocked"), ("X-API-Key", "fresh-1")])
        assert r.status_code == 400 and "2 times" in r.json()["error"]
        r = c.post("/predict", json={"features": row},
                   headers={"X-API-Key": "a", "Authorization": "Bearer b"})
        assert r.status_code == 400 and "differ" in r.json()["error"]
        r = c.post("/predict", json={"features": row},
                   headers={"X-API-Key": "same", "Authorization": "Bearer same"})
        assert r.status_code == 200
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'extraction_monitor_rejected_requests_total{reason="identity"} 2.0' in text


def test_a_peer_identified_client_cannot_escape_with_keys_or_forwarded_for(victim):
    with serve(victim, identity=["peer"], **BLOCK) as base, httpx.Client(base_url=base) as c:
        statuses = flag(c, victim)
        assert statuses[-1] == 403
        row = victim.X_public[1].tolist()
        for i in range(5):  # new keys and spoofed forwarding headers change nothing
            assert c.post("/predict", json={"features": row},
                          headers={"X-API-Key": f"fresh-{i}"}).status_code == 403
            assert c.post("/predict", json={"features": row},
                          headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code == 403
            assert c.post("/predict", json={"features": row},
                          headers={"Forwarded": f"for=198.51.100.{i}"}).status_code == 403


# ------------------------------------------------------------------ 3. what is watched
@pytest.mark.parametrize("method, path", [
    ("post", "/predict"), ("PUT", "/predict"), ("patch", "/PREDICT"), ("POST", "//predict/"),
    ("POST", "/pred%69ct"), ("POST", "/v1/models/wine:predict"),
    ("post", "/v2/models/wine/infer"), ("POST", "/invocations"), ("GET", "/predict"),
])
def test_every_method_and_spelling_of_a_watched_route_is_monitored(victim, method, path):
    with proxied(victim, **BLOCK) as base:
        statuses = []
        for row in attack_rows(victim, 60, seed=12):  # method and path exactly as written
            statuses.append(raw_request(base, method, path, json.dumps(
                {"features": row.tolist()}).encode(), [("X-API-Key", "sly")]))
            if statuses[-1] != 200:
                break
        assert statuses[-1] == 403, f"{method} {path} was answered without monitoring"
        assert set(statuses[:-1]) == {200}


def test_unwatched_bodies_are_counted_or_refused(victim):
    row = victim.X_public[0].tolist()
    with proxied(victim) as base, client(base, "k") as c:
        assert c.post("/score", json={"features": row}).status_code == 200
        assert c.get("/echo").status_code == 200  # no body: not counted
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'extraction_monitor_unobserved_requests_total{reason="unwatched_route"} 1.0' in text
    with proxied(victim, unwatched="refuse") as base, client(base, "k") as c:
        r = c.post("/score", json={"features": row})
        assert r.status_code == 403 and "not a monitored" in r.json()["error"]
        assert c.get("/echo").status_code == 200


# ------------------------------------------------------------------ 4. metrics
def test_metrics_need_the_token_leave_the_apps_metrics_and_hide_scores(victim):
    with serve(victim) as base, client(base, "curious") as c:
        assert c.get("/monitor/metrics").status_code == 401
        assert c.get("/metrics").status_code == 404  # the app's path, not the monitor's
        before = c.get("/monitor/metrics", headers=ADMIN).text
        for row in attack_rows(victim, 3, seed=13):
            assert c.post("/predict", json={"features": row.tolist()}).status_code == 200
        after = c.get("/monitor/metrics", headers=ADMIN).text
    assert "score" not in after.replace("extraction_monitor_", "")
    changed = {line.split("{")[0].split(" ")[0] for line in set(after.splitlines())
               - set(before.splitlines()) if not line.startswith("#")}
    allowed = ("extraction_monitor_requests", "extraction_monitor_queries",
               "extraction_monitor_added_latency_seconds", "extraction_monitor_clients",
               "extraction_monitor_reused_states", "extraction_monitor_decoded_states")
    assert changed and all(name.startswith(allowed) for name in changed), changed


# ------------------------------------------------------------------ 5. parser differentials
def test_a_body_with_two_formats_or_a_key_twice_is_refused(victim):
    benign, evil = victim.X_public[0].tolist(), attack_rows(victim, 1)[0].tolist()
    with proxied(victim, **BLOCK) as base, client(base, "two") as c:
        r = c.post("/predict", json={"instances": [benign], "features": evil})
        assert r.status_code == 400 and "more than one format" in r.json()["error"]
        body = f'{{"features": {benign}, "features": {evil}}}'.encode()
        r = c.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "twice" in r.json()["error"]
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert 'reason="ambiguous_format"} 1.0' in text and 'reason="duplicate_key"} 1.0' in text


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_a_degraded_client_gets_degraded_answers_in_any_encoding(victim, encoding):
    X = attack_rows(victim, 60, seed=14)
    with proxied(victim, actions=["degrade"], degrade_mode="label") as base, \
            client(base, "squeezed") as c:
        c.post("/predict", json={"instances": X.tolist()})  # flags the client
        r = c.post("/predict", json={"instances": X[:3].tolist()},
                   headers={"Accept-Encoding": encoding})
        assert r.status_code == 200
        assert r.json()["predictions"] == victim.classes[victim.answer(X[:3]).argmax(1)].tolist()


@pytest.mark.parametrize("forced", ["br", "zstd"])
def test_an_answer_the_proxy_cannot_degrade_is_refused(victim, forced):
    X = attack_rows(victim, 60, seed=15)
    upstream = lenient_upstream(victim, force_encoding=forced)  # ignores "identity"
    with proxied(victim, upstream, actions=["degrade"], degrade_mode="label") as base, \
            client(base, "squeezed") as c:
        c.post("/predict", json={"instances": X.tolist()})
        r = c.post("/predict", json={"instances": X[:3].tolist()})
        if forced == "br":  # decoded and degraded
            assert r.status_code == 200 and np.ndim(r.json()["predictions"]) == 1
        else:  # unreadable: fail closed, never the full probabilities
            assert r.status_code == 403 and "could not be limited" in r.json()["error"]


def test_the_proxy_forwards_headers_as_sent_with_one_forwarded_for(victim):
    received = []
    with proxied(victim, lenient_upstream(victim, received=received)) as base, \
            httpx.Client(base_url=base) as c:
        for name in list(c.headers):
            del c.headers[name]
        c.get("/echo", headers={"X-Forwarded-For": "192.0.2.1", "User-Agent": "mine/1"})
        c.post("/predict", json={"features": victim.X_public[0].tolist()},
               headers={"X-API-Key": "k"})
    echo = received[0]["headers"]
    names = [k for k, _ in echo]
    assert "accept-encoding" not in names and names.count("x-forwarded-for") == 1
    assert dict(echo)["x-forwarded-for"] == "192.0.2.1, 127.0.0.1"
    assert dict(echo)["user-agent"] == "mine/1"
    assert dict(received[1]["headers"])["accept-encoding"] == "identity"  # monitored


# ------------------------------------------------------------------ 6. malformed input
MALFORMED = [
    b'{"features": [' + b"1" * 400 + b']}',
    b"[" * 5000 + b"]" * 5000,
    b'{"inputs": [{"name": "x", "shape": [1, 13], "datatype": ["FP64"], "data": []}]}',
    b'{"inputs": [{"name": "x", "shape": [1, 13], "datatype": {"a": 1}, "data": []}]}',
    b'{"inputs": [{"name": "x", "shape": [4294967296, 4294967296], "datatype": "FP64", '
    b'"data": [1]}]}',
    b'{"dataframe_split": {"columns": [1, 2], "data": [[1, 2]]}}',
    b'{"dataframe_split": {"columns": [[1], [2]], "data": [[1, 2]]}}',
    b'{"instances": [{"a": [1]}]}',
    b'{"dataframe_records": [{"x": 1}, 5]}',
    b'{"features": {"a": 1}}',
    b'\xff\xfe{',
]


@pytest.mark.parametrize("where", ["serve", "proxy"])
def test_malformed_bodies_get_4xx_counted_by_reason(victim, where, caplog):
    server = serve(victim) if where == "serve" else proxied(victim)
    with server as base, client(base, "fuzzy") as c:
        for body in MALFORMED:
            r = c.post("/predict", content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text[:200])
        text = c.get("/monitor/metrics", headers=ADMIN).text
    assert "Traceback" not in caplog.text
    rejected = sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("extraction_monitor_rejected_requests_total{"))
    unobserved = sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("extraction_monitor_unobserved_requests_total{"))
    assert rejected + unobserved == len(MALFORMED)


# ------------------------------------------------------------------ 7. enforcement
def test_a_throttled_client_pays_per_row_and_a_request_has_a_row_limit(victim):
    X = attack_rows(victim, 60, seed=16)
    with serve(victim, actions=["throttle"], throttle_rate=5.0, throttle_burst=5,
               max_rows=500) as base, client(base, "bulk") as c:
        assert c.post("/predict", json={"instances": X.tolist()}).status_code == 429
        r = c.post("/predict", json={"instances": X[:40].tolist()})
        assert r.status_code == 429 and "at most 5 rows" in r.json()["error"]
        time.sleep(1.1)
        assert c.post("/predict", json={"instances": X[:5].tolist()}).status_code == 200
        assert c.post("/predict", json={"instances": X[:5].tolist()}).status_code == 429
        r = c.post("/predict", json={"instances": np.tile(X, (10, 1)).tolist()})
        assert r.status_code == 413 and "at most 500" in r.json()["error"]


def test_a_flag_outlives_the_evidence_ttl(victim, fitted_victim):
    v, profile = fitted_victim("wine-tree")
    monitor = Monitor(profile, model=v.model, store=open_store("memory://?ttl=0.5"))
    app = build_victim_app(v, monitor, ServingConfig(salt=SALT, **BLOCK), admin_token=TOKEN)
    with running(app) as base, client(base, "patient") as bad, client(base, "idle") as good:
        assert good.post("/predict", json={"features": v.X_public[0].tolist()}
                         ).status_code == 200
        assert flag(bad, v)[-1] == 403
        time.sleep(1.0)
        assert bad.post("/predict", json={"features": v.X_public[0].tolist()}
                        ).status_code == 403
        listing = good.get("/monitor/clients", headers=ADMIN).json()
    assert listing["total"] == 1 and listing["clients"][0]["flagged"]  # the idle one went


def test_a_full_state_database_raises_an_alarm(victim, fitted_victim, tmp_path, caplog):
    v, profile = fitted_victim("wine-tree")
    store = open_store(f"sqlite://{tmp_path}/state.db?max_bytes=80000")
    monitor = Monitor(profile, model=v.model, store=store)
    app = build_victim_app(v, monitor, ServingConfig(salt=SALT), admin_token=TOKEN)
    with running(app) as base, httpx.Client(base_url=base) as c:
        assert c.get("/monitor/health").json() == {"status": "ok"}
        statuses = [c.post("/predict", json={"features": row.tolist()},
                           headers={"X-API-Key": f"client-{i}"}).status_code
                    for i, row in enumerate(attack_rows(v, 150, seed=17))]
        assert set(statuses) == {200}  # fail-open: answered, but not silently
        health = c.get("/monitor/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["lost_updates"] > 0
        text = c.get("/monitor/metrics", headers=ADMIN).text
        assert "extraction_monitor_store_degraded 1.0" in text
    assert sum("ALARM state store degraded" in r.message for r in caplog.records) == 1


def test_a_fail_closed_store_outage_answers_a_generic_503(victim, fitted_victim):
    v, profile = fitted_victim("wine-tree")
    store = open_store("redis://127.0.0.1:1/0?on_error=closed&timeout=0.05")
    app = build_victim_app(v, Monitor(profile, model=v.model, store=store),
                           ServingConfig(salt=SALT, **BLOCK), admin_token=TOKEN)
    with running(app) as base, client(base, "k") as c:
        r = c.post("/predict", json={"features": v.X_public[0].tolist()})
        assert r.status_code == 503 and "127.0.0.1" not in r.text and ":1" not in r.text


# ------------------------------------------------------------------ 9. small things
def test_the_admin_token_is_never_an_argument(tmp_path, capsys):
    from monitor.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--victim", "wine-tree", "--admin-token", "secret"])
    assert "unrecognized arguments: --admin-token" in capsys.readouterr().err
    empty = tmp_path / "token"
    empty.write_text("\n")
    status = main(["proxy", "--upstream", "http://127.0.0.1:9", "--profile", str(tmp_path),
                   "--admin-token-file", str(empty), "--state", "memory://"])
    assert status == 2 and "is empty" in capsys.readouterr().err
