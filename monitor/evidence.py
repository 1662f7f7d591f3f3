"""From per-query extreme events to calibrated per-client scores.

Each detector marks every distinct query as *extreme* or not (its conformal
p-value is at most ``extreme_level``). The evidence is the count ``c`` of
extreme queries among the client's last ``window`` distinct queries. Under the
benign hypothesis, extreme events occur independently at a rate of at most
``tolerated_rate`` (deliberately above ``extreme_level``, so that drifted or
narrow benign data is tolerated), so ``c`` is at most Binomial(window,
tolerated_rate) and

    p(c) = min(1, horizon * m * P[Binomial(window, tolerated_rate) >= c])

bounds, by a union bound over the ``horizon`` window positions and the ``m``
detectors, the probability that a benign client ever reaches that count. The
score is ``-log10 p``: higher means more suspicious, and a client is flagged
when its score reaches ``-log10 alpha``. The counts are order-invariant within
a window, so a benign batch sorted by one feature is not penalised for
clustering its few tail records.

>>> from monitor.evidence import WindowEvidence
>>> ev = WindowEvidence(window=50, tolerated_rate=0.05, horizon=10_000, n_detectors=3, alpha=0.01)
>>> ev.flag_count
14
>>> float(ev.scores(np.array([0, 13, 14]))[2]) >= ev.threshold
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.stats import binom

if TYPE_CHECKING:
    from monitor.detectors import Detector
    from monitor.profile import Profile
    from monitor.settings import MonitorConfig

WindowKind = Literal["sharp", "broad"]


class WindowEvidence:
    """One window-count test (a lookup table, O(1) per query).

    ``n_detectors`` is the number of tests combined by Bonferroni into the
    overall score.
    """

    def __init__(self, window: int, tolerated_rate: float, horizon: int, n_detectors: int,
                 alpha: float, threshold: float | None = None, level: float = 0.01) -> None:
        self.window = window
        self.level = level
        self.tolerated_rate = tolerated_rate
        self.threshold = float(-np.log10(alpha)) if threshold is None else float(threshold)
        counts = np.arange(window + 1)
        tail = binom.sf(counts - 1, window, tolerated_rate)
        with np.errstate(divide="ignore"):
            detector_p = np.minimum(1.0, horizon * tail)
            overall_p = np.minimum(1.0, n_detectors * horizon * tail)
        self.detector_scores_ = -np.log10(np.maximum(detector_p, 1e-300)) + 0.0
        self.overall_scores_ = -np.log10(np.maximum(overall_p, 1e-300)) + 0.0
        flagging = np.nonzero(self.overall_scores_ >= self.threshold)[0]
        self.flag_count = int(flagging[0]) if len(flagging) else window + 1

    def scores(self, counts: np.ndarray) -> np.ndarray:
        """Per-detector scores for window counts."""
        return self.detector_scores_[counts]

    def overall(self, max_counts: np.ndarray) -> np.ndarray:
        """Overall scores (Bonferroni over detectors) for the largest count across detectors."""
        return self.overall_scores_[max_counts]


def rolling_counts(previous: np.ndarray, events: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window counts after each new event, and the new window contents.

    ``previous`` holds the last (at most ``window``) events in time order.

    >>> rolling_counts(np.array([1, 1], dtype=np.uint8), np.array([0, 1, 0], dtype=np.uint8), 3)
    (array([2, 2, 1]), array([0, 1, 0], dtype=uint8))
    """
    if len(events) == 1:  # the online fast path
        kept = np.append(previous, events)[-window:].astype(np.uint8)
        return np.array([int(kept.sum())]), kept
    seq = np.concatenate([previous, events]).astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(seq)])
    ends = np.arange(len(previous), len(seq)) + 1
    counts = cs[ends] - cs[np.maximum(ends - window, 0)]
    return counts, seq[-window:].astype(np.uint8)


@dataclass(frozen=True)
class WindowTest:
    """One named window test of one detector: count p <= ``level`` in the last ``window``
    distinct queries, tolerating ``tolerated_rate`` such queries from a benign client.

    ``key`` names its window in client state; ``evidence`` is its lookup table.

    >>> test = WindowTest("density", "sharp", level=0.01, window=50, tolerated_rate=0.05,
    ...                   horizon=10_000, n_tests=4, alpha=0.01)
    >>> test.key, test.evidence.flag_count
    ('density.sharp', 14)
    """

    detector: str
    kind: WindowKind
    level: float
    window: int
    tolerated_rate: float
    horizon: int
    n_tests: int
    alpha: float
    threshold: float | None = None
    evidence: WindowEvidence = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", WindowEvidence(
            self.window, self.tolerated_rate, self.horizon, self.n_tests, self.alpha,
            self.threshold, self.level))

    @property
    def key(self) -> str:
        return f"{self.detector}.{self.kind}"

    def initial_window(self) -> np.ndarray:
        return np.zeros(0, dtype=np.uint8)


def build_window_tests(detectors: Sequence[Detector], config: MonitorConfig,
                       profile: Profile) -> list[WindowTest]:
    """Every detector's window tests, sharp tests first, then broad.

    Each test tolerates the larger of the configured rate and the rate at which the
    profile's drifted held-out data looks unusual to that detector (capped at
    :data:`~monitor.settings.MAX_TOLERATED_RATE`).
    """
    from monitor.settings import MAX_TOLERATED_RATE

    kinds: list[tuple[WindowKind, float, int, float]] = [
        ("sharp", config.extreme_level, config.window, config.tolerated_rate)]
    if config.broad_window:
        kinds.append(("broad", config.broad_level, config.broad_window,
                      config.broad_tolerated_rate))
    n_tests = len(kinds) * len(detectors)
    tests = []
    for kind, level, window, rate in kinds:
        for detector in detectors:
            tolerated = min(MAX_TOLERATED_RATE, max(rate, profile.drift_rate(detector.name, level)))
            tests.append(WindowTest(detector.name, kind, level, window, tolerated,
                                    config.horizon, n_tests, config.alpha,
                                    config.score_threshold))
    return tests
