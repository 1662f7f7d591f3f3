"""The scoring step: from one call's unit p-values to window sums, row scores and a flag event.

:func:`score_rows` is a pure function of the client's windows before the call, the detectors'
p-values for the call's new evidence units, which of the call's rows started a new unit, and
the window tests. It returns the new windows, each test's window sum after every unit, the
overall score after every row (rows that start no unit — retries, near-duplicates, repeated
variants — carry the previous score), and the first row whose score reached the threshold when
the client was not flagged before. The :class:`~monitor.Monitor` applies the result to the
client's state.

A window is a ring buffer of a test's last ``window`` units' quantised evidence
(:class:`Windows`): one new unit costs a few scalar operations per test, however long the
window, and a batch of units is scored in one vectorised pass.

>>> import numpy as np
>>> from monitor.evidence import WindowTest
>>> test = WindowTest("density", window=8, truncation=0.1, horizon=100, n_tests=1, alpha=0.01)
>>> scored = score_rows(Windows.empty([test]), {"density": np.array([1e-6, 0.5, 1e-6, 1e-6])},
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

from monitor.evidence import WindowTest, quantise, rolling_sums

HEAD, FILL, SUM, UNUSUAL = 0, 1, 2, 3
"""Columns of :attr:`Windows.meta`: next write position, units held, their evidence sum, and
how many of them carry evidence."""


@dataclass
class Windows:
    """Every window test's ring buffer of quantised unit evidence.

    ``rings[key]`` holds test ``key``'s last units (``uint8``, length ``window``, written at
    ``meta[t, HEAD]``); ``meta[t]`` is ``(head, fill, sum, unusual)`` of test ``t`` in test
    order.
    """

    rings: dict[str, np.ndarray]
    meta: np.ndarray

    @classmethod
    def empty(cls, tests: Sequence[WindowTest]) -> Windows:
        return cls({t.key: np.zeros(t.window, dtype=np.uint8) for t in tests},
                   np.zeros((len(tests), 4), dtype=np.int64))

    def ordered(self, t: int, key: str) -> np.ndarray:
        """Test ``t``'s units, oldest first."""
        ring = self.rings[key]
        head, fill = int(self.meta[t, HEAD]), int(self.meta[t, FILL])
        if fill < len(ring):
            return ring[:fill]
        return np.concatenate([ring[head:], ring[:head]])

    def matches(self, tests: Sequence[WindowTest]) -> bool:
        """Whether these windows were written by ``tests``."""
        return (self.meta.shape == (len(tests), 4) and set(self.rings) == {t.key for t in tests}
                and all(len(self.rings[t.key]) == t.window for t in tests))


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

    windows: Windows
    """Every test's window after the call."""
    sums: np.ndarray
    """``(n_tests, u)``: each test's window sum after each new unit."""
    row_scores: np.ndarray
    """``(n,)``: the overall score after each row."""
    flag: FlagEvent | None
    """The first row at which the score reached the threshold, if the client was not
    flagged before this call and is now."""


