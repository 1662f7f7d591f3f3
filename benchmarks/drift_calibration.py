"""False alarms on scaled and rounded benign clients (issue 25: the drift model).

Benign clients send held-out (public) records of a victim, transformed the way real clients'
data differs from the training data without being an attack:

* ``scaled`` — every value multiplied by one factor per client, drawn in [0.9, 1.15] (a unit
  or calibration change applied to the whole record);
* ``rounded`` — every value rounded to 0 or 1 decimals (drawn per client; a spreadsheet's
  number format, integer storage);
* ``scaled+rounded`` — both, scaled first;
* ``random`` — the records as they are (the reference).

The victims are the reference ``wine-tree`` (13 features, a bare decision tree) and two
families the test range does not have: gradient boosting and logistic regression on sklearn's
wine data (fitted here with the reference victim's splits; wine-hgb is slow to profile, about
3 minutes, so it is not in the default set). For each victim and kind it prints how many of
``--clients`` benign clients the default monitor flags at ``--alpha`` overall and per detector
alone (each detector's own config):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/drift_calibration.py --clients 100

A flagged fraction above 2 alpha is a calibration failure.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def scaled(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``X`` times one factor in [0.9, 1.15]."""
    return X * rng.uniform(0.9, 1.15)


def rounded(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``X`` rounded to 0 or 1 decimals."""
    return np.round(X, int(rng.integers(0, 2)))


KINDS = {
    "random": lambda X, rng: X,
    "scaled": scaled,
    "rounded": rounded,
    "scaled+rounded": lambda X, rng: rounded(scaled(X, rng), rng),
}


def victims(names: list[str]):
    """``(name, model, victim)`` for each name: reference victims and wine-hgb / wine-logreg
    (other model families on the reference wine splits)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from victims import load_victim

    extra = {"wine-hgb": lambda: HistGradientBoostingClassifier(max_iter=60, random_state=0),
             "wine-logreg": lambda: make_pipeline(StandardScaler(),
                                                  LogisticRegression(max_iter=2000))}
    for name in names:
        if name in extra:
            victim = load_victim("wine-tree")
            yield name, extra[name]().fit(victim.X_train, victim.y_train), victim
        else:
            victim = load_victim(name)
            yield name, victim.model, victim


def benign_rows(victim, kind: str, n_clients: int, n_queries: int, seed: int):
    """Client ids and rows of ``n_clients`` clients of ``kind`` (public records)."""
    rng = np.random.default_rng(seed)
    public = victim.X_public
    ids, rows = [], []
    for i in range(n_clients):  # per client, not per sample
        X = public[rng.choice(len(public), size=n_queries, replace=n_queries > len(public))]
        rows.append(KINDS[kind](X, rng))
        ids += [f"{kind}-{i}"] * n_queries
    return np.asarray(ids, dtype=object), np.concatenate(rows)


def main(argv=None) -> int:
    from monitor import Monitor, MonitorConfig, Profile
    from monitor.settings import DEFAULT_DETECTORS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--victims", default="wine-tree,wine-logreg")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--extra-detectors", default="",
                        help="comma-separated opt-in detectors (e.g. block): each alone, and "
                             "all+extra = the default ones plus them")
    args = parser.parse_args(argv)
    extra = tuple(d for d in args.extra_detectors.split(",") if d)
    configs = {"all": MonitorConfig(alpha=args.alpha)}
    configs.update({d: MonitorConfig(alpha=args.alpha, detectors=(d,))
                    for d in DEFAULT_DETECTORS + extra if d != "chain"})
    if extra:
        configs["all+extra"] = MonitorConfig(alpha=args.alpha,
                                             detectors=DEFAULT_DETECTORS + extra)
    print(f"flagged of {args.clients} benign clients ({args.queries} queries each), "
          f"alpha = {args.alpha} (2 alpha = {2 * args.alpha * args.clients:g} clients)")
    print(f"{'victim':12} {'kind':15} " + " ".join(f"{c:>13}" for c in configs))
    for name, model, victim in victims(args.victims.split(",")):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile = Profile(seed=args.seed).fit(model, victim.X_train, victim.y_train,
                                                  X_cal=victim.X_cal, y_cal=victim.y_cal)
        fitted = time.perf_counter() - start
        for kind in args.kinds.split(","):
            ids, X = benign_rows(victim, kind, args.clients, args.queries, args.seed + 1)
            counts = []
            for config in configs.values():
                verdicts = Monitor(profile, config, model=model).observe_many(ids, X)
                counts.append(sum(v.flagged for v in verdicts.values()))
            print(f"{name:12} {kind:15} " + " ".join(f"{c:>13}" for c in counts), flush=True)
        print(f"  ({name}: profile fitted in {fitted:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
