"""The ``block`` detector: calibrated on benign clients whose sets are not like the whole
reference (one class, sorted, drifted, rounded, prototypes), and able to see an attack whose
queries are each plausible (noisy copies of seed records) where the default monitor cannot."""

from __future__ import annotations

import numpy as np
import pytest

from attacks.benign import BENIGN_BEHAVIOURS
from attacks.registry import run_attack
from monitor import Monitor, MonitorConfig
from monitor.detectors import Batch
from monitor.detectors.block import BLOCK, BlockDetector
from monitor.evidence import build_window_tests

ALPHA, N_CLIENTS = 0.01, 100
BLOCK_ONLY = MonitorConfig(alpha=ALPHA, detectors=("block",))
KINDS = ("benign-random", "benign-one-class", "benign-two-class", "benign-sorted-batch",
         "benign-drift", "benign-rounded", "benign-prototype")


def _flagged(monitor, streams) -> int:
    ids = np.concatenate([[s.client_id] * len(s.X) for s in streams]).astype(object)
    verdicts = monitor.observe_many(ids, np.concatenate([s.X for s in streams]))
    return sum(v.flagged for v in verdicts.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cancer-logreg", "digits-mlp", "wine-tree"])
@pytest.mark.parametrize("kind", KINDS)
def test_benign_sets_are_flagged_at_most_twice_alpha(fitted_victim, name, kind):
    victim, profile = fitted_victim(name)
    rng = np.random.default_rng(2024)
    n = 400 if kind == "benign-sorted-batch" else 200
    streams = [BENIGN_BEHAVIOURS[kind](victim, n, rng, client_id=f"{kind}-{i}")
               for i in range(N_CLIENTS)]
    flagged = _flagged(Monitor(profile, BLOCK_ONLY, model=victim.model), streams)
    print(f"{name} {kind}: {flagged} of {N_CLIENTS} flagged by block alone")
    assert flagged <= 2 * ALPHA * N_CLIENTS


@pytest.mark.slow
@pytest.mark.parametrize(("name", "attack", "floor"), [
    ("cancer-logreg", "seed-noise", 8),
    ("wine-tree", "seed-noise", 8),
])
def test_plausible_attacks_are_seen_as_sets(fitted_victim, name, attack, floor):
    """Power floor: at least ``floor`` of 10 attack seeds flagged by the default detectors
    (``block`` among them), where the others alone flag none (measured: 10 of 10 with block,
    0 of 10 without, on both victims)."""
    victim, profile = fitted_victim(name)
    others = tuple(d for d in MonitorConfig().detectors if d != "block")
    assert "block" in MonitorConfig().detectors
    counts = {}
    for label, config in (("default", MonitorConfig(alpha=ALPHA, detectors=others)),
                          ("with block", MonitorConfig(alpha=ALPHA))):
        hits = 0
        for seed in range(10):
            X = run_attack(attack, victim, seed=seed).stream.X
            monitor = Monitor(profile, config, model=victim.model)
            hits += monitor.observe_many(np.array(["a"] * len(X), dtype=object), X)["a"].flagged
        counts[label] = hits
    print(f"{name} {attack}: {counts}")
    assert counts["with block"] >= floor
    assert counts["default"] <= 2


def test_one_pvalue_per_disjoint_block_and_batch_equals_replay(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    X = run_attack("seed-noise", victim, seed=0).stream.X[:5 * BLOCK]
    whole = Monitor(profile, BLOCK_ONLY, model=victim.model)
    whole.observe("c", X)
    rows = Monitor(profile, BLOCK_ONLY, model=victim.model)
    for start in range(0, len(X), 7):
        rows.observe("c", X[start:start + 7])
    assert whole.verdict("c").score == rows.verdict("c").score
    assert whole.state("c").history.tolist() == rows.state("c").history.tolist()
    # the detector alone: p = 1 except on the units closing a block
    detector = BlockDetector(profile)
    Z = profile.transform(X)
    p = detector.pvalues(Batch(X=X, Z=Z, proba=None, leaders=np.zeros((0, Z.shape[1]),
                                                                        np.float16)),
                         detector.initial_state())
    closing = (np.arange(len(X)) + 1) % BLOCK == 0
    assert (p[~closing] == 1).all() and (p[closing] < 1).all()
    # outside a client's stream (fit time) there is no evidence
    assert (detector.pvalues(Batch(X=X, Z=Z, proba=None)) == 1).all()


def test_window_tables_count_one_value_per_block(fitted_victim):
    _, profile = fitted_victim("cancer-logreg")
    config = MonitorConfig(detectors=("density", "block"))
    monitor = Monitor(profile, config)
    tests = build_window_tests(monitor.detectors, config, profile)
    values = {t.key: t.values for t in tests}
    assert values["block.w8"] == 1 and values["block.w32"] == 2 and values["block.w128"] == 8
    assert values["density.w32"] is None


def test_profile_round_trip_keeps_the_block_calibration(fitted_victim, tmp_path):
    from monitor import Profile

    _, profile = fitted_victim("cancer-logreg")
    loaded = Profile.load(profile.save(tmp_path / "p"))
    for key, value in profile.calibration_["block"].items():
        np.testing.assert_array_equal(loaded.calibration_["block"][key], value)


def test_a_block_of_rounded_units_carries_no_evidence(fitted_victim):
    """Every unit on one coarse grid (here: integers): p = 1 for the block, even across
    calls; the same rows unrounded keep their evidence."""
    victim, profile = fitted_victim("cancer-logreg")
    X = run_attack("seed-noise", victim, seed=0).stream.X[:4 * BLOCK]
    detector = BlockDetector(profile)
    assert 0 in detector.grids
    for rows, rounded in ((X, False), (np.round(X), True)):
        state = detector.initial_state()
        leaders = np.zeros((0, profile.reference_.shape[1]), np.float16)
        p = []
        for start in range(0, len(rows), 5):  # the block's grid counts carried across calls
            chunk = rows[start:start + 5]
            Z = profile.transform(chunk)
            p.append(detector.pvalues(Batch(X=chunk, Z=Z, proba=None, leaders=leaders), state))
            leaders = np.concatenate([leaders, Z.astype(np.float16)])[-48:]
        p = np.concatenate(p)
        assert (p == 1).all() == rounded
