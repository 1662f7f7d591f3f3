"""How well a stolen surrogate agrees with the victim, overall and per number of queries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from attacks.result import AttackResult


def agreement(surrogate, victim, X: np.ndarray) -> float:
    """Fraction of rows of ``X`` where the surrogate predicts the victim's label; for a
    regression victim, :func:`r2_agreement` instead.

    >>> from victims import load_victim
    >>> v = load_victim("wine-tree")
    >>> agreement(v.model, v, v.X_public)
    1.0
    """
    X = np.asarray(X, dtype=float)
    if getattr(victim, "task", "classification") == "regression":
        return r2_agreement(surrogate, victim, X)
    return float(np.mean(np.asarray(surrogate.predict(X)) == victim.model.predict(X)))


def r2_agreement(surrogate, victim, X: np.ndarray) -> float:
    """R^2 of the surrogate's predictions against the (regression) victim's on ``X``:
    1 for a perfect copy, 0 for a constant at the victim's mean, negative below that.

    >>> from victims import load_victim
    >>> v = load_victim("diabetes-ridge")
    >>> r2_agreement(v.model, v, v.X_public)
    1.0
    """
    X = np.asarray(X, dtype=float)
    target = np.asarray(victim.model.predict(X), dtype=float)
    residual = float(np.sum((target - np.asarray(surrogate.predict(X), dtype=float)) ** 2))
    total = float(np.sum((target - target.mean()) ** 2))
    return 1.0 - residual / total if total > 0 else float(residual == 0.0)


def uniform_points(victim, n: int = 2000, seed: int = 12345) -> np.ndarray:
    """``n`` points uniform in the victim's feature box (the uniform evaluation set)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(victim.lower, victim.upper, size=(n, victim.n_features))


def fidelity(surrogate, victim, n_uniform: int = 2000) -> dict[str, float]:
    """Agreement (R^2 for a regressor) on the public records and on uniform points in
    the feature box."""
    return {"public": agreement(surrogate, victim, victim.X_public),
            "uniform": agreement(surrogate, victim, uniform_points(victim, n_uniform))}


def fidelity_curve(result: AttackResult, victim, checkpoints: Sequence[int],
                   n_uniform: int = 2000) -> pd.DataFrame:
    """Agreement after the first ``n`` answered queries, for each checkpoint ``n``.

    Retraining attacks rebuild their surrogate from the first ``n`` answers
    (``result.refit``); attacks without ``refit`` report their final surrogate at
    checkpoints >= the queries used and NaN before. Columns: n_queries, public, uniform
    (label agreement, or R^2 for a regression victim).
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
