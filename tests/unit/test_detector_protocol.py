"""The detector protocol: one contract every registered detector meets, and a toy detector
added as a new detector would be (one module, tests/toy_detector.py, plus one registry line).

The contract, for each detector in the registry (like River's generic estimator checks):
scoring does not mutate its input; one p-value in (0, 1] per distinct query; stateful
detectors keep only their declared keys and bounded state; a batch gives the same p-values as
replaying it row by row; calibration is super-uniform on held-out records (stateless
detectors); and the profile's calibration survives save/load.
"""

from __future__ import annotations

import numpy as np
import pytest
from toy_detector import MaxCoordinateDetector

from monitor import Monitor, MonitorConfig, Profile
from monitor.detectors import REGISTRY, Batch, Detector, register_detector
from monitor.stores import open_store


def _batch(profile, victim, X):
    return Batch(X=X, Z=profile.transform(X), proba=victim.predict_proba(X))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_detector_meets_the_contract(fitted_victim, name, tmp_path):
    victim, profile = fitted_victim("cancer-logreg")
    cls = REGISTRY[name]
    assert isinstance(cls(profile, MonitorConfig()), Detector)
    detector = cls(profile, MonitorConfig())
    rng = np.random.default_rng(0)
    X = victim.X_public[rng.integers(0, len(victim.X_public), 300)] + rng.normal(
        0, 0.01, (300, victim.n_features))
    batch = _batch(profile, victim, X)
    if getattr(cls, "needs_stream", False):  # e.g. chain: distances from the unit tracker
        batch = Batch(batch.X, batch.Z, batch.proba, nearest_leader=np.linspace(0.5, 5, 300))
    before = batch.X.copy(), batch.Z.copy(), batch.proba.copy()

    state = detector.initial_state()
    assert set(state) == set(cls.state_keys) and cls.stateful == bool(cls.state_keys)
    p = detector.pvalues(batch, state)
    for original, now in zip(before, (batch.X, batch.Z, batch.proba), strict=True):
        np.testing.assert_array_equal(original, now)  # scoring does not mutate its input
    assert p.shape == (300,) and np.all((p > 0) & (p <= 1))
    assert set(state) == set(cls.state_keys)

    size = sum(a.nbytes for a in state.values())
    detector.pvalues(_batch(profile, victim, np.repeat(X, 10, axis=0)), state)
    assert sum(a.nbytes for a in state.values()) == size  # bounded, whatever the history

    replayed_state = detector.initial_state()
    one_by_one = np.concatenate([detector.pvalues(batch.take(np.array([i])), replayed_state)
                                 for i in range(len(X))])
    np.testing.assert_allclose(p, one_by_one, rtol=0, atol=1e-12)

    if not cls.stateful:  # held-out records: P(p <= a) <= a up to sampling slack
        public = detector.pvalues(_batch(profile, victim, victim.X_public))
        assert np.mean(public <= 0.1) <= 0.1 + 3 * np.sqrt(0.09 / len(public)) + 0.02

    profile.save(tmp_path / "p")
    loaded = Profile.load(tmp_path / "p")
    for key, values in profile.calibration_[name].items():
        np.testing.assert_array_equal(loaded.calibration_[name][key], values)


@pytest.fixture
def toy(monkeypatch):
    """The toy detector registered for one test only."""
    monkeypatch.setitem(REGISTRY, MaxCoordinateDetector.name, MaxCoordinateDetector)
    register_detector(MaxCoordinateDetector)  # the one registry line a new detector needs
    return MaxCoordinateDetector


def test_a_new_detector_is_one_module_and_one_registry_line(toy, victim):
    profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                  X_cal=victim.X_cal, y_cal=victim.y_cal)
    assert "statistic" in profile.calibration_[toy.name]  # calibrated by Profile.fit
    config = MonitorConfig(detectors=("density", toy.name))
    store = open_store("memory://")
    monitor = Monitor(profile, config, model=victim.model, store=store)
    rng = np.random.default_rng(1)
    far = rng.uniform(victim.lower, victim.upper, (80, victim.n_features)) * 3
    verdict = monitor.observe("mallory", far)
    assert set(verdict.detectors) == {"density", toy.name}
    assert verdict.flagged and verdict.detectors[toy.name]["score"] > 0
    state = monitor.state("mallory")  # its declared state went through the store and back
    assert state.detector_state[toy.name]["largest"][0] > 3
    assert monitor.verdict("alice").detectors[toy.name]["score"] == 0.0
    with pytest.raises(ValueError, match="unknown: psychic"):
        MonitorConfig(detectors=("density", "psychic"))
