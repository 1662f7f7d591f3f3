"""Statistical calibration test: the configured level is the benign false-alarm rate.

Many benign clients resample records the victim never trained on (the public split, which
the profile's calibration never saw). At a configured alpha, the fraction of them flagged
over their whole stream must be at most 2 * alpha. The second configuration removes the
tolerance for drift (tolerated rate = nominal rate) and sets the horizon to the stream length,
so the bound is tight: miscalibrated p-values would break it.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor import Monitor, MonitorConfig

N_CLIENTS, N_QUERIES = 300, 200

CONFIGS = {
    "default (alpha=0.01)": MonitorConfig(alpha=0.01),
    "tight (alpha=0.05, no drift tolerance, horizon = stream)": MonitorConfig(
        alpha=0.05, tolerated_rate=0.01, broad_tolerated_rate=0.1, horizon=N_QUERIES),
}


@pytest.mark.parametrize("name", ["cancer-logreg", "wine-tree", "digits-mlp"])
@pytest.mark.parametrize("label", list(CONFIGS))
def test_fraction_of_benign_clients_flagged_is_at_most_twice_alpha(fitted_victim, name, label):
    victim, profile = fitted_victim(name)
    config = CONFIGS[label]
    rng = np.random.default_rng(2024)
    rows = rng.integers(0, len(victim.X_public), size=(N_CLIENTS, N_QUERIES))
    X = victim.X_public[rows.ravel()]
    ids = np.repeat(np.array([f"benign-{i}" for i in range(N_CLIENTS)], dtype=object), N_QUERIES)
    verdicts = Monitor(profile, config, model=victim.model).observe_many(ids, X)
    flagged = sum(v.flagged for v in verdicts.values())
    print(f"{name} {label}: {flagged} of {N_CLIENTS} benign clients flagged")
    assert len(verdicts) == N_CLIENTS
    assert flagged / N_CLIENTS <= 2 * config.alpha
