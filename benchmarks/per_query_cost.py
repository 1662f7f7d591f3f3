"""Per-query online cost for one row after client histories of 100, 1k, 10k, 100k queries.

Ours: ``Monitor.observe(client, one_row, one_proba)`` after pre-filling the client's history
with the batch path (same monitor, default config, digits-mlp profile, 64 features).
PRADA: ``PradaState.update`` on one row after the same history (its default cap of 5,000
stored rows per client, as configured in the product). Each figure is the median (p50), and
the mean, over ``--repeats`` distinct new rows, single-threaded BLAS, measured side by side in one run.

Run:  .venv/bin/python benchmarks/per_query_cost.py          (a few minutes; PRADA's 100k
                                                             pre-fill dominates)
      .venv/bin/python benchmarks/per_query_cost.py --quick  (histories up to 10k, < 1 min)
      .venv/bin/python benchmarks/per_query_cost.py --quick --anchor /tmp/base
           (also the one-row observe of the code of checkout /tmp/base, side by side: ours
           and the anchor each in a worker process, timed in alternating blocks of rows)
Writes benchmarks/results/per_query_cost.{json,md}.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from offline_throughput import digits_profile, public_like_rows, write_results  # noqa: E402

HISTORIES = (100, 1_000, 10_000, 100_000)


def timed_us(fn, rows) -> tuple[float, float]:
    """(p50, mean) microseconds of ``fn(row)`` over ``rows``."""
    times = []
    for row in rows:
        start = time.perf_counter()
        fn(row)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6), float(np.mean(times) * 1e6)


ROOT = Path(__file__).resolve().parents[1]
BLOCK_ROWS = 50
"""Rows timed per turn when ours and the anchor alternate."""


def prefilled_monitor(profile, X: np.ndarray, P: np.ndarray, history: int):
    """A default monitor whose client ``"c"`` has observed the first ``history`` rows of
    ``X`` (answers ``P``) through the batch path, in chunks of 50,000."""
    from monitor import Monitor

    mon = Monitor(profile)
    for start in range(0, history, 50_000):
        stop = min(history, start + 50_000)
        mon.observe("c", X[start:stop], P[start:stop])
    return mon


def serve_timings(history: int, repeats: int) -> None:
    """Worker mode (``--worker``): the monitor of this process's tree after ``history`` rows;
    each line on stdin is a count of next rows to observe one at a time, answered with their
    times (seconds, a JSON list)."""

    victim, profile = digits_profile()
    rng = np.random.default_rng(0)
    X = public_like_rows(victim, history + repeats, rng)
    P = victim.model.predict_proba(X)
    mon = prefilled_monitor(profile, X, P, history)
    i = history
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            mon.observe("c", X[i], P[i:i + 1])
            times.append(time.perf_counter() - start)
            i += 1
        print(json.dumps(times), flush=True)


def side_by_side(anchor: Path, history: int, repeats: int) -> dict:
    """One-row observe p50 of ours and of the anchor tree, in worker processes timed in
    alternating blocks (ours, anchor, anchor, ours, ...: no order bias)."""
    trees = {"ours": ROOT, "anchor": anchor.resolve()}
    workers = {
        who: subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(history),
             "--repeats", str(repeats)], cwd=str(tree), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'benchmarks'}"})
        for who, tree in trees.items()}
    try:
        for worker in workers.values():
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError("a timing worker failed to start")
        times: dict[str, list[float]] = {who: [] for who in workers}
        for turn, start in enumerate(range(0, repeats, BLOCK_ROWS)):
            order = list(workers) if turn % 2 == 0 else list(workers)[::-1]
            for who in order:
                workers[who].stdin.write(f"{min(BLOCK_ROWS, repeats - start)}\n")
                workers[who].stdin.flush()
                times[who] += json.loads(workers[who].stdout.readline())
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    ours, theirs = (float(np.median(times[w]) * 1e6) for w in ("ours", "anchor"))
    return {"history": history, "ours_p50_us": ours, "anchor_p50_us": theirs,
            "ours_over_anchor": ours / theirs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--anchor", type=Path, default=None, metavar="TREE",
                        help="also time the one-row observe of the code in checkout TREE, "
                             "side by side with ours")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        serve_timings(args.worker, args.repeats or 300)
        return {}
    from monitor.baselines.prada import PradaState

    histories = HISTORIES[:3] if args.quick else HISTORIES
    repeats = args.repeats or (100 if args.quick else 300)
    victim, profile = digits_profile()
    rng = np.random.default_rng(0)
    rows = []
    for history in histories:
        X = public_like_rows(victim, history + repeats, rng)
        P = victim.model.predict_proba(X)
        mon = prefilled_monitor(profile, X, P, history)
        new = list(range(history, history + repeats))
        ours, ours_mean = timed_us(lambda i, m=mon, X=X, P=P: m.observe("c", X[i], P[i:i + 1]), new)
        Z = profile.transform(X)
        labels = P.argmax(axis=1)
        prada = PradaState()
        fill_start = time.perf_counter()
        prada.update(Z[:history], labels[:history], delta=0.95)
        fill = time.perf_counter() - fill_start
        theirs, theirs_mean = timed_us(lambda i, s=prada, Z=Z, y=labels: s.update(Z[i:i + 1], y[i:i + 1], 0.95),
                        new)
        state = mon.state("c")
        rows.append({"history": history, "ours_p50_us": ours, "prada_p50_us": theirs,
                     "ratio_prada_over_ours": theirs / ours,
                     "ours_mean_us": ours_mean, "prada_mean_us": theirs_mean, "ours_state_bytes": state.nbytes(),
                     "prada_state_bytes": prada.nbytes(), "prada_prefill_s": fill})
        print(f"history {history:>7,}: ours p50 {ours:8.1f} us | PRADA p50 {theirs:8.1f} us | "
              f"PRADA/ours {theirs / ours:5.2f}x | mean ours {ours_mean:7.1f} us, PRADA "
              f"{theirs_mean:7.1f} us (its Shapiro-Wilk test runs every 10th query) | state ours {state.nbytes():,} B, "
              f"PRADA {prada.nbytes():,} B")
    anchored = []
    if args.anchor is not None:
        for history in histories:
            anchored.append(side_by_side(args.anchor, history, repeats))
            a = anchored[-1]
            print(f"history {history:>7,}: side by side, ours p50 {a['ours_p50_us']:8.1f} us | "
                  f"anchor p50 {a['anchor_p50_us']:8.1f} us | ours/anchor "
                  f"{a['ours_over_anchor']:5.2f}x")
    flat = max(r["ours_p50_us"] for r in rows) / min(r["ours_p50_us"] for r in rows)
    print(f"ours: max/min p50 across histories = {flat:.2f} (1.0 = perfectly flat); "
          f"target <= 100 us p50: "
          f"{'met' if max(r['ours_p50_us'] for r in rows) <= 100 else 'MISSED'}")
    result = {"command": "benchmarks/per_query_cost.py" + (" --quick" if args.quick else ""),
              "victim": "digits-mlp", "repeats": repeats, "rows": rows,
              "ours_max_over_min_p50": flat, "target_p50_us": 100}
    if anchored:
        result["anchor"] = {"tree": str(args.anchor), "commit": _commit(args.anchor),
                            "rows": anchored}
        result["command"] += f" --anchor {args.anchor}"
    if not args.no_write:
        lines = None
        if anchored:
            lines = [f"One-row observe p50, side by side with the anchor `{args.anchor}` "
                     f"(commit {result['anchor']['commit']}):", "",
                     "| history | ours p50 (us) | anchor p50 (us) | ours / anchor |",
                     "|---|---|---|---|"]
            lines += [f"| {a['history']:,} | {a['ours_p50_us']:.1f} | {a['anchor_p50_us']:.1f} | "
                      f"{a['ours_over_anchor']:.2f} |" for a in anchored]
        write_results("per_query_cost", result, lines)
    return result


def _commit(tree: Path) -> str:
    """The anchor's commit (``unknown`` for an exported tree without git)."""
    try:
        return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
