"""From per-unit p-values to calibrated window scores: truncated products over evidence units.

Each detector gives every new evidence unit (:mod:`monitor.units`) a p-value (small =
unusual; tail-aware, so it can be as small as :data:`~monitor.tails.MIN_PVALUE`). A window
test keeps the last ``window`` units and sums their evidence

    y(p) = min(-ln p, -ln p_min)  if p <= truncation,  else 0,

a truncated product (Zaykin et al. 2002): many moderately unusual units add up, and one
impossible unit counts for a lot but never for everything. ``y`` is quantised to
:data:`QUANTUM` nats (rounded up) so a window sum is an exact integer, the same in a batch as
row by row.

**Calibration.** Under a benign null the units' p-values are independent draws from some
distribution; the null is *composite*: the uniform distribution (units exchangeable with
held-out data: random, one-class and sorted clients are subsets of it, dependent clients are
merged into units), and the detector's p-values on each drifted copy of the held-out data (the
profile's drift model, ``Profile(drift_noise, drift_scale, drift_draws)``). For each member the exact
distribution of the window sum is a convolution; the test's tail probability is the largest
over members, and

    score(T) = -log10 min(1, horizon * n_tests * max_m P_m[sum >= T])

bounds, by a union bound over the horizon's window positions and the tests, the probability
that a benign client of any member ever reaches that score. A client is flagged when its score
reaches ``-log10 alpha``. A window not yet full is scored with the full window's table, which
is conservative (evidence is non-negative).

>>> test = WindowTest("density", window=32, truncation=0.1, horizon=10_000, n_tests=1,
...                   alpha=0.01)
>>> impossible = test.evidence.quantise(np.full(5, 1e-6))
>>> bool(test.evidence.score(int(impossible[:2].sum())) < 2 <= test.evidence.score(int(impossible.sum())))
True
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from monitor.tails import MIN_PVALUE

if TYPE_CHECKING:
    from monitor.detectors import Detector
    from monitor.profile import Profile
    from monitor.settings import MonitorConfig

CAP = float(-np.log(MIN_PVALUE))
"""Largest evidence one unit carries, in nats."""
LEVELS = 255
"""Quantisation levels of one unit's evidence (stored as uint8)."""
QUANTUM = CAP / LEVELS
"""Nats per quantisation step."""
MAX_NULL_MEMBERS = 12
"""Empirical null members kept per test (those with the most evidence per unit)."""


def quantise(pvalues: np.ndarray, truncation: float) -> np.ndarray:
    """Each p-value's evidence ``y(p)`` in quanta (uint8, rounded up)."""
    p = np.maximum(np.asarray(pvalues, dtype=np.float64), MIN_PVALUE)
    y = np.where(p <= truncation, np.minimum(-np.log(p), CAP), 0.0)
    return np.minimum(np.ceil(y / QUANTUM - 1e-9), LEVELS).astype(np.uint8)


def uniform_pmf(truncation: float) -> np.ndarray:
    """The distribution of one unit's quantised evidence when its p-value is uniform
    (floored at :data:`~monitor.tails.MIN_PVALUE`)."""
    edges = np.arange(LEVELS + 1) * QUANTUM  # level k holds y in ((k-1) q, k q]
    low = np.log(1.0 / truncation)
    upper = np.exp(-np.maximum(edges[:-1], low))
    lower = np.exp(-edges[1:])
    pmf = np.zeros(LEVELS + 1)
    pmf[1:] = np.where(edges[1:] > low, np.maximum(upper - lower, 0.0), 0.0)
    pmf[LEVELS] += MIN_PVALUE  # the floor: P(p <= p_min) lands in the top level
    pmf[0] = 1.0 - pmf[1:].sum()
    return pmf


def empirical_pmf(pvalues: np.ndarray, truncation: float) -> np.ndarray:
    """The distribution of one unit's quantised evidence over observed p-values."""
    counts = np.bincount(quantise(pvalues, truncation), minlength=LEVELS + 1)
    return counts / max(counts.sum(), 1)


def window_survival(pmf: np.ndarray, window: int) -> np.ndarray:
    """``P[sum of window iid draws >= t]`` for every integer ``t`` (exact convolution by FFT)."""
    length = LEVELS * window + 1
    size = 1 << int(np.ceil(np.log2(length)))
    spectrum = np.fft.rfft(pmf, size) ** window
    total = np.maximum(np.fft.irfft(spectrum, size)[:length], 0.0)
    survival = np.cumsum(total[::-1])[::-1]
    return np.clip(survival, 0.0, 1.0)


@lru_cache(maxsize=256)
def _uniform_survival(truncation: float, window: int) -> np.ndarray:
    return window_survival(uniform_pmf(truncation), window)


