"""The Monitor's contract: input checks, batch equals row-by-row, bounded state, robustness."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import InvalidInput, Monitor, MonitorConfig
from monitor.settings import read_config_file


def _uniform(victim, n, seed=0):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper,
                                               size=(n, victim.n_features))


def test_bad_rows_are_rejected_before_any_state_changes(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model)
    mon.observe("c", victim.X_public[:5])
    bad_nan = victim.X_public[:3].copy()
    bad_nan[1, 2] = np.nan
    cases = [
        (bad_nan, "NaN"),
        (np.full((2, 30), np.inf), "NaN or infinite"),
        (victim.X_public[:3, :10], "has 10 features"),
        (np.zeros((2, 3, 30)), "2-D"),
    ]
    for X, message in cases:
        with pytest.raises(InvalidInput, match=message):
            mon.observe("c", X)
    with pytest.raises(InvalidInput, match="outputs must be"):
        Monitor(profile).observe("c", victim.X_public[:3], outputs=np.zeros((3, 5)))
    assert mon.verdict("c").n_queries == 5
    assert mon.clients() == ["c"]


@pytest.mark.parametrize("name", ["digits-mlp", "wine-tree"])
def test_batch_path_equals_row_by_row_replay(fitted_victim, name):
    victim, profile = fitted_victim(name)
    config = MonitorConfig(detectors=("density", "boundary", "chain"), prada=True)
    rng = np.random.default_rng(1)
    public = victim.X_public[rng.integers(0, len(victim.X_public), 120)]
    X = np.vstack([public, public[:20], _uniform(victim, 150)])  # includes retries
    batch = Monitor(profile, config, model=victim.model).observe("c", X)
    one = Monitor(profile, config, model=victim.model)
    scores = np.concatenate([one.observe("c", row).row_scores for row in X])
    single = one.verdict("c")
    np.testing.assert_allclose(batch.row_scores, scores, rtol=0, atol=1e-9)
    assert (batch.flagged, batch.flag_at, batch.reason) == (single.flagged, single.flag_at,
                                                            single.reason)
    assert batch.prada == single.prada
    assert batch.detectors == single.detectors


def test_retries_add_no_evidence(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model)
    row = _uniform(victim, 1)
    verdict = mon.observe("retry", np.repeat(row, 200, axis=0))
    assert not verdict.flagged and verdict.n_queries == 200 and verdict.n_distinct == 1
    assert mon.observe("fresh", _uniform(victim, 200)).flagged


@pytest.mark.parametrize("detectors", [None, ("density", "local_density", "boundary", "chain",
                                                "block")], ids=["default", "with-block"])
def test_state_is_bounded_whatever_the_history(fitted_victim, detectors):
    from monitor.units import N_LEADERS, N_ROOTS, N_VARIANTS

    victim, profile = fitted_victim("digits-mlp")
    config = MonitorConfig() if detectors is None else MonitorConfig(detectors=detectors)
    mon = Monitor(profile, config, model=victim.model)
    rng = np.random.default_rng(0)
    mon.observe("c", rng.uniform(victim.lower, victim.upper, (1000, 64)))
    after_1k = mon.state("c").nbytes()
    mon.observe("c", rng.uniform(victim.lower, victim.upper, (9000, 64)))
    state = mon.state("c")
    assert state.n_queries == 10_000
    assert state.nbytes() == after_1k
    d = 64
    limit = (8 * config.dedup_memory + 4 * config.history
             + sum(config.windows) * len(config.detectors)  # uint8 unit evidence per test
             + 2 * (N_LEADERS + N_ROOTS) * d + 2 * N_LEADERS + 10 * N_ROOTS + 8 * N_VARIANTS
             + 2 * N_LEADERS  # label_change: the leaders' label codes (int16)
             + 4 * len(profile.exposure_["points"])  # exposure: float16 + int16 per point
             + 40 * ("block" in config.detectors)  # block: its counts (sets = leaders)
             + 64 + 8)
    assert state.nbytes() <= limit <= 16 * 1024


def test_a_failing_detector_is_counted_and_never_breaks_observe(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model)

    def broken(batch, state):
        raise RuntimeError("boom")

    mon.detectors[mon.detector_index("boundary")].pvalues = broken
    verdict = mon.observe("c", _uniform(victim, 40))
    assert mon.detector_errors == {"density": 0, "local_density": 0, "boundary": 1,
                                   "chain": 0, "label_change": 0, "block": 0}
    assert verdict.flagged  # the density detector still works
    assert verdict.n_queries == 40


def test_labels_only_outputs_without_a_model(fitted_victim):
    """Without a model and with labels only, margins are unknown: density still works."""
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile)
    X = _uniform(victim, 60)
    verdict = mon.observe("c", X, outputs=victim.model.predict(X))
    assert verdict.flagged and verdict.detectors["boundary"]["count"] == 0
    assert not verdict.detectors["boundary"]["evidence"]  # the verdict says so
    assert verdict.detectors["density"]["evidence"]


def test_reset_forgets_a_client(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model)
    assert mon.observe("c", _uniform(victim, 60)).flagged
    mon.reset("c")
    assert mon.clients() == [] and not mon.verdict("c").flagged


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_round_trips_and_rejects_unknown_keys(tmp_path, suffix):
    config = MonitorConfig(alpha=0.001, detectors=("density",), score_threshold=4.5)
    path = tmp_path / f"c{suffix}"
    config.save(path)
    assert MonitorConfig.load(path) == config
    assert read_config_file(path)["monitor"]["alpha"] == 0.001
    with pytest.raises(ValueError, match="unknown monitor config key"):
        MonitorConfig.from_dict({"windws": [10]})
    assert MonitorConfig.from_dict(read_config_file(path)["monitor"]) == config
    with pytest.raises(ValueError, match="alpha must be"):
        MonitorConfig(alpha=2.0)
    with pytest.raises(ValueError, match="detectors must be among"):
        MonitorConfig(detectors=("psychic",))


def test_threshold_means_what_it_says():
    """The analytic bound: at the flag sum, horizon x tests x P[window sum >= it] <= alpha
    under uniform p-values, and one quantum less would not be; a Monte Carlo of the window
    sum agrees with the convolution."""
    from monitor.evidence import WindowTest, quantise, uniform_pmf, window_survival

    test = WindowTest("density", window=16, truncation=0.1, horizon=10_000, n_tests=4,
                      alpha=0.01)
    survival = window_survival(uniform_pmf(0.1), 16)
    t = test.evidence.flag_sum
    assert 4 * 10_000 * survival[t] <= 0.01 < 4 * 10_000 * survival[t - 1]
    rng = np.random.default_rng(0)
    sums = quantise(rng.uniform(size=(200_000, 16)), 0.1).sum(axis=1, dtype=np.int64)
    for level in (50, 100, 200):  # quanta
        assert abs(np.mean(sums >= level) - survival[level]) < 4e-3


def test_group_evidence_sees_an_attack_split_across_sybils(fitted_victim):
    """Twenty sybils each send 3 uniform queries: no client can be flagged, the group is."""
    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model, group_of=lambda cid: cid.split("/")[0])
    X = _uniform(victim, 60)
    for k in range(20):
        verdict = mon.observe(f"tenant-a/sybil-{k}", X[3 * k:3 * (k + 1)])
        assert not verdict.flagged
    assert verdict.group["flagged"] and verdict.group["group_id"] == "tenant-a"
    rng = np.random.default_rng(3)
    for k in range(8):  # benign tenant: public records spread over eight clients
        rows = victim.X_public[rng.integers(0, len(victim.X_public), 40)]
        assert not mon.observe(f"tenant-b/user-{k}", rows).group["flagged"]
    assert sorted(mon.groups()) == ["tenant-a", "tenant-b"]
    assert mon.group_verdict("tenant-a").flagged
    assert len(mon.clients()) == 28


def test_observe_many_equals_observe_per_client(fitted_victim):
    """Interleaved rows of several clients in one call give each client's own verdict."""
    victim, profile = fitted_victim("digits-mlp")
    config = MonitorConfig(detectors=("density", "boundary", "chain"))
    rng = np.random.default_rng(5)
    X = np.vstack([victim.X_public[rng.integers(0, len(victim.X_public), 150)],
                   _uniform(victim, 150)])
    ids = rng.choice(np.array(["a", "b", "c"], dtype=object), size=len(X))
    many = Monitor(profile, config, model=victim.model).observe_many(ids, X)
    one = Monitor(profile, config, model=victim.model)
    for cid in ("a", "b", "c"):
        single = one.observe(cid, X[ids == cid])
        assert (many[cid].flag_at, many[cid].n_queries, many[cid].detectors) == (
            single.flag_at, single.n_queries, single.detectors)
        np.testing.assert_allclose(many[cid].row_scores, single.row_scores, atol=1e-9)
    with pytest.raises(InvalidInput, match="one id per row"):
        one.observe_many(ids[:-1], X)


def test_monitor_accepts_a_config_table(fitted_victim):
    _, profile = fitted_victim("wine-tree")
    assert Monitor(profile, {"alpha": 0.001}).config.alpha == 0.001
    with pytest.raises(ValueError, match="unknown monitor config key"):
        Monitor(profile, {"alpah": 0.001})
