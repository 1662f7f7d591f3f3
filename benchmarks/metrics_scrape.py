"""``/monitor/metrics`` scrape and ``/monitor/clients`` page at many clients: before and after.

Issue 12 measured a 5.7 s scrape at 100k clients: the old scrape listed every client and
decoded each record to count the flagged ones, and the old listing built every client's
verdict to sort them. Now the store keeps an index: the scrape reads two counts and the
listing one page. This builds a SQLite state database with ``--clients`` real client
records (one observed query each, every 50th flagged), then times, side by side in one
process and alternating rounds, the old scan (reproduced here as it was) and the new
``AdminAPI`` code on the same store, and prints the ratios.

    .venv/bin/python benchmarks/metrics_scrape.py [--clients 100000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from loadgen import results_dir

from monitor import Monitor, Profile
from monitor.serving.admin import AdminAPI
from monitor.serving.metrics import ServingMetrics
from monitor.serving.policy import EnforcementPolicy
from monitor.settings import ServingConfig
from monitor.state_record import record_summary
from monitor.stores import open_store
from victims import load_victim


def build_store(path: Path, n: int, victim, profile) -> None:
    """``n`` client records of one observed query each (every 50th flagged), bulk-written."""
    mon = Monitor(profile, model=victim.model, store=open_store(f"sqlite://{path}"))
    mon.observe("template", victim.X_public[:1])
    mon.observe("flagged", np.random.default_rng(0).uniform(victim.lower, victim.upper,
                                                            (60, victim.n_features)))
    assert mon.verdict("flagged").flagged
    conn = sqlite3.connect(path, isolation_level=None)
    rows = {c: conn.execute("SELECT blob FROM client_state WHERE client_id = ?", (c,))
            .fetchone()[0] for c in ("template", "flagged")}
    summaries = {c: record_summary(bytes(b)) for c, b in rows.items()}
    conn.execute("DELETE FROM client_state")
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO client_state (client_id, blob, updated_at, version, n_queries, score, "
        "flagged) VALUES (?, ?, ?, 1, ?, ?, ?)",
        ((f"key-{i:024x}", rows[kind], now, s.n_queries, s.score, int(s.flagged))
         for i in range(n) for kind in ["flagged" if i % 50 == 0 else "template"]
         for s in [summaries[kind]]))
    conn.execute("COMMIT")
    conn.close()


def old_scrape(monitor: Monitor, metrics: ServingMetrics) -> bytes:
    """The scrape before issue 12: every client's record decoded to count flags."""
    clients = monitor.clients()
    flagged = 0
    for client_id in clients:
        status = monitor.flag_status(client_id)
        flagged += status is not None and status.flagged
    metrics.clients.set(len(clients))
    metrics.flagged_clients.set(flagged)
    metrics.sync(monitor.counters())
    return metrics.render()


def old_page(monitor: Monitor) -> list:
    """The listing before issue 12: every client's verdict built, sorted, then sliced."""
    rows = [monitor.verdict(c).summary() for c in monitor.clients()]
    rows.sort(key=lambda r: r["score"], reverse=True)
    return rows[:50]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--victim", default="cancer-logreg")
    parser.add_argument("--out", type=Path, default=results_dir())
    args = parser.parse_args()

    victim = load_victim(args.victim)
    profile = Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                            y_cal=victim.y_cal)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "state.db"
        build_store(db, args.clients, victim, profile)
        monitor = Monitor(profile, model=victim.model, store=open_store(f"sqlite://{db}"))
        metrics = ServingMetrics(multiprocess=False)
        admin = AdminAPI(monitor, EnforcementPolicy(ServingConfig()), None, metrics, "t")
        timings: dict[str, list[float]] = {k: [] for k in ("scrape_before", "scrape_after",
                                                           "page_before", "page_after")}
        for _ in range(args.rounds):  # alternate: the same machine state for both
            for name, call in (("scrape_before", lambda: old_scrape(monitor, metrics)),
                               ("scrape_after", admin._metrics),
                               ("page_before", lambda: old_page(monitor)),
                               ("page_after", lambda: admin._list_clients({}))):
                start = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - start)
        check = admin._metrics().decode()
        expected = f"extraction_monitor_flagged_clients {float(-(-args.clients // 50))}"
        assert expected in check, "the index counts disagree with the records"
    med = {k: float(np.median(v)) for k, v in timings.items()}
    result = {
        "clients": args.clients, "rounds": args.rounds,
        "median_seconds": med,
        "scrape_ratio_before_over_after": med["scrape_before"] / med["scrape_after"],
        "page_ratio_before_over_after": med["page_before"] / med["page_after"],
        "flagged_line": next(line for line in check.splitlines()
                             if line.startswith("extraction_monitor_flagged_clients ")),
    }
    print(json.dumps(result, indent=2))
    print(f"{args.clients:,} clients: scrape {1000 * med['scrape_after']:.2f} ms (was "
          f"{med['scrape_before']:.3f} s, {result['scrape_ratio_before_over_after']:,.0f}x), "
          f"first page {1000 * med['page_after']:.2f} ms (was {med['page_before']:.3f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_scrape.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "metrics_scrape.md").write_text(
        f"# /monitor/metrics and /monitor/clients at {args.clients:,} clients (SQLite)\n\n"
        f"Medians of {args.rounds} alternating rounds in one process "
        f"(`benchmarks/metrics_scrape.py --clients {args.clients}`).\n\n"
        "| call | before (scan) | after (index) | ratio |\n|---|---|---|---|\n"
        f"| scrape | {med['scrape_before']:.3f} s | {1000 * med['scrape_after']:.2f} ms | "
        f"{result['scrape_ratio_before_over_after']:,.0f}x |\n"
        f"| first page | {med['page_before']:.3f} s | {1000 * med['page_after']:.2f} ms | "
        f"{result['page_ratio_before_over_after']:,.0f}x |\n")


if __name__ == "__main__":
    main()
