"""Throughput and p50/p99 latency of POST /predict with and without the monitor.

Starts two servers as subprocesses on 127.0.0.1 (`extraction-monitor serve --victim V` and the
same with `--no-monitor`), drives both with the same asyncio/httpx load generator on loopback,
alternating rounds, and prints per-variant figures and the monitored/plain ratios.

    .venv/bin/python benchmarks/serving_latency.py [--victim wine-tree] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from victims import load_victim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(victim: str, monitored: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "monitor.cli", "serve", "--victim", victim, "--port", str(port),
           "--log-level", "error"]
    if not monitored:
        cmd.append("--no-monitor")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/openapi.json", timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server {cmd} did not start")


async def load(base: str, rows: np.ndarray, concurrency: int, n_clients: int) -> dict:
    latencies: list[float] = []
    queue = list(range(len(rows)))

    async def worker(c: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            r = await c.post("/predict", json={"instances": [rows[i].tolist()]},
                             headers={"X-API-Key": f"client-{i % n_clients}"})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"unexpected status {r.status_code}: {r.text}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {"rps": len(lat) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="wine-tree")
    parser.add_argument("--requests", type=int, default=2000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    v = load_victim(args.victim)
    rng = np.random.default_rng(0)
    rows = v.X_public[rng.integers(0, len(v.X_public), args.requests)]
    servers = {"plain": start(args.victim, False), "monitored": start(args.victim, True)}
    results: dict[str, list[dict]] = {"plain": [], "monitored": []}
    try:
        for _proc, base in servers.values():  # warm-up
            asyncio.run(load(base, rows[:200], args.concurrency, args.clients))
        for _ in range(args.rounds):
            for name, (_, base) in servers.items():
                results[name].append(asyncio.run(
                    load(base, rows, args.concurrency, args.clients)))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    summary = {name: {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
               for name, runs in results.items()}
    summary["ratio_monitored_over_plain"] = {
        k: summary["monitored"][k] / summary["plain"][k] for k in summary["plain"]}
    summary["setup"] = {"victim": args.victim, "requests": args.requests, "rounds": args.rounds,
                        "concurrency": args.concurrency, "clients": args.clients,
                        "rows_per_request": 1}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
