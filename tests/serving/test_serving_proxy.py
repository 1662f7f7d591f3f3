"""The monitored reverse proxy in front of a separate upstream server, over real HTTP."""

from __future__ import annotations

import numpy as np
from serving_helpers import client, free_port, running

from monitor.serving import ServingConfig, build_proxy_app
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "proxy-admin"


def test_proxy_forwards_monitors_and_blocks():
    v = load_victim("wine-tree", output_mode="proba")
    upstream_app = build_victim_app(v)  # the plain victim, no monitor
    rng = np.random.default_rng(3)
    with running(upstream_app) as upstream:
        proxy_app = build_proxy_app(upstream, build_victim_monitor(v),
                                    ServingConfig(salt="p", actions=["block"]), TOKEN)
        with running(proxy_app) as base, client(base, "good") as good, \
                client(base, "bad") as bad:
            X = v.X_public[rng.integers(0, len(v.X_public), 40)]
            for row in X:
                r = good.post("/predict", json={"instances": [row.tolist()]})
                assert r.status_code == 200
                assert np.allclose(r.json()["predictions"], v.answer(row[None]))
            # unmonitored paths pass straight through with the upstream's status
            assert good.get("/openapi.json").json()["paths"]["/predict"]
            assert good.get("/nope").status_code == 404
            statuses = [bad.post("/predict", json={"features": row.tolist()}).status_code
                        for row in rng.uniform(v.lower, v.upper, (60, v.n_features))]
            assert 403 in statuses and statuses[0] == 200
            first = statuses.index(403)
            assert set(statuses[first:]) == {403}
            listing = good.get("/monitor/clients", headers={"Authorization": f"Bearer {TOKEN}"})
            flags = sorted(c["flagged"] for c in listing.json()["clients"])
            assert flags == [False, True]
            # upstream errors keep their status and are not observed
            r = good.post("/predict", json={"features": [1.0] * (v.n_features + 1)})
            assert r.status_code == 422


def test_upstream_down_gives_502():
    v = load_victim("wine-tree")
    dead = f"http://127.0.0.1:{free_port()}"
    app = build_proxy_app(dead, build_victim_monitor(v), ServingConfig(salt="p"))
    with running(app) as base, client(base, "k") as c:
        r = c.post("/predict", json={"features": v.X_public[0].tolist()})
        assert r.status_code == 502
        assert "unreachable" in r.json()["error"]
        assert c.get("/anything").status_code == 502


def echo_upstream(delay: float = 0.0):
    """A raw ASGI upstream that answers what it received (method, raw path, query, headers,
    body) as JSON over three streamed chunks, after ``delay`` seconds; ``/gzip`` answers a
    gzip-encoded body with its Content-Encoding."""
    import asyncio
    import gzip
    import json

    from monitor.serving.http import read_body

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(scope, receive, 2**20) or b""
        await asyncio.sleep(delay)
        if scope["path"] == "/login":  # a session cookie for whoever logs in
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"set-cookie", b"session=alice-secret; Path=/")]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        if scope["path"] == "/gzip":
            packed = gzip.compress(b'{"predictions": [1]}')
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                (b"content-length", str(len(packed)).encode())]})
            await send({"type": "http.response.body", "body": packed})
            return
        seen = json.dumps({
            "method": scope["method"], "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"), "body": body.decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                        for k, v in scope["headers"]]}).encode()
        await send({"type": "http.response.start", "status": 207,
                    "headers": [(b"content-type", b"application/json"), (b"x-upstream", b"1")]})
        third = len(seen) // 3
        for part in (seen[:third], seen[third:2 * third]):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": seen[2 * third:]})

    return app


def test_the_proxy_forwards_paths_bodies_and_answers_byte_for_byte():
    import httpx

    v = load_victim("wine-tree")
    with running(echo_upstream()) as upstream:
        app = build_proxy_app(upstream, build_victim_monitor(v), ServingConfig(salt="p"))
        with running(app) as base, httpx.Client(base_url=base, timeout=30) as c:
            def chunks():
                yield b"first,"
                yield b"second"

            r = c.request("PUT", "/odd%2Fpath/x?q=1&q=2%20&empty=", content=chunks(),
                          headers={"X-Custom": "kept"})
            assert r.status_code == 207 and r.headers["x-upstream"] == "1"
            seen = r.json()
            assert seen["method"] == "PUT" and seen["raw_path"] == "/odd%2Fpath/x"
            assert seen["query"] == "q=1&q=2%20&empty=" and seen["body"] == "first,second"
            names = [k for k, _ in seen["headers"]]
            assert ["x-custom", "kept"] in seen["headers"]
            assert "x-forwarded-for" in names and names.count("host") == 1
            # nothing the proxy's HTTP client would add of its own (an unwatched GET:
            # only what httpx sent, which includes its own user-agent and accept)
            sent = {k.lower() for k in c.build_request("PUT", "/").headers}
            assert set(names) <= sent | {"x-custom", "x-forwarded-for", "transfer-encoding",
                                         "content-length"}
            seen = c.request("GET", "/with-body", content=chunks()).json()  # chunked GET
            assert seen["method"] == "GET" and seen["body"] == "first,second"
            raw = c.get("/gzip", headers={"Accept-Encoding": "gzip"})  # forwarded, not inflated
            assert raw.headers["content-encoding"] == "gzip"
            assert raw.json() == {"predictions": [1]}  # httpx inflated what the proxy kept


def test_the_proxy_keeps_no_cookies_between_clients():
    import httpx

    v = load_victim("wine-tree")
    with running(echo_upstream()) as upstream:
        named = upstream.replace("127.0.0.1", "localhost")  # cookie jars skip bare IPs
        app = build_proxy_app(named, build_victim_monitor(v), ServingConfig(salt="p"))
        with running(app) as base:
            with httpx.Client(base_url=base, timeout=30) as alice:
                assert alice.get("/login").headers["set-cookie"].startswith("session=alice")
            with httpx.Client(base_url=base, timeout=30) as bob:  # no cookies of his own
                seen = bob.get("/whoami").json()
            assert not [v for k, v in seen["headers"] if k == "cookie"]


def test_a_slow_upstream_gives_504():
    v = load_victim("wine-tree")
    with running(echo_upstream(delay=3.0)) as upstream:
        app = build_proxy_app(upstream, build_victim_monitor(v), ServingConfig(salt="p"),
                              timeout=0.5)
        with running(app) as base, client(base, "k") as c:
            r = c.get("/anything")
            assert r.status_code == 504 and "did not answer within 0.5 s" in r.json()["error"]
            assert upstream.split(":")[-1] not in r.text  # names no host or port


def test_a_null_the_model_cannot_take_is_a_422_naming_the_column():
    from upstreams import lenient_upstream

    v = load_victim("cancer-logreg", seed=0)  # logistic regression: no missing values
    monitor = build_victim_monitor(v)
    assert not any(monitor.profile.schema_.allow_nan)
    names = monitor.feature_names  # the profile's names
    row = v.X_public[0].tolist()
    row[2] = None
    with running(lenient_upstream(v)) as upstream:
        app = build_proxy_app(upstream, monitor, ServingConfig(salt="p"), TOKEN)
        with running(app) as base, client(base, "gappy") as c:
            r = c.post("/predict", json={"instances": [row]})
            named = c.post("/predict", json={"instances": [dict(zip(names, row, strict=True))]})
    for answer in (r, named):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == (f"row 0 column {names[2]!r} is null; the model "
                                          "cannot take missing values there: send a finite "
                                          "number")
