"""Tail-aware p-values: conformal ranks in the body, a generalised Pareto tail beyond the data.

A conformal p-value ``(1 + #{cal >= s}) / (n + 1)`` is exact but can never go below
``1 / (n + 1)``: a query ten times farther than any real input carries no more evidence than
one just past the largest calibration value. Peaks over threshold (Pickands-Balkema-de Haan)
extend it: the calibration values above a high threshold ``u`` are fitted with a generalised
Pareto distribution, and beyond the largest calibration value

    p(s) = min(1 / (n + 1),  (k / (n + 1)) * GPD_sf(s - u; xi, sigma))

with ``k`` the number of exceedances. Up to the largest calibration value the p-value is the
exact conformal rank, so every guarantee built on super-uniform p-values at levels above
``1 / (n + 1)`` is untouched. The fit uses probability-weighted moments (Hosking & Wallis
1987), robust for the 20-200 exceedances a profile has. Extrapolation is conservative: the
shape is floored at 0 (an exponential tail — a fitted bounded tail would give p = 0 past
its end point), capped at :data:`MAX_SHAPE`, and p never goes below :data:`MIN_PVALUE`.

>>> import numpy as np
>>> cal = np.sort(np.random.default_rng(0).exponential(size=999))
>>> tail = fit_tail(cal)
>>> p = tail_pvalues(np.array([0.5, cal[-1] + 1.0, cal[-1] + 10.0]), cal, tail)
>>> bool(p[0] == conformal_pvalues(np.array([0.5]), cal)[0]), bool(p[1] < 1e-3), float(p[2])
(True, True, 1e-06)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.conformal import conformal_pvalues

TAIL_FRACTION = 0.1
"""Share of the calibration values above the threshold ``u``."""
MIN_EXCEEDANCES = 20
"""Fewest exceedances a tail is fitted on (with fewer calibration values, no tail)."""
MAX_SHAPE = 0.5
"""Largest generalised Pareto shape used (heavier fitted tails are capped here)."""
MIN_PVALUE = 1e-6
"""Smallest p-value ever returned: the tail model is not trusted further out (bootstrap fits
vary by 1.5-3.5 orders of magnitude there), so one query's evidence is capped."""


@dataclass(frozen=True)
class Tail:
    """A generalised Pareto tail above ``threshold`` fitted to ``n_exceed`` of ``n`` values."""

    threshold: float
    shape: float
    scale: float
    n_exceed: int
    n: int

    def to_array(self) -> np.ndarray:
        return np.array([self.threshold, self.shape, self.scale, self.n_exceed, self.n],
                        dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Tail | None:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (5,) or not np.isfinite(values).all():
            return None
        return cls(float(values[0]), float(values[1]), float(values[2]), int(values[3]),
                   int(values[4]))

    def survival(self, excess: np.ndarray) -> np.ndarray:
        """``P(X - u > excess | X > u)`` under the fitted tail."""
        excess = np.maximum(np.asarray(excess, dtype=np.float64), 0.0)
        if self.shape < 1e-9:
            return np.exp(-excess / self.scale)
        return (1.0 + self.shape * excess / self.scale) ** (-1.0 / self.shape)


NO_TAIL = np.full(5, np.nan)
"""Stored in place of a tail when there are too few calibration values to fit one."""


def fit_tail(sorted_calibration: np.ndarray, fraction: float = TAIL_FRACTION) -> Tail | None:
    """The generalised Pareto tail of the top ``fraction`` of sorted calibration values
    (probability-weighted moments), or ``None`` with fewer than :data:`MIN_EXCEEDANCES`."""
    values = np.asarray(sorted_calibration, dtype=np.float64)
    n = len(values)
    k = int(np.floor(fraction * n))
    if k < MIN_EXCEEDANCES:
        return None
    threshold = float(values[n - k - 1])
    excess = values[n - k:] - threshold  # ascending
    if not np.ptp(excess) > 0 or not excess.mean() > 0:
        return None
    plotting = (np.arange(1, k + 1) - 0.35) / k
    a0 = excess.mean()
    a1 = np.mean((1.0 - plotting) * excess)
    denominator = a0 - 2.0 * a1
    if denominator <= 0:
        return None
    hosking_k = a0 / denominator - 2.0  # Hosking's shape; the GPD shape xi is its negative
    scale = 2.0 * a0 * a1 / denominator
    shape = float(np.clip(-hosking_k, 0.0, MAX_SHAPE))
    if shape == 0.0:
        scale = float(a0)  # the exponential tail's maximum-likelihood scale
    return Tail(threshold, shape, float(scale), k, n)


def tail_pvalues(stats: np.ndarray, sorted_calibration: np.ndarray,
                 tail: Tail | None) -> np.ndarray:
    """Conformal p-values, extended beyond the largest calibration value by ``tail``."""
    p = conformal_pvalues(stats, sorted_calibration)
    if tail is None or len(sorted_calibration) == 0:
        return p
    beyond = np.asarray(stats) > sorted_calibration[-1]
    if beyond.any():
        n = len(sorted_calibration)
        extended = tail.n_exceed / (n + 1.0) * tail.survival(np.asarray(stats)[beyond]
                                                              - tail.threshold)
        p[beyond] = np.clip(extended, MIN_PVALUE, 1.0 / (n + 1.0))
    return p


__all__ = ["MAX_SHAPE", "MIN_EXCEEDANCES", "MIN_PVALUE", "NO_TAIL", "TAIL_FRACTION", "Tail",
           "fit_tail", "tail_pvalues"]
