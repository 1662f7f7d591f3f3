"""Scaled queries: a client's queries are also judged as real records that all went through
one unit change (the scaling part of the benign drift model).

A benign client whose records went through a unit change (x 0.9-1.15, the profile's
``drift_scale``) sends every value multiplied by the same factor ``c``. In the scaled space that
moves a row by ``(c - 1) * center / spread`` per feature: several spreads on a feature whose
typical value is large next to its spread, all in the same direction, so the density
detectors see each of its records as unusual and a window of them adds up to a false alarm.
The drift model's window null (per-feature scales drawn at random) covers most such shifts,
but not the corner where every feature moves the same way, and widening the window null for
everyone costs every client power (so does judging each query at its best factor: a free
factor per query makes many attack queries plausible). A unit change is one factor per
*client*, so it is estimated per client:

* each row's factor is the weighted least-squares fit of ``x ≈ c * center`` over the numeric
  features, weights ``1 / spread**2`` (:func:`row_factors`): features centred near zero carry no
  information about a scale and get no weight;
* (only where a unit change moves records at all: :data:`MIN_SHIFT`) the client's factor at
  row ``i`` is the mean of the row factors of all its rows up to ``i``
  (two numbers of state, so a batch gives what row-by-row calls give), clipped to
  ``drift_scale``;
* a row whose p-value carries evidence (at or below the window tests' truncation; above it the
  result is the same, :mod:`monitor.evidence`) is also judged taken back by that factor:
  ``p' = max(p, p(x / c_hat))``, numeric features only.

For a benign client of factor ``c0``, ``c_hat`` tends to ``c0`` and ``x / c_hat`` to a real
record, so ``p'`` is close to a valid p-value; it is never below ``p``, so it stays valid under
the plain null. An attacker gets one factor for its whole stream, near 1 for most attacks'
queries: off-manifold queries (uniform, boundary walks, extreme values) are not made plausible
by it. Detectors that read the model's answers (``reads_answers``, the boundary detector) are
not re-judged: the model answered ``x``, not ``x / c``.

>>> import numpy as np
>>> row_factors(np.array([[11.0, 0.5], [9.0, -3.0]]), np.array([10.0, 0.0]),
...             np.array([1.0, 1.0]), np.array([True, True])).round(2).tolist()
[1.1, 0.9]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch

MIN_CHANGE = 0.0125
"""Smallest estimated change of scale (|c - 1|) that is acted on."""
MIN_SHIFT = 1.0
"""Off unless the largest unit change of ``drift_scale`` moves a record by at least this many
spreads (``|c - 1| * ||center / spread||``): on data centred near zero a unit change moves
records less than the drift model's noise does, and the row factors are only noise."""


def row_factors(X: np.ndarray, center: np.ndarray, spread: np.ndarray,
                numeric: np.ndarray) -> np.ndarray:
    """Each row's unit-change factor: ``sum_j x_j c_j / s_j**2 / sum_j c_j**2 / s_j**2`` over
    its finite numeric features (1 when they carry no weight)."""
    weight = _weight(center, spread, numeric)
    return _weighted_factors(X, numeric, weight, center * weight)


def _weight(center: np.ndarray, spread: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    return np.where(numeric, center / np.maximum(spread, 1e-12) ** 2, 0.0)


def _weighted_factors(X: np.ndarray, numeric: np.ndarray, weight: np.ndarray,
                      center_weight: np.ndarray) -> np.ndarray:
    """:func:`row_factors` with its per-feature weights (and ``center * weight``) given."""
    finite = np.isfinite(X) & numeric[None, :]
    top = np.where(finite, X, 0.0) @ weight
    bottom = np.where(finite, center_weight[None, :], 0.0).sum(axis=1)
    return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), 1.0)