def score_rows(windows: Windows, pvalues: Mapping[str, np.ndarray], new_unit: np.ndarray,
               tests: Sequence[WindowTest], previous_score: float, n_units_before: int,
               threshold: float, flagged_before: bool, in_place: bool = False) -> ScoredRows:
    """Advance the window tests by one call (see the module docstring).

    ``in_place`` lets the online path write the new unit into ``windows``' rings instead of
    copies (the Monitor replaces the client's windows with the result anyway)."""
    u = int(np.count_nonzero(new_unit))
    quantised = _quantise(pvalues, tests)
    rings = dict(windows.rings)
    if u == 1:  # the online path: a few scalar operations per test
        meta = windows.meta.tolist()
        totals, scores = [], []
        plan = _plan(tests)
        evidence = [int(quantised[pair][0]) for pair in plan.pairs]
        for t, (key, window, table, last, pair) in enumerate(plan.online):
            y = evidence[pair]
            ring = rings[key] if in_place else rings[key].copy()
            rings[key] = ring
            head, fill, total, unusual = meta[t]
            if fill == window:
                dropped = int(ring[head])
                total -= dropped
                unusual -= dropped > 0
            ring[head] = y
            total += y
            meta[t] = [(head + 1) % window, min(fill + 1, window), total, unusual + (y > 0)]
            totals.append(total)
            scores.append(table[min(total, last)])
        meta = np.array(meta, dtype=np.int64)
        sums = np.array(totals, dtype=np.int64)[:, None]
        test_scores = np.array(scores, dtype=np.float64)[:, None]
    else:
        sums = np.zeros((len(tests), u), dtype=np.int64)
        test_scores = np.zeros((len(tests), u))
        meta = windows.meta.copy()
        for t, test in enumerate(tests):
            if not u:
                break
            y = quantised[(test.detector, test.truncation)]
            sums[t], kept = rolling_sums(windows.ordered(t, test.key), y, test.window)
            ring = np.zeros(test.window, dtype=np.uint8)
            ring[:len(kept)] = kept
            meta[t] = (len(kept) % test.window, len(kept), int(kept.sum(dtype=np.int64)),
                       int(np.count_nonzero(kept)))
            rings[test.key] = ring
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
            history = np.concatenate([windows.ordered(t, test.key), y[:at + 1]])[-test.window:]
            flag = FlagEvent(row=row, test=t, window_sum=int(sums[t, at]),
                             n_unusual=int(np.count_nonzero(history)),
                             n_units=n_units_before + at + 1)
    return ScoredRows(windows=Windows(rings, meta), sums=sums, row_scores=row_scores,
                      flag=flag)


@dataclass(frozen=True)
class _Plan:
    """How one call's p-values become the tests' evidence: the distinct (detector, truncation)
    pairs of ``tests``, and each test's pair."""

    tests: Sequence[WindowTest]
    pairs: tuple[tuple[str, float], ...]
    truncations: np.ndarray
    pair_of_test: tuple[int, ...]
    online: tuple[tuple[str, int, list[float], int, int], ...]
    """Per test, what the one-unit path reads: its key, window, score table (a list: Python
    floats, read without numpy scalars), the table's last index and the test's pair."""


_PLANS: dict[int, _Plan] = {}


def _plan(tests: Sequence[WindowTest]) -> _Plan:
    plan = _PLANS.get(id(tests))
    if plan is None or plan.tests is not tests:
        pairs = tuple(dict.fromkeys((t.detector, t.truncation) for t in tests))
        pair_of_test = tuple(pairs.index((t.detector, t.truncation)) for t in tests)
        online = tuple((t.key, int(t.window), np.asarray(t.evidence.overall_scores_).tolist(),
                        len(t.evidence.overall_scores_) - 1, pair)
                       for t, pair in zip(tests, pair_of_test, strict=True))
        plan = _Plan(tests, pairs, np.array([[level] for _, level in pairs]), pair_of_test,
                     online)
        if len(_PLANS) > 64:  # monitors come and go in tests; keep the cache small
            _PLANS.clear()
        _PLANS[id(tests)] = plan
    return plan


def _quantise(pvalues: Mapping[str, np.ndarray], tests: Sequence[WindowTest]
              ) -> dict[tuple[str, float], np.ndarray]:
    """Each (detector, truncation)'s quantised unit evidence, in one vectorised call."""
    plan = _plan(tests)
    stacked = quantise(np.array([pvalues[name] for name, _ in plan.pairs], dtype=np.float64),
                       plan.truncations)
    return {pair: stacked[i] for i, pair in enumerate(plan.pairs)}


__all__ = ["FILL", "HEAD", "SUM", "UNUSUAL", "FlagEvent", "ScoredRows", "Windows", "score_rows"]
