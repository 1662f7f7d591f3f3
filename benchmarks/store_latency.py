"""Per-query latency that each state store adds to ``Monitor.observe``, as ratios to memory://.

Runs, side by side in one process and alternating rounds, ``Monitor.observe`` of single
rows for a set of clients on: no store (state inside the Monitor), ``memory://``,
``sqlite:///tmp/...`` (WAL) and ``redis://`` on loopback (a ``redis-server`` started on a
free port in a temp dir; skipped when the binary is missing). Prints the median and p99
per-call time of each variant, the time added over ``memory://``, the ratios to ``memory://``
and the encoded record size.

    .venv/bin/python benchmarks/store_latency.py [--victim cancer-logreg] [--queries 400]
Writes benchmarks/results/store_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from loadgen import command_line
from offline_throughput import write_results

from monitor import Monitor, Profile
from monitor.stores import open_store
from victims import load_victim


def start_redis(directory: Path) -> tuple[subprocess.Popen | None, str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                             str(directory), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    store = open_store(url + "?on_error=closed")
    deadline = time.monotonic() + 10
    while True:
        try:
            store.redis.ping()
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                return None, None
            time.sleep(0.05)
    store.close()
    return proc, url


def time_calls(mon: Monitor, rows: np.ndarray, clients: list[str]) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        started = time.perf_counter()
        mon.observe(clients[i % len(clients)], row)
        out[i] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="cancer-logreg")
    parser.add_argument("--queries", type=int, default=400, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    victim = load_victim(args.victim)
    profile = Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                            y_cal=victim.y_cal)
    rng = np.random.default_rng(0)
    clients = [f"client-{i}" for i in range(args.clients)]
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    redis_proc, redis_url = start_redis(tmp)
    uris = {"none": None, "memory": "memory://", "sqlite": f"sqlite://{tmp}/state.db"}
    if redis_url:
        uris["redis"] = redis_url
    else:
        print("redis-server not found: the redis variant is skipped", file=sys.stderr)
    monitors = {name: Monitor(profile, model=victim.model,
                              store=None if uri is None else open_store(uri))
                for name, uri in uris.items()}
    times: dict[str, list[np.ndarray]] = {name: [] for name in uris}
    try:
        warm = victim.X_public[:20]
        for mon in monitors.values():
            time_calls(mon, warm, clients)
        for _ in range(args.rounds):
            rows = np.vstack([victim.X_public, rng.uniform(victim.lower, victim.upper,
                                                           size=victim.X_public.shape)])
            rows = rows[rng.permutation(len(rows))[:args.queries]]
            for name, mon in monitors.items():  # same rows, one variant after the other
                times[name].append(time_calls(mon, rows, clients))
        record = monitors["memory"].store.export(clients[0])
    finally:
        for mon in monitors.values():
            if mon.store is not None:
                mon.store.close()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    median = {n: float(np.median(np.concatenate(t))) for n, t in times.items()}
    summary = {
        "command": command_line(), "victim": args.victim, "queries_per_variant": args.queries * args.rounds,
        "record_bytes": len(record),
        "median_us": {n: round(v * 1e6, 1) for n, v in median.items()},
        "p99_us": {n: round(float(np.quantile(np.concatenate(t), 0.99)) * 1e6, 1)
                   for n, t in times.items()},
        "added_over_memory_us": {n: round((v - median["memory"]) * 1e6, 1)
                                 for n, v in median.items()},
        "ratio_to_memory": {n: round(v / median["memory"], 3) for n, v in median.items()},
    }
    print(json.dumps(summary, indent=2))
    print("median observe: " + ", ".join(
        f"{n} {summary['median_us'][n]:,.0f} us ({summary['ratio_to_memory'][n]}x memory://)"
        for n in uris))
    if not args.no_write:
        lines = ["| store | median us | p99 us | added over memory:// us | / memory:// |",
                 "|---|---|---|---|---|"]
        lines += [f"| {n} | {summary['median_us'][n]:,.1f} | {summary['p99_us'][n]:,.1f} | "
                  f"{summary['added_over_memory_us'][n]:+,.1f} | {summary['ratio_to_memory'][n]}x |"
                  for n in uris]
        write_results("store_latency", summary, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
