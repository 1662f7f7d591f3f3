"""Thread limits (issue 14): the monitor's numerical calls run under threadpoolctl limits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from monitor import Profile
from monitor.serving.launch import WorkerOptions
from monitor.threads import available_cpus, default_threads, limit_threads


def widest_pool() -> int:
    return max((pool["num_threads"] for pool in threadpool_info()), default=1)


def test_limits_apply_inside_the_block_and_are_restored():
    np.ones((8, 8)) @ np.ones((8, 8))  # BLAS loaded
    before = widest_pool()
    with limit_threads(1):
        assert widest_pool() == 1
    assert widest_pool() == before
    with pytest.raises(ValueError, match="at least 1"):
        with limit_threads(0):
            pass


def test_defaults_leave_a_core_free_and_share_cores_among_workers():
    assert 1 <= default_threads() <= max(1, available_cpus() - 1)
    assert default_threads(workers=available_cpus() * 4) == 1


def test_a_profile_is_the_same_under_any_thread_limit():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    fitted = []
    for threads in (1, None):
        with limit_threads(threads):
            fitted.append(Profile(n_folds=2, drift_draws=2, seed=0).fit(model, X, y))
    one, wide = (p.calibration_["density"]["statistic"] for p in fitted)
    np.testing.assert_allclose(one, wide, rtol=1e-12)  # BLAS may sum in another order


@pytest.mark.slow
def test_commands_state_their_thread_options():
    for command in ("profile", "serve", "proxy"):
        out = subprocess.run([sys.executable, "-m", "monitor.cli", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert "--threads" in out, command
    with pytest.raises(ValueError):
        WorkerOptions(settings={}, salt="s", threads=0)
