"""Label-only evidence (issue 25): benign flag rates, and a line search between real records.

For each victim it fits a profile, then runs, with the named detectors only and answers given
as labels (``label``) and as probabilities (``proba``):

* 100 benign clients of each benign kind (200 queries each), and prints how many are flagged
  at ``--alpha`` (above 2 alpha is a calibration failure);
* ``--seeds`` labels-only line-search attackers (``attacks.retraining.line_search_retraining``,
  1,000 queries, every start a real public record), and prints the query each is flagged at
  (``None``: never).

    PYTHONPATH=. .venv/bin/python benchmarks/label_change.py --victims iris-knn,wine-tree \\
        --detectors label_change
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

ALPHA = 0.05
CLIENTS = 100
BUDGET = 1_000


def benign_kinds() -> dict:
    """The benign behaviours measured, by short name."""
    from attacks.benign import (
        drifted_records,
        full_sweep,
        one_class_user,
        prototype_user,
        random_records,
        sorted_batch,
        tail_jitter,
        what_if,
    )

    return dict(random=random_records, drift=drifted_records, jitter=tail_jitter,
                whatif=what_if, proto=prototype_user, sorted=sorted_batch,
                oneclass=one_class_user, sweep=full_sweep)


def answers(victim, X: np.ndarray, mode: str) -> np.ndarray:
    """The victim's answers to ``X``: labels or probabilities."""
    return victim.model.predict(X) if mode == "label" else victim.model.predict_proba(X)


def benign_flagged(victim, profile, config, kind, mode: str, seed: int) -> int:
    """How many of :data:`CLIENTS` benign clients of ``kind`` the monitor flags."""
    from monitor import Monitor

    rng = np.random.default_rng(seed)
    streams = [kind(victim, 200, rng, client_id=f"c{i}") for i in range(CLIENTS)]
    ids = np.concatenate([[s.client_id] * len(s.X) for s in streams]).astype(object)
    X = np.concatenate([s.X for s in streams])
    verdicts = Monitor(profile, config).observe_many(ids, X, outputs=answers(victim, X, mode))
    return sum(v.flagged for v in verdicts.values())


def line_search_flag_at(name: str, victim, profile, config, mode: str, seed: int) -> int | None:
    """The query at which one labels-only line-search attacker is flagged (``None``: never)."""
    from attacks.oracle import Oracle
    from attacks.retraining import line_search_retraining
    from monitor import Monitor
    from victims import load_victim

    rng = np.random.default_rng(seed)
    labels_only = load_victim(name, output_mode="label")
    public = victim.X_public
    anchors = public[rng.choice(len(public), min(100, len(public)), replace=False)]
    result = line_search_retraining(Oracle(labels_only.answer, BUDGET),
                                    (public.min(0), public.max(0)), BUDGET, rng,
                                    victim.classes, anchors=anchors, steps=8, init_fraction=0.1)
    X = result.stream.X
    return Monitor(profile, config).observe(f"a{seed}", X,
                                            outputs=answers(victim, X, mode)).flag_at


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--victims", default="iris-knn,wine-tree",
                        help="comma-separated reference victims (default: %(default)s)")
    parser.add_argument("--detectors", default="label_change",
                        help="comma-separated detectors the monitor runs (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="default: %(default)s")
    parser.add_argument("--seeds", type=int, default=10,
                        help="line-search attackers per victim and mode (default: %(default)s)")
    parser.add_argument("--modes", default="label,proba",
                        help="answer forms: label, proba or both (default: %(default)s)")
    args = parser.parse_args(argv)

    from monitor import MonitorConfig, Profile
    from victims import load_victim

    warnings.simplefilter("ignore")
    config = MonitorConfig(alpha=args.alpha, detectors=tuple(args.detectors.split(",")))
    for name in args.victims.split(","):
        victim = load_victim(name)
        start = time.perf_counter()
        profile = Profile().fit(victim.model, victim.X_train, victim.y_train,
                                X_cal=victim.X_cal, y_cal=victim.y_cal)
        print(f"{name}: profile fitted in {time.perf_counter() - start:.1f} s")
        for mode in args.modes.split(","):
            for kind_name, kind in benign_kinds().items():
                flagged = benign_flagged(victim, profile, config, kind, mode, seed=7)
                print(f"  {mode} benign {kind_name}: {flagged}/{CLIENTS} flagged")
            flags = [line_search_flag_at(name, victim, profile, config, mode, seed)
                     for seed in range(args.seeds)]
            print(f"  {mode} line search flagged at: {flags}")


if __name__ == "__main__":
    main()
