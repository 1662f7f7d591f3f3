"""Why a client's queries looked unusual: per-feature z-scores of its window of queries against
the profile's reference distribution.

Every query is put in the profile's scaled space (``profile.transform``) and standardised
against the reference index (``profile.reference_``, scaled training rows): ``z[i, j]`` says
how many reference standard deviations query ``i`` lies from the reference mean on feature
``j``. Per feature, over the window:

* ``mean_z`` — the average z (signed: the window sits above or below the reference);
* ``rms_z`` — the root mean square z; reference rows have 1 on every feature, so a value
  well above 1 means the window spreads or shifts farther than real inputs do;
* ``outside`` — the fraction of the window's queries beyond the reference's central 99%
  range on that feature.

Features are listed by ``rms_z``, highest (most unusual) first.

>>> import numpy as np
>>> class P:  # a stand-in profile: identity scaling, a standard-normal reference
...     feature_names_ = ["a", "b"]
...     reference_ = np.random.default_rng(0).normal(size=(2000, 2)).astype(np.float32)
...     def transform(self, X): return np.asarray(X, float)
>>> window = np.c_[np.random.default_rng(1).normal(size=50), np.full(50, 6.0)]
>>> table = feature_deviation(P(), window)
>>> table["feature"].tolist(), bool(table.loc[0, "rms_z"] > 5), float(table.loc[0, "outside"])
(['b', 'a'], True, 1.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = 50
"""Queries in the explained window (the sharp window test's length by default)."""


def explained_rows(n_rows: int, flag_at: int | None, scores: np.ndarray | None,
                   window: int = WINDOW) -> slice:
    """The client's rows to explain: the ``window`` queries up to and including the flagging
    query, or (never flagged) those ending at its highest score, else its last queries.

    >>> explained_rows(200, 120, None, 50), explained_rows(30, None, None, 50)
    (slice(71, 121, None), slice(0, 30, None))
    """
    if n_rows <= 0:
        return slice(0, 0)
    if flag_at is not None:
        end = min(int(flag_at), n_rows - 1) + 1
    elif scores is not None and len(scores) == n_rows and np.max(scores, initial=0.0) > 0:
        end = int(np.argmax(scores)) + 1
    else:
        end = n_rows
    return slice(max(0, end - window), end)


def feature_deviation(profile, X: np.ndarray) -> pd.DataFrame:
    """Per-feature ``mean_z``, ``rms_z`` and ``outside`` of rows ``X`` (see the module
    docstring), most unusual feature first."""
    Z = profile.transform(np.asarray(X, dtype=np.float64))
    reference = np.asarray(profile.reference_, dtype=np.float64)
    mu = reference.mean(axis=0)
    sd = reference.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (Z - mu) / sd
    low, high = np.quantile(reference, [0.005, 0.995], axis=0)
    names = list(getattr(profile, "encoded_names_", None) or  # one per scaled coordinate
                 getattr(profile, "feature_names_", None) or
                 [f"x_{j}" for j in range(Z.shape[1])])
    if len(Z) == 0:
        zeros = np.zeros(len(names))
        return pd.DataFrame({"feature": names, "mean_z": zeros, "rms_z": zeros,
                             "outside": zeros})
    table = pd.DataFrame({
        "feature": names,
        "mean_z": z.mean(axis=0),
        "rms_z": np.sqrt((z ** 2).mean(axis=0)),
        "outside": ((Z < low) | (Z > high)).mean(axis=0),
    })
    return table.sort_values(["rms_z", "feature"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)


__all__ = ["WINDOW", "explained_rows", "feature_deviation"]
