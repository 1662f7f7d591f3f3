"""Scale properties: bounded per-client state, and a smoke run of a benchmark (--quick)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from monitor import Monitor, MonitorConfig, Profile
from victims import load_victim

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_client_state_is_bounded_and_flat_in_history():
    victim = load_victim("cancer-logreg", seed=0)
    profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                  X_cal=victim.X_cal, y_cal=victim.y_cal)
    rng = np.random.default_rng(0)
    X = victim.X_public[rng.integers(0, len(victim.X_public), 10_000)]
    X = X + rng.normal(0, 0.05, X.shape) * victim.X_train.std(axis=0)
    for config in (MonitorConfig(), MonitorConfig(detectors=("density", "boundary", "chain"))):
        mon = Monitor(profile, config, model=victim.model)
        mon.observe("c", X[:2_000])
        at_2k = mon.state("c").nbytes()
        mon.observe("c", X[2_000:])
        at_10k = mon.state("c").nbytes()
        assert mon.verdict("c").n_queries == 10_000
        assert at_10k == at_2k  # nothing grows with history
        assert at_10k <= 16 * 1024
    prada = Monitor(profile, MonitorConfig(prada=True), model=victim.model)
    prada.observe("c", X[:2_000])
    grows_from = prada.state("c").nbytes()
    prada.observe("c", X[2_000:])
    assert prada.state("c").nbytes() > grows_from  # the baseline's state does grow


@pytest.mark.slow
def test_state_size_benchmark_quick_smoke():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import state_size
    finally:
        sys.path.remove(str(BENCHMARKS))
    result = state_size.main(["--quick", "--queries", "500", "--no-write"])
    by_config = {r["config"]: r for r in result["rows"]}
    assert set(by_config) == {"default", "with chain", "with PRADA baseline"}
    assert 0 < by_config["default"]["nbytes"] <= result["target_bytes"]
    assert by_config["with PRADA baseline"]["nbytes"] > by_config["default"]["nbytes"]
