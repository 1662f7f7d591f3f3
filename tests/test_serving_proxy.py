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
