"""Group evidence when serving (``[serving] group_by``): a real uvicorn server; sybil keys
that each send a few off-distribution queries are each unflagged, their group is flagged and
alerted (``group_flagged``), a benign tenant's group is not, and no group id is a metric
label."""

from __future__ import annotations

import numpy as np
from serving_helpers import client, running, wait_for

from monitor.serving import ServingConfig
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor

TOKEN = "t"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _alerts(c) -> list[dict]:
    return c.get("/monitor/alerts", headers=ADMIN).json()["alerts"]


def _send(base: str, key: str, rows: np.ndarray, headers: dict[str, str]) -> dict:
    with client(base, key) as c:
        r = c.post("/predict", json={"instances": rows.tolist()}, headers=headers)
        assert r.status_code == 200  # a group flag alerts; it refuses no member
        return r.json()


def _sybils_and_tenant(victim, rng):
    """20 sybil keys with 3 uniform queries each; 8 benign users with 20 public records each;
    their requests interleaved."""
    sends = [(f"sybil-{i}", "acme", rng.uniform(victim.lower, victim.upper,
                                                (3, victim.n_features))) for i in range(20)]
    for k in range(8):
        for part in np.split(victim.X_public[rng.integers(0, len(victim.X_public), 20)], 4):
            sends.append((f"beta-user-{k}", "beta", part))
    return [sends[i] for i in rng.permutation(len(sends))]


def test_a_header_group_of_sybils_is_flagged_and_alerted():
    v = load_victim("cancer-logreg")
    cfg = ServingConfig(salt="s", group_by="header:X-Tenant")
    app = build_victim_app(v, build_victim_monitor(v), cfg, admin_token=TOKEN)
    with running(app) as base, client(base) as c:
        for key, tenant, rows in _sybils_and_tenant(v, np.random.default_rng(0)):
            _send(base, key, rows, {"X-Tenant": tenant})
        assert wait_for(lambda: any(a["event"] == "group_flagged" for a in _alerts(c)))
        alerts = _alerts(c)
        assert not [a for a in alerts if a["event"] == "client_flagged"]  # no sybil alone
        groups = [a["verdict"] for a in alerts if a["event"] == "group_flagged"]
        assert len(groups) == 1  # acme once; beta never
        acme = groups[0]
        assert acme["flagged"] and acme["group_id"].startswith("tenant-")
        assert "acme" not in acme["group_id"]  # hashed like client ids
        assert acme["flag_at"] < 60 and acme["n_queries"] <= 60 + 160
        clients = c.get("/monitor/clients", headers=ADMIN).json()
        flagged = [row for row in clients["clients"] if row["flagged"]]
        assert len(flagged) == 1 and flagged[0]["group"]  # only the group's own row
        assert flagged[0]["client_id"] == "group:" + acme["group_id"]
        metrics = c.get("/monitor/metrics", headers=ADMIN).text
        assert "extraction_monitor_group_flags_total 1.0" in metrics
        assert acme["group_id"] not in metrics


def test_a_peer_group_reads_forwarded_addresses_only_from_trusted_proxies():
    v = load_victim("cancer-logreg")
    rng = np.random.default_rng(1)
    cfg = ServingConfig(salt="s", group_by="peer", trusted_proxies=["127.0.0.1"])
    app = build_victim_app(v, build_victim_monitor(v), cfg, admin_token=TOKEN)
    with running(app) as base, client(base) as c:
        for i, (key, tenant, rows) in enumerate(_sybils_and_tenant(v, rng)):
            net = "203.0.113" if tenant == "acme" else "198.51.100"
            _send(base, key, rows, {"X-Forwarded-For": f"{net}.{i % 250 + 1}"})
        assert wait_for(lambda: any(a["event"] == "group_flagged" for a in _alerts(c)))
        groups = [a["verdict"] for a in _alerts(c) if a["event"] == "group_flagged"]
        assert len(groups) == 1 and groups[0]["group_id"].startswith("net-")
        assert not [a for a in _alerts(c) if a["event"] == "client_flagged"]