class TruncatedProduct:
    """The lookup table of one window test: window sum (in quanta) -> score.

    ``null_members`` are p-value samples of the benign shapes beyond uniform (each an
    empirical distribution); the uniform member is always included.
    """

    def __init__(self, window: int, truncation: float, horizon: int, n_tests: int,
                 alpha: float, threshold: float | None = None,
                 null_members: Sequence[np.ndarray] = ()) -> None:
        self.window, self.truncation = window, truncation
        self.threshold = float(-np.log10(alpha)) if threshold is None else float(threshold)
        survival = _uniform_survival(truncation, window).copy()
        for member in _strongest(null_members, truncation):
            survival = np.maximum(survival, window_survival(
                empirical_pmf(member, truncation), window))
        self.n_null_members = 1 + min(len(null_members), MAX_NULL_MEMBERS)
        with np.errstate(divide="ignore"):
            self.detector_scores_ = np.maximum(
                -np.log10(np.minimum(1.0, horizon * survival)), 0.0).astype(np.float32)
            self.overall_scores_ = np.maximum(
                -np.log10(np.minimum(1.0, n_tests * horizon * survival)), 0.0).astype(np.float32)
        self.detector_scores_ = np.minimum(self.detector_scores_, 300.0)
        self.overall_scores_ = np.minimum(self.overall_scores_, 300.0)
        flagging = np.flatnonzero(self.overall_scores_ >= self.threshold)
        self.flag_sum = int(flagging[0]) if len(flagging) else len(survival)
        """Smallest window sum (quanta) that flags."""

    def quantise(self, pvalues: np.ndarray) -> np.ndarray:
        return quantise(pvalues, self.truncation)

    def score(self, window_sum: int) -> float:
        """The overall score of a window sum."""
        return float(self.overall_scores_[min(int(window_sum), len(self.overall_scores_) - 1)])

    def overall(self, sums: np.ndarray) -> np.ndarray:
        """Overall scores (union bound over tests) of window sums."""
        return self.overall_scores_[np.minimum(sums, len(self.overall_scores_) - 1)]

    def detector_score(self, window_sum: int) -> float:
        """The score of one test alone (union bound over the horizon only)."""
        return float(self.detector_scores_[min(int(window_sum),
                                               len(self.detector_scores_) - 1)])


def _strongest(members: Sequence[np.ndarray], truncation: float) -> list[np.ndarray]:
    """The members with the most expected evidence per unit, plus the heaviest tails."""
    members = [np.asarray(m) for m in members if len(m)]
    if len(members) <= MAX_NULL_MEMBERS:
        return members
    mean = np.array([quantise(m, truncation).mean() for m in members])
    tail = np.array([np.mean(m <= truncation / 100) for m in members])
    half = MAX_NULL_MEMBERS // 2
    chosen = list(np.argsort(-mean)[:half])
    chosen += [i for i in np.argsort(-tail) if i not in chosen][:MAX_NULL_MEMBERS - half]
    return [members[i] for i in chosen]


@dataclass(frozen=True)
class WindowTest:
    """One named window test of one detector: the truncated product of the last ``window``
    units' p-values, calibrated against the composite benign null.

    ``key`` names its window in client state; ``evidence`` is its lookup table.

    >>> test = WindowTest("density", window=32, truncation=0.1, horizon=10_000, n_tests=8,
    ...                   alpha=0.01)
    >>> test.key, round(test.evidence.flag_sum * QUANTUM, 1)
    ('density.w32', 53.7)
    """

    detector: str
    window: int
    truncation: float
    horizon: int
    n_tests: int
    alpha: float
    threshold: float | None = None
    null_members: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    values: int | None = None
    """P-values other than 1 the window can hold under the detector's design, when fewer
    than ``window`` (a detector that emits one p-value per block of units declares
    ``values_per_window``); its null table is that many draws' (the other units' ``p = 1``
    carry no evidence), ``None``: one per unit."""
    evidence: TruncatedProduct = field(init=False, repr=False, compare=False)

    name: str = field(init=False, compare=False)
    """The test's name within its detector (``w32``: the last 32 units)."""
    key: str = field(init=False, compare=False)
    """The test's name in client state and verdicts (``density.w32``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", TruncatedProduct(
            self.window if self.values is None else self.values, self.truncation,
            self.horizon, self.n_tests, self.alpha, self.threshold, self.null_members))
        object.__setattr__(self, "name", f"w{self.window}")
        object.__setattr__(self, "key", f"{self.detector}.w{self.window}")


def rolling_sums(previous: np.ndarray, values: np.ndarray, window: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Window sums after each new value, and the new window contents.

    ``previous`` holds the last (at most ``window``) values in time order.

    >>> rolling_sums(np.array([3, 1], dtype=np.uint8), np.array([0, 2, 5], dtype=np.uint8), 3)
    (array([4, 3, 7]), array([0, 2, 5], dtype=uint8))
    """
    if len(values) == 1:  # the online fast path
        kept = np.append(previous, values)[-window:].astype(np.uint8)
        return np.array([int(kept.sum(dtype=np.int64))]), kept
    seq = np.concatenate([previous, values]).astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(seq)])
    ends = np.arange(len(previous), len(seq)) + 1
    sums = cs[ends] - cs[np.maximum(ends - window, 0)]
    return sums, seq[-window:].astype(np.uint8)


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per profile object: config key -> its window tests."""


def build_window_tests(detectors: Sequence[Detector], config: MonitorConfig,
                       profile: Profile) -> list[WindowTest]:
    """Every detector's window tests (one per size in ``config.windows``, shortest first),
    each calibrated against the detector's benign null members.

    Tables are cached per profile and config (building one costs a few FFTs per member).
    """
    n_tests = len(config.windows) * len(detectors)
    key = (tuple(d.name for d in detectors), config.windows, config.truncation,
           config.horizon, config.alpha, config.score_threshold)
    cached = _CACHE.setdefault(profile, {})
    if key in cached:
        return cached[key]
    tests = [WindowTest(detector.name, window, config.truncation, config.horizon, n_tests,
                        config.alpha, config.score_threshold,
                        tuple(profile.null_members(detector.name)),
                        _values(detector, window))
             for window in config.windows for detector in detectors]
    cached[key] = tests
    return tests


def _values(detector, window: int) -> int | None:
    """P-values a window of ``window`` units can hold for ``detector`` (``None``: one per
    unit), at most ``window``."""
    values = getattr(detector, "values_per_window", None)
    return None if values is None else max(1, min(window, int(values(window))))


__all__ = ["CAP", "LEVELS", "QUANTUM", "TruncatedProduct", "WindowTest",
           "build_window_tests", "empirical_pmf", "quantise", "rolling_sums", "uniform_pmf",
           "window_survival"]
