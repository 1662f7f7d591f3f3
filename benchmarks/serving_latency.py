"""Throughput and p50/p99 latency of POST /predict: plain server against monitored variants.

Starts, as subprocesses on 127.0.0.1, ``extraction-monitor serve --victim V --no-monitor``
(the plain server) and one monitored ``serve`` per variant:

* ``memory``          ``--state memory://``
* ``sqlite``          ``--state sqlite:///TMP/state.db`` (SQLite is the store ``serve`` uses
                      by default; a fresh database in a temp folder, not the user's)
* ``sqlite+shadow``   the same with ``[serving] shadow = true`` (``--config`` TOML): the
                      answer is sent first and the monitor observes afterwards

and drives them all with the same requests (``--rows`` rows per request, keys
``client-0..client-{clients-1}``, ``--concurrency`` keep-alive connections; benchmarks/loadgen.py),
in alternating rounds in one run (the order rotates each round). After each round the
script waits until the server's CPU use is quiet, so a shadow server's remaining observes
never run during another variant's round (that wait is reported as ``drain_s``). Figures
are medians over rounds; ratios are monitored / plain. Each row also gives the server
process's CPU time per request (``/proc``), the figure least moved by other load. Targets
(issue 14): throughput >= 0.85x plain, p99 <= 1.5x plain.

    .venv/bin/python benchmarks/serving_latency.py                      (a few minutes)
    .venv/bin/python benchmarks/serving_latency.py --quick              (300 requests, 1 round)
    .venv/bin/python benchmarks/serving_latency.py --state sqlite --shadow   (sqlite, sqlite+shadow)
    .venv/bin/python benchmarks/serving_latency.py --victim digits-svm   (a costlier model)
Writes benchmarks/results/serving_latency.{json,md} (serving_latency-VICTIM.* for another
victim).
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

TARGET_RPS_RATIO = 0.85
TARGET_P99_RATIO = 1.5
DEFAULT_VARIANTS = ("memory", "sqlite", "sqlite+shadow")


def variants_of(states: list[str] | None, shadow: bool) -> list[str]:
    """The monitored variants: the default three, or each ``--state`` (and its shadow twin
    with ``--shadow``).

    >>> variants_of(None, False)
    ['memory', 'sqlite', 'sqlite+shadow']
    >>> variants_of(["sqlite"], True), variants_of(["memory"], False)
    (['sqlite', 'sqlite+shadow'], ['memory'])
    >>> variants_of(None, True)
    ['memory', 'memory+shadow', 'sqlite', 'sqlite+shadow']
    """
    if states is None and not shadow:
        return list(DEFAULT_VARIANTS)
    out = []
    for state in dict.fromkeys(states or ["memory", "sqlite"]):
        out += [state, f"{state}+shadow"] if shadow else [state]
    return out


def serve_command(victim: str, port: int, variant: str | None, tmp: Path) -> list[str]:
    """``serve`` for the plain server (``variant`` None) or a monitored variant."""
    cmd = [sys.executable, "-m", "monitor.cli", "serve", "--victim", victim, "--port",
           str(port), "--log-level", "error", "--quiet"]
    if variant is None:
        return [*cmd, "--no-monitor"]
    state, _, shadow = variant.partition("+")
    name = variant.replace("+", "-")
    cmd += ["--state", "memory://" if state == "memory" else f"sqlite://{tmp}/{name}.db"]
    if shadow:
        config = tmp / f"{name}.toml"
        config.write_text("[serving]\nshadow = true\n")
        cmd += ["--config", str(config)]
    return cmd


def verdict(ratios: dict) -> dict:
    return {"throughput": "met" if ratios["rps"] >= TARGET_RPS_RATIO else "MISSED",
            "p99": "met" if ratios["p99_ms"] <= TARGET_P99_RATIO else "MISSED"}


def table(summary: dict, variants: list[str]) -> list[str]:
    lines = ["| server | rps | p50 ms | p99 ms | CPU ms / request | rps / plain | p99 / plain | "
             "CPU / plain | drain s | throughput >= 0.85x | p99 <= 1.5x |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ["plain", *variants]:
        s = summary[name]
        r = summary["ratios"].get(name)
        row = (f"| {name} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
               f"{s['cpu_ms']:.2f} | ")
        if r is None:
            row += "1 | 1 | 1 | - | | |"
        else:
            v = summary["targets"][name]
            row += (f"{r['rps']:.2f}x | {r['p99_ms']:.2f}x | {r['cpu_ms']:.2f}x | "
                    f"{s['drain_s']:.2f} | "
                    f"{v['throughput']} | {v['p99']} |")
        lines.append(row)
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits-mlp")
    parser.add_argument("--state", action="append", choices=("memory", "sqlite"), default=None,
                        help="monitored variant(s) to measure (repeatable; default: memory, "
                             "sqlite and sqlite+shadow)")
    parser.add_argument("--shadow", action="store_true",
                        help="also measure each --state with [serving] shadow = true")
    parser.add_argument("--quick", action="store_true", help="300 requests, 1 round")
    parser.add_argument("--requests", type=int, default=None, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--clients", type=int, default=50, help="distinct API keys")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    n_requests = args.requests or (300 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 3)
    warm = 100 if args.quick else 300
    variants = variants_of(args.state, args.shadow)

    from victims import load_victim

    v = load_victim(args.victim)
    rng = np.random.default_rng(0)
    rows = v.X_public[rng.integers(0, len(v.X_public), (n_requests + warm, args.rows))]
    tmp = Path(tempfile.mkdtemp(prefix="em-serving-bench-"))
    servers: dict[str, Server] = {}
    for name in ["plain", *variants]:
        port = free_port()
        servers[name] = Server(name, serve_command(args.victim, port,
                                                   None if name == "plain" else name, tmp),
                               port, env=server_env())
    results: dict[str, list[dict]] = {name: [] for name in servers}
    try:
        start_all(list(servers.values()))
        for server in servers.values():
            reqs = [post_request(server.port, "/predict",
                                 {"instances": rows[i].tolist()}, f"client-{i % args.clients}")
                    for i in range(n_requests + warm)]
            server.requests = reqs
            drive(server.port, reqs[n_requests:], args.concurrency)  # warm-up
            server.wait_quiet()
        names = list(servers)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                server = servers[name]
                cpu_before = server.cpu_seconds()
                run = drive(server.port, server.requests[:n_requests], args.concurrency)
                run["drain_s"] = server.wait_quiet()
                # the server's own CPU per answer (shadow observes included): unlike rps,
                # hardly moved by what else the machine runs
                run["cpu_ms"] = (server.cpu_seconds() - cpu_before) / n_requests * 1e3
                results[name].append(run)
                print(f"round {r + 1}/{rounds} {name:<14} {run['rps']:7,.0f} rps  p50 "
                      f"{run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  drain "
                      f"{run['drain_s']:.2f} s  server CPU {run['cpu_ms']:.2f} ms/request",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    summary: dict = {name: median_of_rounds(runs) for name, runs in results.items()}
    summary["ratios"] = {name: {k: summary[name][k] / summary["plain"][k]
                                for k in ("rps", "p50_ms", "p99_ms", "cpu_ms")}
                          for name in variants}
    summary["targets"] = {name: verdict(summary["ratios"][name]) for name in variants}
    lines = table(summary, variants)
    print("\n".join(lines))
    print("monitored / plain: " + "; ".join(
        f"{n} rps {summary['ratios'][n]['rps']:.2f}x ({summary['targets'][n]['throughput']}), "
        f"p99 {summary['ratios'][n]['p99_ms']:.2f}x ({summary['targets'][n]['p99']})"
        for n in variants))
    result = {
        "command": command_line(), "code": code_state(), "victim": args.victim,
        "variants": variants,
        "requests_per_round": n_requests, "rounds": rounds, "warm_up_requests": warm,
        "concurrency": args.concurrency, "clients": args.clients, "rows_per_request": args.rows,
        "load_generator": "benchmarks/loadgen.py (asyncio keep-alive HTTP/1.1, same machine)",
        "target_rps_ratio_min": TARGET_RPS_RATIO, "target_p99_ratio_max": TARGET_P99_RATIO,
        "summary": summary, "rounds_raw": results, "loadavg_end": loadavg(),
    }
    if not args.no_write:
        # another victim's figures go beside the default ones, not over them
        name = "serving_latency" + ("" if args.victim == "digits-mlp" else f"-{args.victim}")
        write_results(name, result, lines)
    return result


if __name__ == "__main__":
    main()
