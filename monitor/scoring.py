"""The scoring step: from one call's p-values to window counts, row scores and a flag event.

:func:`score_rows` is a pure function of the client's window contents before the call, the
detectors' p-values for the call's distinct rows, which rows were retries, and the window
tests. It returns the new windows, the counts and overall score after every row, and the
first row whose score reached the threshold (when the client was not flagged before). The
:class:`~monitor.Monitor` applies the result to the client's state.

>>> import numpy as np
>>> from monitor.evidence import WindowTest
>>> test = WindowTest("density", "sharp", 0.01, window=5, tolerated_rate=0.05, horizon=10,
...                   n_tests=1, alpha=0.01)
>>> scored = score_rows({"density.sharp": test.initial_window()},
...                     {"density": np.array([0.001, 0.001, 0.5, 0.001, 0.001])},
...                     duplicate=np.zeros(5, dtype=bool), tests=[test], previous_score=0.0,
...                     n_distinct_before=0, threshold=2.0, flagged_before=False)
>>> scored.counts[0].tolist(), scored.flag
([1, 2, 2, 3, 4], FlagEvent(row=4, test=0, count=4, n_distinct=5))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.evidence import WindowTest, rolling_counts


@dataclass(frozen=True)
class FlagEvent:
    """Where a client's score first reached the threshold within one call."""

    row: int
    """Index of the flagging row within the call (0-based)."""
    test: int
    """Index of the window test with the highest score at that row."""
    count: int
    """That test's window count at that row."""
    n_distinct: int
    """Distinct queries the client had sent up to and including that row."""


@dataclass(frozen=True)
class ScoredRows:
    """What one call changed: new windows, and the evidence after each row."""

    windows: dict[str, np.ndarray]
    """Each test's window contents after the call, by test key."""
    counts: np.ndarray
    """``(n_tests, m)``: each test's window count after each distinct row."""
    row_scores: np.ndarray
    """``(n,)``: the overall score after each row (retries carry the previous score)."""
    flag: FlagEvent | None
    """The first row at which the score reached the threshold, if the client was not
    flagged before this call and is now."""

    @property
    def last_counts(self) -> np.ndarray | None:
        """Each test's count after the last distinct row (``None`` without distinct rows)."""
        return self.counts[:, -1] if self.counts.shape[1] else None


def score_rows(windows: Mapping[str, np.ndarray], pvalues: Mapping[str, np.ndarray],
               duplicate: np.ndarray, tests: Sequence[WindowTest], previous_score: float,
               n_distinct_before: int, threshold: float, flagged_before: bool) -> ScoredRows:
    """Advance the window tests by one call (see the module docstring)."""
    m = int((~duplicate).sum())
    counts = np.zeros((len(tests), m), dtype=np.int64)
    test_scores = np.zeros((len(tests), m))
    new_windows = dict(windows)
    for t, test in enumerate(tests):
        events = (pvalues[test.detector] <= test.level).astype(np.uint8)
        counts[t], new_windows[test.key] = rolling_counts(windows[test.key], events,
                                                          test.window)
        test_scores[t] = test.evidence.overall(counts[t])

    distinct_scores = test_scores.max(axis=0) if m else np.zeros(0)
    position = np.cumsum(~duplicate) - 1  # index of the latest distinct row at each row
    with_previous = np.concatenate([[previous_score], distinct_scores])
    row_scores = with_previous[position + 1]

    flag = None
    if not flagged_before:
        over = np.flatnonzero(row_scores >= threshold)
        if len(over):
            row = int(over[0])
            at = int(position[row])
            t = int(np.argmax(test_scores[:, at]))
            flag = FlagEvent(row=row, test=t, count=int(counts[t, at]),
                             n_distinct=n_distinct_before + at + 1)
    return ScoredRows(windows=new_windows, counts=counts, row_scores=row_scores, flag=flag)


__all__ = ["FlagEvent", "ScoredRows", "score_rows"]
