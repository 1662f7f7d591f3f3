"""Latency the proxy adds: direct to a model server against `extraction-monitor proxy` in front.

Starts, as subprocesses on 127.0.0.1:

* ``direct``     a plain model server (benchmarks/model_server.py: uvicorn, digits-mlp's
                 ``predict_proba``, MLflow-style ``POST /invocations``);
* ``proxy-off``  ``extraction-monitor proxy --upstream ... --route /benchmark-watches-nothing``:
                 the proxy and its middleware in the path, but no route watched, so no request
                 is observed (the CLI has no ``--no-monitor`` for ``proxy``): the cost of
                 proxying alone;
* ``proxy``      ``extraction-monitor proxy --upstream ... --profile P --state sqlite:///TMP``
                 (``--state memory`` for memory://): proxying plus monitoring,

and drives all three with the same requests (MLflow ``dataframe_split`` bodies with the
64 column names, ``--clients`` API keys; benchmarks/loadgen.py) for 2-row and 1-row requests
at concurrency 1 and 8, alternating rounds in one run. Figures are medians over rounds.
Targets (issue 14): p50 added <= 1 ms, p99 <= 1.3x direct; throughput ratio reported.

    .venv/bin/python benchmarks/proxy_latency.py            (a few minutes)
    .venv/bin/python benchmarks/proxy_latency.py --quick    (200 requests per cell, 1 round)
Writes benchmarks/results/proxy_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from loadgen import (
    Server,
    code_state,
    command_line,
    drive,
    free_port,
    loadavg,
    median_of_rounds,
    post_request,
    server_env,
    start_all,
)
from offline_throughput import write_results

TARGET_P50_ADDED_MS = 1.0
TARGET_P99_RATIO = 1.3
UNWATCHED_ROUTE = "/benchmark-watches-nothing"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits-mlp")
    parser.add_argument("--state", choices=("sqlite", "memory"), default="sqlite",
                        help="the monitored proxy's store (default: sqlite, as `proxy` uses)")
    parser.add_argument("--quick", action="store_true", help="200 requests per cell, 1 round")
    parser.add_argument("--requests", type=int, default=None, help="per cell, variant, round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--rows", type=ints, default=[2, 1], help="rows per request (2,1)")
    parser.add_argument("--concurrency", type=ints, default=[1, 8], help="connections (1,8)")
    parser.add_argument("--clients", type=int, default=50, help="distinct API keys")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    n_requests = args.requests or (200 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 3)
    warm = 100 if args.quick else 300

    from monitor import Profile
    from victims import load_victim

    victim = load_victim(args.victim)
    tmp = Path(tempfile.mkdtemp(prefix="em-proxy-bench-"))
    Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                  y_cal=victim.y_cal, feature_names=victim.feature_names).save(tmp / "profile")
    up_port, off_port, mon_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    proxy = [sys.executable, "-m", "monitor.cli", "proxy", "--upstream", upstream, "--profile",
             str(tmp / "profile"), "--log-level", "error", "--quiet"]
    state = "memory://" if args.state == "memory" else f"sqlite://{tmp}/state.db"
    servers = {
        "direct": Server("direct", [sys.executable, "benchmarks/model_server.py", "--victim",
                                    args.victim, "--port", str(up_port)], up_port,
                         env=server_env(), ready_path="/health"),
        "proxy-off": Server("proxy-off", [*proxy, "--port", str(off_port), "--state",
                                          "memory://", "--route", UNWATCHED_ROUTE], off_port,
                            env=server_env(), ready_path="/health"),
        "proxy": Server("proxy", [*proxy, "--port", str(mon_port), "--state", state],
                        mon_port, env=server_env(), ready_path="/health"),
    }
    rng = np.random.default_rng(0)
    columns = list(victim.feature_names)
    cells = [(r, c) for r in args.rows for c in args.concurrency]
    results: dict[tuple, dict[str, list[dict]]] = {cell: {n: [] for n in servers}
                                                   for cell in cells}
    try:
        start_all(list(servers.values()))
        bodies = {}
        for n_rows in args.rows:
            X = victim.X_public[rng.integers(0, len(victim.X_public),
                                             (n_requests + warm, n_rows))]
            bodies[n_rows] = [{"dataframe_split": {"columns": columns, "data": x.tolist()}}
                              for x in X]
        requests = {(name, n_rows): [post_request(s.port, "/invocations", b,
                                                  f"client-{i % args.clients}")
                                     for i, b in enumerate(bodies[n_rows])]
                    for name, s in servers.items() for n_rows in args.rows}
        for name, server in servers.items():  # warm-up, every row count
            for n_rows in args.rows:
                drive(server.port, requests[name, n_rows][n_requests:], max(args.concurrency))
            server.wait_quiet()
        names = list(servers)
        for r in range(rounds):
            for n_rows, conc in cells:
                for name in names[r % len(names):] + names[:r % len(names)]:
                    run = drive(servers[name].port, requests[name, n_rows][:n_requests], conc)
                    servers[name].wait_quiet()
                    results[n_rows, conc][name].append(run)
                    print(f"round {r + 1}/{rounds} rows {n_rows} conc {conc} {name:<9} "
                          f"{run['rps']:7,.0f} rps  p50 {run['p50_ms']:6.2f} ms  p99 "
                          f"{run['p99_ms']:6.2f} ms", flush=True)
        checks = servers["proxy"].output()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    table = ["| rows | conc | server | rps | p50 ms | p99 ms | p50 added ms | p99 / direct | "
             "rps / direct | p50 <= +1 ms | p99 <= 1.3x |", "|---|---|---|---|---|---|---|---|"
             "---|---|---|"]
    cells_out = []
    for n_rows, conc in cells:
        med = {name: median_of_rounds(runs) for name, runs in results[n_rows, conc].items()}
        d = med["direct"]
        cell = {"rows": n_rows, "concurrency": conc, "servers": med}
        for name in ("proxy-off", "proxy"):
            m = med[name]
            cell[name] = {"p50_added_ms": m["p50_ms"] - d["p50_ms"],
                          "p99_ratio": m["p99_ms"] / d["p99_ms"], "rps_ratio": m["rps"] / d["rps"]}
            cell[name]["p50_target"] = ("met" if cell[name]["p50_added_ms"] <= TARGET_P50_ADDED_MS
                                        else "MISSED")
            cell[name]["p99_target"] = ("met" if cell[name]["p99_ratio"] <= TARGET_P99_RATIO
                                        else "MISSED")
        cell["monitoring_p50_added_ms"] = med["proxy"]["p50_ms"] - med["proxy-off"]["p50_ms"]
        cells_out.append(cell)
        for name in servers:
            m = med[name]
            row = (f"| {n_rows} | {conc} | {name} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | "
                   f"{m['p99_ms']:.2f} | ")
            if name == "direct":
                row += "- | 1 | 1 | | |"
            else:
                c = cell[name]
                row += (f"{c['p50_added_ms']:+.2f} | {c['p99_ratio']:.2f}x | "
                        f"{c['rps_ratio']:.2f}x | {c['p50_target']} | {c['p99_target']} |")
            table.append(row)
    table += ["", "p50 the monitor adds over the bare proxy (proxy - proxy-off): " + ", ".join(
        f"{c['rows']} row(s) at concurrency {c['concurrency']}: "
        f"{c['monitoring_p50_added_ms']:+.2f} ms" for c in cells_out) + "."]
    print("\n".join(table))
    first = cells_out[0]
    print(f"proxy, {first['rows']} row(s) at concurrency {first['concurrency']}: p50 added "
          f"{first['proxy']['p50_added_ms']:+.2f} ms ({first['proxy']['p50_target']}), p99 "
          f"{first['proxy']['p99_ratio']:.2f}x ({first['proxy']['p99_target']}), rps "
          f"{first['proxy']['rps_ratio']:.2f}x; of which proxying alone (no route watched) "
          f"{first['proxy-off']['p50_added_ms']:+.2f} ms")
    if checks.strip():
        print(f"proxy log (errors only):\n{checks[-2000:]}", file=sys.stderr)
    result = {
        "command": command_line(), "code": code_state(), "victim": args.victim, "state": args.state,
        "requests_per_cell": n_requests, "rounds": rounds, "warm_up_requests": warm,
        "clients": args.clients, "body": "MLflow dataframe_split with column names, "
        "POST /invocations", "upstream": "benchmarks/model_server.py (uvicorn, one process)",
        "proxy_off": f"proxy with --route {UNWATCHED_ROUTE}: no route watched",
        "load_generator": "benchmarks/loadgen.py (asyncio keep-alive HTTP/1.1, same machine)",
        "target_p50_added_ms_max": TARGET_P50_ADDED_MS, "target_p99_ratio_max": TARGET_P99_RATIO,
        "cells": cells_out, "rounds_raw": {f"rows={r},conc={c}": v
                                          for (r, c), v in results.items()},
        "loadavg_end": loadavg(),
    }
    if not args.no_write:
        write_results("proxy_latency", result, table)
    return result


if __name__ == "__main__":
    main()
