"""Offline throughput (queries/s per core) of `analyze` against a per-query PRADA, one run.

The log: ``--rows`` queries (default 1M) from ``--clients`` clients (default 10k), 64 features,
digits-mlp's profile; rows are public digits rows plus seeded noise, clipped to the feature
box, with the probabilities the victim returns; clients' queries interleaved in time.

Ours: ``extraction-monitor analyze LOG.parquet --out-of-core`` in a fresh single-threaded
process (OPENBLAS/OMP threads = 1), timed end to end (partitioning included) with its
peak RSS. PRADA: ``PradaState.update`` per query (its published per-query loop) on the rows
of a seeded subsample of clients (``--prada-clients``), reported per query: running it on the
whole log would take far longer and its per-query cost does not depend on other clients.

Run:  .venv/bin/python benchmarks/offline_throughput.py            (about 5-10 minutes)
      .venv/bin/python benchmarks/offline_throughput.py --quick    (CI-sized, < 1 minute)
      .venv/bin/python benchmarks/offline_throughput.py --anchor /tmp/base --repeat 2
           (the same log also analyzed by the code of checkout /tmp/base, alternating)
      .venv/bin/python benchmarks/offline_throughput.py --rss-rows 4000000   (peak RSS of the
           two out-of-core stages, each in a fresh process; writes offline_rss.{json,md})
Writes benchmarks/results/offline_throughput.{json,md}.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # per-core figures

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from loadgen import results_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VICTIM = "digits-mlp"


def digits_profile():
    """digits-mlp (64 features) and its profile, seeded."""
    from monitor import Profile
    from victims import load_victim

    victim = load_victim(VICTIM, seed=0)
    profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                  X_cal=victim.X_cal, y_cal=victim.y_cal,
                                  feature_names=victim.feature_names)
    return victim, profile


def public_like_rows(victim, n: int, rng: np.random.Generator) -> np.ndarray:
    """Public rows plus Gaussian noise (0.1 feature std), clipped to the feature box."""
    base = victim.X_public[rng.integers(0, len(victim.X_public), n)]
    noise = rng.normal(0.0, 0.1, base.shape) * victim.X_train.std(axis=0)
    return np.clip(base + noise, victim.lower, victim.upper)


def make_log(victim, n_rows: int, n_clients: int, seed: int = 0) -> pd.DataFrame:
    """A seeded query log: client_id, seq (interleaved), x_0..x_63, p_0..p_9."""
    rng = np.random.default_rng(seed)
    X = public_like_rows(victim, n_rows, rng)
    proba = victim.model.predict_proba(X)
    frame = pd.DataFrame(X, columns=[f"x_{j}" for j in range(X.shape[1])])
    frame.insert(0, "client_id", pd.Series(rng.integers(0, n_clients, n_rows)).map(
        "client-{:05d}".format))
    frame.insert(1, "seq", np.arange(n_rows))
    for j in range(proba.shape[1]):
        frame[f"p_{j}"] = proba[:, j]
    return frame


def run_cli_analyze(log: Path, profile_dir: Path, out: Path, extra: list[str],
                    tree: Path = ROOT) -> tuple[float, str]:
    """Time `extraction-monitor analyze` in a fresh process; return (seconds, stdout).
    ``tree``: the checkout whose code runs (another one, e.g. a git worktree of the previous
    commit, to measure an anchor side by side)."""
    cmd = [sys.executable, "-m", "monitor.cli", "analyze", str(log), "--profile",
           str(profile_dir), "--out", str(out), *extra]
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree != ROOT else None
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tree, check=False, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"analyze failed: {done.stderr.strip()}")
    return seconds, done.stdout.strip()


def child_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_analyze(log: Path, profile_dir: Path, out: Path, tree: Path = ROOT) -> dict:
    """One end-to-end ``analyze --out-of-core`` run: seconds, CPU seconds, peak RSS."""
    cpu = child_cpu_seconds()
    seconds, stdout = run_cli_analyze(log, profile_dir, out, ["--out-of-core"], tree)
    rss = stdout.rsplit("peak RSS ", 1)[1].split(" MiB")[0].replace(",", "")
    return {"seconds": seconds, "cpu_seconds": child_cpu_seconds() - cpu,
            "peak_rss_mib": float(rss), "summary": stdout}


def prada_rate(victim, profile, frame: pd.DataFrame, n_clients: int, seed: int = 0) -> dict:
    """Per-query PRADA on the rows of ``n_clients`` sampled clients: queries/s."""
    from monitor.baselines.prada import PradaState

    rng = np.random.default_rng(seed)
    chosen = rng.choice(frame["client_id"].unique(), n_clients, replace=False)
    sub = frame[frame["client_id"].isin(chosen)]
    features = [c for c in frame.columns if c.startswith("x_")]
    probas = [c for c in frame.columns if c.startswith("p_")]
    Z = profile.transform(sub[features].to_numpy())
    labels = sub[probas].to_numpy().argmax(axis=1)
    groups = sub.groupby("client_id", sort=False).indices
    start = time.perf_counter()
    for rows in groups.values():
        PradaState().update(Z[rows], labels[rows], delta=0.95)
    seconds = time.perf_counter() - start
    return {"queries": int(len(sub)), "clients": n_clients, "seconds": seconds,
            "queries_per_s": len(sub) / seconds}


def write_big_log(victim, path: Path, n_rows: int, n_clients: int, seed: int = 0,
                  block: int = 500_000) -> None:
    """A seeded log of ``n_rows`` written block by block (never whole in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for start in range(0, n_rows, block):
            frame = make_log(victim, min(block, n_rows - start), n_clients, seed + start)
            frame["seq"] += start
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=131_072)
    finally:
        if writer is not None:
            writer.close()


