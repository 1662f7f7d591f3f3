"""Per-query online cost for one row after client histories of 100, 1k, 10k, 100k queries.

Ours: ``Monitor.observe(client, one_row, one_proba)`` after pre-filling the client's history
with the batch path (same monitor, default config, digits-mlp profile, 64 features).
PRADA: ``PradaState.update`` on one row after the same history (its default cap of 5,000
stored rows per client, as configured in the product). Each figure is the median (p50), and
the mean, over ``--repeats`` distinct new rows, single-threaded BLAS, measured side by side in one run.

Run:  .venv/bin/python benchmarks/per_query_cost.py          (a few minutes; PRADA's 100k
                                                             pre-fill dominates)
      .venv/bin/python benchmarks/per_query_cost.py --quick  (histories up to 10k, < 1 min)
Writes benchmarks/results/per_query_cost.{json,md}.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from monitor import Monitor
    from monitor.baselines.prada import PradaState

    histories = HISTORIES[:3] if args.quick else HISTORIES
    repeats = args.repeats or (100 if args.quick else 300)
    victim, profile = digits_profile()
    rng = np.random.default_rng(0)
    rows = []
    for history in histories:
        X = public_like_rows(victim, history + repeats, rng)
        P = victim.model.predict_proba(X)
        mon = Monitor(profile)
        for start in range(0, history, 50_000):
            mon.observe("c", X[start:min(history, start + 50_000)],
                        P[start:min(history, start + 50_000)])
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
    flat = max(r["ours_p50_us"] for r in rows) / min(r["ours_p50_us"] for r in rows)
    print(f"ours: max/min p50 across histories = {flat:.2f} (1.0 = perfectly flat); "
          f"target <= 100 us p50: "
          f"{'met' if max(r['ours_p50_us'] for r in rows) <= 100 else 'MISSED'}")
    result = {"command": "benchmarks/per_query_cost.py" + (" --quick" if args.quick else ""),
              "victim": "digits-mlp", "repeats": repeats, "rows": rows,
              "ours_max_over_min_p50": flat, "target_p50_us": 100}
    if not args.no_write:
        write_results("per_query_cost", result)
    return result


if __name__ == "__main__":
    main()
