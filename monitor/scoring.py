"""The scoring step: from one call's unit p-values to window sums, row scores and a flag event.

:func:`score_rows` is a pure function of the client's window contents before the call, the
detectors' p-values for the call's new evidence units, which of the call's rows started a new
unit, and the window tests. It returns the new windows, each test's window sum after every
unit, the overall score after every row (rows that start no unit — retries, near-duplicates,
repeated variants — carry the previous score), and the first row whose score reached the
threshold when the client was not flagged before. The :class:`~monitor.Monitor` applies the
result to the client's state.

>>> import numpy as np
>>> from monitor.evidence import WindowTest
>>> test = WindowTest("density", window=8, truncation=0.1, horizon=100, n_tests=1, alpha=0.01)
>>> scored = score_rows({"density.w8": test.initial_window()},
...                     {"density": np.array([1e-6, 0.5, 1e-6, 1e-6])},
...                     new_unit=np.array([True, True, False, True, True]), tests=[test],
...                     previous_score=0.0, n_units_before=0, threshold=2.0,
...                     flagged_before=False)
>>> scored.sums[0].tolist(), scored.flag
([255, 255, 510, 765], FlagEvent(row=3, test=0, window_sum=510, n_unusual=2, n_units=3))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.evidence import WindowTest, rolling_sums


@dataclass(frozen=True)
class FlagEvent:
    """Where a client's score first reached the threshold within one call."""

    row: int
    """Index of the flagging row within the call (0-based)."""
    test: int
    """Index of the window test with the highest score at that row."""
    window_sum: int
    """That test's window sum (quanta) at that row."""
    n_unusual: int
    """Units of that window carrying evidence (p-value at most the truncation level)."""
    n_units: int
    """Units the client had made up to and including that row."""


@dataclass(frozen=True)
class ScoredRows:
    """What one call changed: new windows, and the evidence after each row."""

    windows: dict[str, np.ndarray]
    """Each test's window contents (quantised unit evidence) after the call, by test key."""
    sums: np.ndarray
    """``(n_tests, u)``: each test's window sum after each new unit."""
    row_scores: np.ndarray
    """``(n,)``: the overall score after each row."""
    flag: FlagEvent | None
    """The first row at which the score reached the threshold, if the client was not
    flagged before this call and is now."""

    @property
    def last_sums(self) -> np.ndarray | None:
        """Each test's window sum after the last new unit (``None`` without new units)."""
        return self.sums[:, -1] if self.sums.shape[1] else None


def score_rows(windows: Mapping[str, np.ndarray], pvalues: Mapping[str, np.ndarray],
               new_unit: np.ndarray, tests: Sequence[WindowTest], previous_score: float,
               n_units_before: int, threshold: float, flagged_before: bool) -> ScoredRows:
    """Advance the window tests by one call (see the module docstring)."""
    u = int(np.count_nonzero(new_unit))
    sums = np.zeros((len(tests), u), dtype=np.int64)
    test_scores = np.zeros((len(tests), u))
    quantised = {}
    new_windows = dict(windows)
    for t, test in enumerate(tests):
        key = (test.detector, test.truncation)
        if key not in quantised:
            quantised[key] = test.evidence.quantise(pvalues[test.detector])
        y = quantised[key]
        sums[t], new_windows[test.key] = rolling_sums(windows[test.key], y, test.window)
        test_scores[t] = test.evidence.overall(sums[t])

    unit_scores = test_scores.max(axis=0) if u else np.zeros(0)
    position = np.cumsum(new_unit) - 1  # index of the latest new unit at each row
    with_previous = np.concatenate([[previous_score], unit_scores])
    row_scores = with_previous[position + 1]

    flag = None
    if not flagged_before:
        over = np.flatnonzero(row_scores >= threshold)
        if len(over):
            row = int(over[0])
            at = int(position[row])
            t = int(np.argmax(test_scores[:, at]))
            test = tests[t]
            y = quantised[(test.detector, test.truncation)]
            history = np.concatenate([windows[test.key], y[:at + 1]])[-test.window:]
            flag = FlagEvent(row=row, test=t, window_sum=int(sums[t, at]),
                             n_unusual=int(np.count_nonzero(history)),
                             n_units=n_units_before + at + 1)
    return ScoredRows(windows=new_windows, sums=sums, row_scores=row_scores, flag=flag)


__all__ = ["FlagEvent", "ScoredRows", "score_rows"]
