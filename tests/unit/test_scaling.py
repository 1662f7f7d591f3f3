"""A client's unit change is estimated and its queries judged taken back (monitor/scaling.py).

The case that motivated it (issue 25, ``benchmarks/drift_calibration.py``): benign wine
clients whose records were all multiplied by one factor in [0.9, 1.15] were flagged 4 of 100
times at alpha 0.01 (2 alpha = 2). Seeded streams here; each test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor import Monitor, MonitorConfig
from monitor.scaling import ScalingNull, row_factors

ALPHA, N_CLIENTS, N_QUERIES = 0.01, 100, 200


def scaled_clients(victim, rng):
    """Client ids and rows: public records times one factor per client, at an end of the
    drift model's [0.9, 1.15] (the corner its window null does not cover)."""
    ids, rows = [], []
    for i in range(N_CLIENTS):
        X = victim.X_public[rng.choice(len(victim.X_public), N_QUERIES)]
        rows.append(X * rng.choice([0.9, 1.15]))
        ids += [f"scaled-{i}"] * N_QUERIES
    return np.asarray(ids, dtype=object), np.concatenate(rows)


@pytest.fixture(scope="module")
def wine(fitted_victim):
    return fitted_victim("wine-tree")


def monitor_for(profile, victim, scaling: bool = True) -> Monitor:
    monitor = Monitor(profile, MonitorConfig(alpha=ALPHA), model=victim.model)
    if not scaling:
        monitor.scaling.active = False  # the plain null, as before
    return monitor


def test_scaled_benign_clients_stay_calibrated(wine):
    victim, profile = wine
    ids, X = scaled_clients(victim, np.random.default_rng(0))
    without = monitor_for(profile, victim, scaling=False).observe_many(ids, X)
    assert sum(v.flagged for v in without.values()) > 2 * ALPHA * N_CLIENTS  # real failure
    with_null = monitor_for(profile, victim).observe_many(ids, X)
    assert sum(v.flagged for v in with_null.values()) <= 2 * ALPHA * N_CLIENTS


def test_uniform_attacks_are_still_flagged(wine):
    victim, profile = wine
    lower, upper = victim.X_train.min(axis=0), victim.X_train.max(axis=0)
    hits = 0
    for seed in range(10):
        Q = np.random.default_rng(seed).uniform(lower, upper, (300, len(lower)))
        hits += monitor_for(profile, victim).observe(f"uniform-{seed}", Q).flagged
    assert hits >= 9


def test_a_batch_gives_what_row_by_row_calls_give(wine):
    victim, profile = wine
    X = victim.X_public[:60] * 1.12
    at_once, by_row = monitor_for(profile, victim), monitor_for(profile, victim)
    batch = at_once.observe("c", X)
    for row in X:
        single = by_row.observe("c", row[None, :])
    assert single.score == pytest.approx(batch.score)
    np.testing.assert_allclose(at_once.state("c").detector_state["scaling"]["factor_sum"],
                               by_row.state("c").detector_state["scaling"]["factor_sum"])


def test_the_row_factor_recovers_a_unit_change(wine):
    victim, profile = wine
    null = ScalingNull(profile, [], truncation=0.1)
    for factor in (0.9, 1.0, 1.15):
        estimate = row_factors(victim.X_public * factor, null.center, null.spread,
                               null.numeric).mean()
        assert estimate == pytest.approx(factor, abs=0.02)
