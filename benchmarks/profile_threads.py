"""Profile fitting of a HistGradientBoosting model on a busy machine: thread limits (issue 14).

One run, the same machine and the same load (one busy single-threaded process per core), three
thread settings for ``Profile.fit`` (cross-fitting refits the model once per fold):

* ``unlimited``  BLAS/OpenMP pools as wide as the machine (the behaviour before ``--threads``);
* ``default``    :func:`monitor.threads.default_threads` (what ``extraction-monitor profile``
  uses unless ``--threads`` is given);
* ``one``        one thread: the anchor.

Target: ``default`` within 1.5x of ``one``. The results agree in every setting (checked, to 1e-12).

    python benchmarks/profile_threads.py --rows 4000 --features 40 --rounds 1
    python benchmarks/profile_threads.py --quick     (2,000 x 20, 2 folds: about half the time)
Writes benchmarks/results/profile_threads.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from loadgen import loadavg, results_dir


def _burn(stop) -> None:
    x = 0.0
    while not stop.is_set():
        for i in range(100_000):
            x += i * 0.5


def _fit(X, y, threads, folds: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from monitor import Profile
    from monitor.threads import limit_threads

    model = HistGradientBoostingClassifier(max_iter=60, random_state=0)
    started = time.perf_counter()
    with limit_threads(threads):
        model.fit(X, y)
        profile = Profile(n_folds=folds, drift_draws=4, seed=0).fit(model, X, y)
    return time.perf_counter() - started, profile.calibration_["density"]["statistic"]


def main(argv=None) -> int:
    from monitor.threads import available_cpus, default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="defaults of 2,000 rows, 20 features, 2 folds")
    parser.add_argument("--rows", type=int, default=None, help="default 4000")
    parser.add_argument("--features", type=int, default=None, help="default 40")
    parser.add_argument("--folds", type=int, default=None, help="default 3")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/profile_threads.json")
    args = parser.parse_args(argv)
    args.rows = args.rows or (2000 if args.quick else 4000)
    args.features = args.features or (20 if args.quick else 40)
    args.folds = args.folds or (2 if args.quick else 3)
    args.out = args.out or results_dir() / "profile_threads.json"

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features))
    y = (X[:, :5].sum(axis=1) + 0.5 * rng.normal(size=args.rows) > 0).astype(int)
    settings = {"unlimited": None, "default": default_threads(), "one": 1}
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True)
               for _ in range(available_cpus())]
    for p in burners:
        p.start()
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    statistics = {}
    try:
        for _ in range(args.rounds):
            for name, threads in settings.items():  # side by side, under the same load
                took, stats = _fit(X, y, threads, args.folds)
                seconds[name].append(took)
                statistics[name] = stats
    finally:
        stop.set()
        for p in burners:
            p.join(5)
    same = all(np.allclose(statistics["one"], s, rtol=1e-12, atol=0)
               for s in statistics.values())
    medians = {name: float(np.median(v)) for name, v in seconds.items()}
    result = {"cpus": available_cpus(), "default_threads": settings["default"],
              "rows": args.rows, "features": args.features, "folds": args.folds,
              "rounds": args.rounds, "load_processes": len(burners),
              "median_seconds": medians, "identical_results": same,
              "default_over_one": medians["default"] / medians["one"],
              "unlimited_over_one": medians["unlimited"] / medians["one"],
              "loadavg_1_5_15_min": loadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Profile fitting of HistGradientBoosting under load (thread limits)", "",
        f"{result['cpus']} cores, each busy with one other process; medians of "
        f"{args.rounds} round(s), one run (`benchmarks/profile_threads.py --rows {args.rows} "
        f"--features {args.features} --folds {args.folds} --rounds {args.rounds}`; load "
        f"average {' '.join(result['loadavg_1_5_15_min'])}).", "",
        "| threads | seconds | / one thread |", "|---|---|---|"]
    for name in settings:
        lines.append(f"| {name} ({settings[name] or 'all'}) | {medians[name]:.1f} | "
                     f"{medians[name] / medians['one']:.2f}x |")
    lines += ["", f"Calibration statistics equal (to 1e-12) in every setting: {same}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