def child_peak_rss_mib(code: str) -> tuple[float, float]:
    """Run python ``code`` (which prints ``peak_rss_bytes()`` last) in a fresh process:
    (seconds, its own peak RSS in MiB, from VmHWM)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr.strip()}")
    return seconds, int(done.stdout.split()[-1]) / 2**20


def rss_run(victim, profile, n_rows: int, n_clients: int) -> dict:
    """Peak RSS of the two out-of-core stages on an ``n_rows`` log, each in a fresh process:
    partitioning the whole log, and analyzing its largest partition. Both are bounded by
    the partition size and the write buffer, not by the log, so they bound a 20M-row run."""
    with tempfile.TemporaryDirectory(prefix="em-bench-rss-") as tmp:
        tmp = Path(tmp)
        profile.save(tmp / "profile")
        write_big_log(victim, tmp / "big.parquet", n_rows, n_clients)
        rss = "from monitor.engines.partitioned import peak_rss_bytes as rss; "
        part_s, part_rss = child_peak_rss_mib(
            rss + "from monitor.partition import partition_log; "
            f"partition_log({str(tmp / 'big.parquet')!r}, {str(tmp / 'parts')!r}); print(rss())")
        files = sorted((tmp / "parts").glob("part-*.parquet"), key=lambda f: f.stat().st_size)
        largest = files[-1]
        (tmp / "one").mkdir()
        largest.rename(tmp / "one" / largest.name)
        ana_s, ana_rss = child_peak_rss_mib(
            rss + "from monitor import Profile; from monitor.engines import analyze_partitioned;"
            f" r = analyze_partitioned({str(tmp / 'one')!r}, Profile.load("
            f"{str(tmp / 'profile')!r})); print(r.summary()); print(rss())")
        import pyarrow.parquet as pq

        rows_largest = pq.ParquetFile(tmp / "one" / largest.name).metadata.num_rows
    return {"rows": n_rows, "clients": n_clients, "partitions": len(files),
            "partition_seconds": part_s, "partition_peak_rss_mib": part_rss,
            "largest_partition_rows": rows_largest, "analyze_largest_seconds": ana_s,
            "analyze_largest_peak_rss_mib": ana_rss,
            "peak_rss_mib": max(part_rss, ana_rss)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--prada-clients", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    parser.add_argument("--anchor", type=Path, default=None, metavar="TREE",
                        help="also time the same run with the code of checkout TREE (e.g. "
                             "`git worktree add /tmp/base HEAD~1`), in the order ours, "
                             "anchor, anchor, ours, ...")
    parser.add_argument("--repeat", type=int, default=1,
                        help="end-to-end runs of ours (and of the anchor); the fastest counts")
    parser.add_argument("--rss-rows", type=int, default=None,
                        help="only measure peak RSS of partitioning an N-row log and "
                             "analyzing its largest partition (written to offline_rss.*)")
    args = parser.parse_args(argv)
    if args.rss_rows:
        victim, profile = digits_profile()
        rss = rss_run(victim, profile, args.rss_rows, args.clients or 100_000)
        rss["command"] = f"benchmarks/offline_throughput.py --rss-rows {args.rss_rows}"
        print(f"{args.rss_rows:,}-row log: partition peak RSS {rss['partition_peak_rss_mib']:,.0f}"
              f" MiB ({rss['partition_seconds']:.0f} s, {rss['partitions']} partitions); "
              f"analyze largest partition ({rss['largest_partition_rows']:,} rows) peak RSS "
              f"{rss['analyze_largest_peak_rss_mib']:,.0f} MiB; target 2 GiB: "
              f"{'met' if rss['peak_rss_mib'] <= 2048 else 'MISSED'}")
        if not args.no_write:
            write_results("offline_rss", rss)
        return rss
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    clients = args.clients or (200 if args.quick else 10_000)
    prada_clients = args.prada_clients or (10 if args.quick else 100)

    victim, profile = digits_profile()
    with tempfile.TemporaryDirectory(prefix="em-bench-") as tmp:
        tmp = Path(tmp)
        profile.save(tmp / "profile")
        frame = make_log(victim, rows, clients)
        frame.to_parquet(tmp / "log.parquet", index=False, row_group_size=131_072)
        runs, anchor_runs = [], []
        loadavg_start = Path("/proc/loadavg").read_text().split()[:3] \
            if Path("/proc/loadavg").exists() else None
        for i in range(max(1, args.repeat)):  # ours, anchor, anchor, ours, ...: no order bias
            pair = [("ours", ROOT), ("anchor", args.anchor)] if args.anchor is not None \
                else [("ours", ROOT)]
            for who, tree in (pair if i % 2 == 0 else pair[::-1]):
                out = tmp / ("verdicts.parquet" if who == "ours" else "anchor.parquet")
                (runs if who == "ours" else anchor_runs).append(
                    timed_analyze(tmp / "log.parquet", tmp / "profile", out, tree.resolve()))
        if args.anchor is not None:
            pd.testing.assert_frame_equal(pd.read_parquet(tmp / "anchor.parquet"),
                                          pd.read_parquet(tmp / "verdicts.parquet"))
        prada = prada_rate(victim, profile, frame, prada_clients)
    best = min(runs, key=lambda r: r["seconds"])
    ours = {"queries": rows, "clients": clients, "seconds": best["seconds"],
            "queries_per_s_per_core": rows / best["seconds"],
            "cpu_seconds": best["cpu_seconds"], "peak_rss_mib": best["peak_rss_mib"],
            "summary": best["summary"], "all_seconds": [r["seconds"] for r in runs]}
    result = {
        "command": " ".join(["benchmarks/offline_throughput.py", *(argv if argv is not None
                                                                    else sys.argv[1:])]),
        "victim": VICTIM, "features": 64, "cpu_threads": 1, "ours": ours,
        "prada_subsample": prada,
        "speedup_vs_prada": ours["queries_per_s_per_core"] / prada["queries_per_s"],
        "target_queries_per_s_per_core": 60_000,
        "loadavg_start": loadavg_start,
    }
    if anchor_runs:
        fast = min(anchor_runs, key=lambda r: r["seconds"])
        result["anchor"] = {"tree": str(args.anchor), "commit": _commit(args.anchor),
                            "seconds": fast["seconds"],
                            "queries_per_s_per_core": rows / fast["seconds"],
                            "cpu_seconds": fast["cpu_seconds"],
                            "peak_rss_mib": fast["peak_rss_mib"],
                            "all_seconds": [r["seconds"] for r in anchor_runs],
                            "verdicts_identical": True}
        result["speedup_vs_anchor"] = fast["seconds"] / best["seconds"]
    result["commit"] = _commit(ROOT)
    print(f"ours : {ours['queries_per_s_per_core']:,.0f} queries/s per core "
          f"({rows:,} queries, {clients:,} clients, {ours['seconds']:.1f} s incl. partitioning and "
          f"process start; peak RSS {ours['peak_rss_mib']:,.0f} MiB)")
    if anchor_runs:
        anchor = result["anchor"]
        print(f"anchor ({anchor['commit']}): {anchor['queries_per_s_per_core']:,.0f} queries/s "
              f"per core ({anchor['seconds']:.1f} s, peak RSS {anchor['peak_rss_mib']:,.0f} MiB)"
              f"; ours/anchor {result['speedup_vs_anchor']:.2f}x, verdicts identical")
    print(f"PRADA: {prada['queries_per_s']:,.0f} queries/s per core "
          f"(per-query loop on {prada['queries']:,} queries of {prada_clients} clients)")
    print(f"ratio ours/PRADA: {result['speedup_vs_prada']:.1f}x; target 60,000 q/s/core (issue 14): "
          f"{'met' if ours['queries_per_s_per_core'] >= 60_000 else 'MISSED'}")
    if not args.no_write:
        write_results("offline_throughput", result)
    return result


def _commit(tree: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def write_results(name: str, result: dict, lines: list[str] | None = None) -> None:
    """Write ``results/<name>.json`` and a small ``results/<name>.md`` (``lines``, e.g. a
    Markdown table, go above the JSON)."""
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:  # other work on the machine inflates absolute timings; ratios are side by side
        result["loadavg_1_5_15_min"] = Path("/proc/loadavg").read_text().split()[:3]
        result["cpu_count"] = os.cpu_count()
    except OSError:
        pass
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    md = [f"# {name}", "", f"Command: `.venv/bin/python {result['command']}`", ""]
    if lines:
        md += [*lines, ""]
    md += ["```", json.dumps(result, indent=2, default=float), "```", ""]
    (out / f"{name}.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