class ScalingNull:
    """Per-client null for a unit change (module docstring): a stateful part of the monitor,
    for the per-query detectors that judge a query alone.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor.profile import Profile
    >>> from monitor.detectors import build_detectors
    >>> from monitor.settings import MonitorConfig
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(10, 1, size=(300, 8)); y = (X[:, 0] > 10).astype(int)
    >>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
    >>> density = [d for d in build_detectors(profile, MonitorConfig()) if d.name == "density"]
    >>> null = ScalingNull(profile, density, truncation=0.1)
    >>> moved = rng.normal(10, 1, size=(5, 8)) * 1.15  # real records after a unit change
    >>> p = {"density": density[0].pvalues(Batch(X=moved, Z=profile.transform(moved),
    ...                                          proba=None))}
    >>> p["density"].round(2).tolist()  # each looks unusual
    [0.03, 0.06, 0.0, 0.06, 0.01]
    >>> state = null.initial_state()
    >>> null.adjust(p, moved, state)["density"].round(2).tolist()  # taken back, each is real
    [0.5, 0.75, 0.8, 0.53, 0.91]
    >>> state["rows"].tolist()
    [5.0]
    """

    name: ClassVar[str] = "scaling"

    def __init__(self, profile, detectors: Sequence, truncation: float) -> None:
        self.detectors = [d for d in detectors if not getattr(d, "reads_answers", False)]
        self.scale_range = tuple(float(c) for c in getattr(profile, "drift_scale", (1.0, 1.0)))
        space = profile.space_
        self.numeric = np.asarray(profile.schema_.numeric_mask, bool)
        self.center = np.where(self.numeric, np.asarray(space.center, np.float64), 0.0)
        self.spread = np.where(self.numeric, np.asarray(space.scale, np.float64), 1.0)
        information = float(np.sum(np.where(self.numeric, self.center / self.spread, 0.0) ** 2))
        largest_change = max(abs(c - 1.0) for c in self.scale_range)
        self.active = bool(self.detectors and largest_change * np.sqrt(information) >= MIN_SHIFT)
        """Whether a unit change can move a record by :data:`MIN_SHIFT` spreads at all."""
        self.truncation = float(truncation)
        self.profile = profile
        self.weight = _weight(self.center, self.spread, self.numeric)
        self.center_weight = self.center * self.weight
        """:func:`row_factors`' weights, worked out once."""

    def initial_state(self) -> dict[str, np.ndarray]:
        """The sum of the client's row factors and how many rows it holds."""
        return {"factor_sum": np.zeros(1), "rows": np.zeros(1)}

    def adjust(self, pvalues: dict[str, np.ndarray], X: np.ndarray,
               state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``pvalues`` (detector name → one per row of ``X``) with the rows that carry evidence
        also judged taken back by the client's factor; ``state`` advanced by ``X``'s rows."""
        if not self.active or not len(X):
            return pvalues
        factors = _weighted_factors(X, self.numeric, self.weight, self.center_weight)
        running = (state["factor_sum"][0] + np.cumsum(factors)) / (
            state["rows"][0] + np.arange(1, len(X) + 1))
        state["factor_sum"] = state["factor_sum"] + factors.sum()
        state["rows"] = state["rows"] + len(X)
        client_factor = np.clip(running, *self.scale_range)
        names = [d.name for d in self.detectors if d.name in pvalues]
        low = np.zeros(len(X), dtype=bool)
        for name in names:
            low |= np.asarray(pvalues[name]) <= self.truncation
        rows = np.flatnonzero(low & (np.abs(client_factor - 1.0) >= MIN_CHANGE))
        if not len(rows):
            return pvalues
        taken_back = np.asarray(X[rows], dtype=np.float64).copy()
        taken_back[:, self.numeric] /= client_factor[rows][:, None]
        batch = Batch(X=taken_back, Z=self.profile.transform(taken_back), proba=None)
        adjusted = dict(pvalues)
        for detector in self.detectors:
            if detector.name in pvalues:
                p = np.array(pvalues[detector.name], dtype=np.float64)
                p[rows] = np.maximum(p[rows], detector.pvalues(batch))
                adjusted[detector.name] = p
        return adjusted


__all__ = ["MIN_CHANGE", "MIN_SHIFT", "ScalingNull", "row_factors"]
