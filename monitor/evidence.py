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

import numpy as np
from scipy.stats import binom


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
