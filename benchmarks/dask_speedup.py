"""Dask engine speed-up with 1 and 2 workers against the in-process pandas engine, one run.

One seeded log (digits-mlp profile, 64 features; ``--rows`` queries from ``--clients``
clients) is partitioned once into ``--partitions`` files; then the same folder is analyzed by
the pandas engine in this process, and by the Dask engine on a LocalCluster of 1 and of 2
single-threaded worker processes (cluster start-up and worker warm-up -- imports, profile load -- timed separately).
Beside the load average, each phase records how many cores the whole machine kept busy
(``*_busy_cores``, from /proc/stat): about 1 for the pandas engine and 1 worker, 2 for two
workers, on an otherwise idle machine; more means other work shared the cores.
``--wait-idle SECONDS`` first waits for other work to stop.
Tables are checked equal. On a machine with C free cores expect up to min(C, workers)x;
on a cluster, partitions are independent tasks, so throughput scales with workers until
the shared storage or the scheduler (about 1 ms per task) limits it (see docs/scaling.md).

Run:  .venv/bin/python benchmarks/dask_speedup.py          (a few minutes)
      .venv/bin/python benchmarks/dask_speedup.py --quick  (< 1 minute)
Writes benchmarks/results/dask_speedup.{json,md}.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from offline_throughput import digits_profile, make_log, write_results  # noqa: E402


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "n/a"


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat (None elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before, after) -> float | None:
    """Cores the whole machine kept busy between two :func:`cpu_ticks` (ours included): with
    C cores, a phase using w workers on an otherwise idle machine shows about w."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def wait_until_idle(limit_s: float, threshold: float = 0.3) -> str:
    """Wait (at most ``limit_s``) until the machine's busy cores over 5 s fall below
    ``threshold``; the load average lags by a minute, so it is sampled directly."""
    deadline = time.monotonic() + limit_s
    while True:
        before = cpu_ticks()
        time.sleep(5)
        busy = busy_cores(before, cpu_ticks())
        if busy is None or busy < threshold:
            return f"idle ({busy:.2f} busy cores)" if busy is not None else "n/a"
        if time.monotonic() > deadline:
            return f"gave up waiting: {busy:.2f} busy cores"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other work on the machine to stop")
    args = parser.parse_args(argv)
    from distributed import Client

    from monitor.engines import analyze_partitioned
    from monitor.engines.dask_engine import analyze_partitioned_dask, local_cluster, warm_up
    from monitor.partition import partition_log

    rows = args.rows or (20_000 if args.quick else 200_000)
    clients = args.clients or (200 if args.quick else 2_000)
    victim, profile = digits_profile()
    command = "benchmarks/dask_speedup.py" + (" --quick" if args.quick else "") + (
        f" --wait-idle {args.wait_idle:g}" if args.wait_idle else "")
    result = {"command": command,
              "queries": rows, "clients": clients, "partitions": args.partitions,
              "cpu_count": os.cpu_count(), "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="em-bench-") as tmp:
        tmp = Path(tmp)
        profile.save(tmp / "profile")
        make_log(victim, rows, clients).to_parquet(tmp / "log.parquet", index=False)
        partition_log(tmp / "log.parquet", tmp / "parts", args.partitions)
        if args.wait_idle:
            result["idle_wait"] = wait_until_idle(args.wait_idle)
            result["loadavg_start"] = loadavg()
        ticks, start = cpu_ticks(), time.perf_counter()
        reference = analyze_partitioned(tmp / "parts", profile).table
        result["pandas_s"] = time.perf_counter() - start
        result["pandas_busy_cores"] = busy_cores(ticks, cpu_ticks())
        for workers in (1, 2):
            start = time.perf_counter()
            cluster = local_cluster(n_workers=workers)
            client = Client(cluster)
            warm_up(client, tmp / "profile")  # imports + profile load, once per worker
            result[f"dask{workers}_startup_s"] = time.perf_counter() - start
            ticks = cpu_ticks()
            try:
                run = analyze_partitioned_dask(tmp / "parts", tmp / "profile", client=client)
                result[f"dask{workers}_busy_cores"] = busy_cores(ticks, cpu_ticks())
            finally:
                client.close()
                cluster.close()
            pd.testing.assert_frame_equal(run.table, reference)
            result[f"dask{workers}_s"] = run.seconds
            result[f"dask{workers}_peak_rss_mib"] = run.peak_rss_bytes / 2**20
    result["speedup_dask1_over_pandas"] = result["pandas_s"] / result["dask1_s"]
    result["speedup_dask2_over_dask1"] = result["dask1_s"] / result["dask2_s"]
    result["speedup_dask2_over_pandas"] = result["pandas_s"] / result["dask2_s"]
    result["loadavg_end"] = loadavg()
    print(f"pandas engine (1 process): {result['pandas_s']:.1f} s "
          f"({rows / result['pandas_s']:,.0f} queries/s)")
    for w in (1, 2):
        print(f"dask, {w} worker(s): {result[f'dask{w}_s']:.1f} s "
              f"({rows / result[f'dask{w}_s']:,.0f} queries/s; cluster start and warm-up "
              f"{result[f'dask{w}_startup_s']:.1f} s not included)")
    print(f"speed-up 2 vs 1 worker: {result['speedup_dask2_over_dask1']:.2f}x; dask 1 worker vs "
          f"pandas: {result['speedup_dask1_over_pandas']:.2f}x; tables identical; load average "
          f"{result['loadavg_start']} -> {result['loadavg_end']} on {os.cpu_count()} cores")
    print("busy cores of the whole machine (ours included) while analyzing: " + ", ".join(
        f"{k.removesuffix('_busy_cores')} {v:.2f}" for k, v in result.items()
        if k.endswith("_busy_cores") and v is not None))
    if not args.no_write:
        write_results("dask_speedup", result)
    return result


if __name__ == "__main__":
    main()
