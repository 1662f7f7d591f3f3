"""Evidence units: the block-wise assignment equals assigning one query at a time."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.units import UnitTracker, _squared_distances, _squared_rows


def _stream(rng: np.random.Generator, n: int, d: int, radius: float) -> np.ndarray:
    """Unrelated records, jittered re-sends, one-feature sweeps, walks and exact repeats."""
    step = radius / np.sqrt(d)
    records = rng.normal(0.0, 3.0, (max(1, n // 6), d))
    rows = []
    while len(rows) < n:
        kind = rng.integers(0, 5)
        base = records[rng.integers(0, len(records))]
        if kind == 0:  # a run of unrelated records
            rows.extend(rng.normal(0.0, 3.0, (int(rng.integers(1, 40)), d)))
        elif kind == 1:  # jitter of one record
            rows.extend(base + rng.normal(0.0, 0.3 * step, (int(rng.integers(1, 12)), d)))
        elif kind == 2:  # a sweep of one or two features
            for value in rng.normal(0.0, 3.0, int(rng.integers(1, 8))):
                row = base.copy()
                row[rng.integers(0, d, int(rng.integers(1, 3)))] = value
                rows.append(row)
        elif kind == 3:
            rows.append(base)
        else:  # a walk of small steps
            rows.extend(base + np.cumsum(rng.normal(0.0, 0.6 * step, (int(rng.integers(2, 20)), d)), 0))
    return np.asarray(rows[:n])


@pytest.mark.parametrize("seed", range(12))
def test_block_assignment_equals_one_query_at_a_time(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.choice([3, 7, 16, 64]))
    kwargs = dict(radius=float(rng.choice([0.3, 1.0, 3.0])), n_features=d,
                  n_leaders=int(rng.choice([4, 48])), n_roots=int(rng.choice([3, 16])),
                  n_variants=int(rng.choice([5, 64])), max_changed=int(rng.integers(0, 4)))
    fast, slow = UnitTracker(**kwargs), UnitTracker(**kwargs)
    slow.speculate = False
    fast_state, slow_state = fast.initial_state(), slow.initial_state()
    Z = _stream(rng, 1500, d, kwargs["radius"])
    pvalues = rng.uniform(0, 1, len(Z)) ** 8  # some far more extreme than their unit
    start = 0
    while start < len(Z):  # calls of every size, one row included
        stop = start + int(rng.choice([1, 2, 5, 40, 300]))
        a = fast.assign(Z[start:stop], fast_state, pvalues[start:stop])
        b = slow.assign(Z[start:stop], slow_state, pvalues[start:stop])
        assert np.array_equal(a.new_unit, b.new_unit)
        assert np.array_equal(a.nearest_leader, b.nearest_leader)
        start = stop
    for key in slow_state:
        assert np.array_equal(fast_state[key], slow_state[key]), key
        assert fast_state[key].dtype == slow_state[key].dtype, key
    assert 0.05 < slow_state["counter"][0] / len(Z) < 0.95  # both kinds of query were there


def test_the_block_arithmetic_is_the_one_query_arithmetic_bit_for_bit():
    """The guess is checked with the same sums one query at a time makes, so a distance on
    the radius (or a residual on the tolerance) is decided the same way by both."""
    rng = np.random.default_rng(0)
    Z, rows = rng.normal(size=(30, 64)), rng.normal(size=(30, 20, 64))
    blocked = _squared_rows(rows, Z)
    tracker = UnitTracker(radius=1.0, n_features=64)
    residual = tracker._residuals(rows, Z)[1]
    for k in range(len(Z)):
        assert np.array_equal(blocked[k], _squared_distances(Z[k:k + 1], rows[k])[0])
        assert np.array_equal(blocked[k], _squared_distances(Z[k:k + 2], rows[k])[0])
        assert np.array_equal(residual[k], tracker._residuals(rows[k], Z[k])[1])
