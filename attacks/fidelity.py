"""How well a stolen surrogate agrees with the victim, overall and per number of queries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from attacks.result import AttackResult


def agreement(surrogate, victim, X: np.ndarray) -> float:
    """Fraction of rows of ``X`` where the surrogate predicts the victim's label.

    >>> from victims import load_victim
    >>> v = load_victim("wine-tree")
    >>> agreement(v.model, v, v.X_public)
    1.0
    """
    X = np.asarray(X, dtype=float)
    return float(np.mean(np.asarray(surrogate.predict(X)) == victim.model.predict(X)))


def uniform_points(victim, n: int = 2000, seed: int = 12345) -> np.ndarray:
    """``n`` points uniform in the victim's feature box (the uniform evaluation set)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(victim.lower, victim.upper, size=(n, victim.n_features))


def fidelity(surrogate, victim, n_uniform: int = 2000) -> dict[str, float]:
    """Agreement on the public records and on uniform points in the feature box."""
    return {"public": agreement(surrogate, victim, victim.X_public),
            "uniform": agreement(surrogate, victim, uniform_points(victim, n_uniform))}


def fidelity_curve(result: AttackResult, victim, checkpoints: Sequence[int],
                   n_uniform: int = 2000) -> pd.DataFrame:
    """Agreement after the first ``n`` answered queries, for each checkpoint ``n``.

    Retraining attacks rebuild their surrogate from the first ``n`` answers
    (``result.refit``); attacks without ``refit`` report their final surrogate at
    checkpoints >= the queries used and NaN before. Columns: n_queries, public, uniform.
    """
    U = uniform_points(victim, n_uniform)
    rows = []
    for n in sorted({int(c) for c in checkpoints}):
        n_used = min(n, result.n_queries)
        if result.refit is not None:
            model = result.refit(n_used)
        else:
            model = result.surrogate if n >= result.n_queries else None
        if model is None:
            rows.append({"n_queries": n_used, "public": np.nan, "uniform": np.nan})
        else:
            rows.append({"n_queries": n_used,
                         "public": agreement(model, victim, victim.X_public),
                         "uniform": agreement(model, victim, U)})
    return pd.DataFrame(rows, columns=["n_queries", "public", "uniform"])
