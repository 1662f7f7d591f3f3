"""The newer attack families: each really queries the oracle within budget, its queries
have their defining property, and its surrogate beats a trivial baseline."""

import numpy as np
import pytest

from attacks.fidelity import agreement, fidelity, fidelity_curve
from attacks.oracle import Oracle
from attacks.registry import ATTACKS, CLASSIFIERS, REGRESSORS, run_attack
from victims import ALL_VICTIMS, REGRESSION_VICTIMS, load_victim

NEW_CLASSIFICATION = ("mixup", "seed-noise", "fgsm-augmentation", "feature-sweep",
                      "marginals-pool", "in-distribution-thief", "in-distribution-thief-jitter")
REGRESSION = ("regression-equation-solving", "regression-retraining")


def _run(name, victim_name, budget, mode="label", seed=0):
    v = load_victim(victim_name, mode)
    oracle = Oracle(v.answer, budget)
    result = run_attack(name, v, budget=budget, seed=seed, oracle=oracle)
    assert 0 < result.n_queries <= budget
    np.testing.assert_array_equal(result.stream.X, oracle.queries)
    assert result.stream.kind == name and result.stream.is_attack
    return v, result


def _chance(v):
    labels = v.model.predict(v.X_public)
    return np.unique(labels, return_counts=True)[1].max() / len(labels)


def _in_box(v, X):
    return np.all((X >= v.lower - 1e-9) & (X <= v.upper + 1e-9))


def test_registry_keeps_tasks_apart():
    for name, spec in ATTACKS.items():
        assert set(spec.applies_to) <= {*ALL_VICTIMS, "digits-softmax", "wine-softmax"}, name
        on_regressors = set(spec.applies_to) & set(REGRESSION_VICTIMS)
        if name in REGRESSION:
            assert set(spec.applies_to) <= set(REGRESSORS) and "label" not in spec.output_modes
        else:
            assert not on_regressors, name
    for name in NEW_CLASSIFICATION:
        assert ATTACKS[name].applies_to == CLASSIFIERS and "label" in ATTACKS[name].output_modes
    assert {"iris-knn", "synth40-hgb", "cancer-forest"} <= set(ATTACKS["jbda"].applies_to)
    with pytest.raises(ValueError, match="regressor"):
        load_victim("diabetes-hgb", "label")


@pytest.mark.parametrize("name", NEW_CLASSIFICATION)
def test_new_attacks_are_seeded(name):
    _, a = _run(name, "wine-tree", 60, seed=3)
    _, b = _run(name, "wine-tree", 60, seed=3)
    _, c = _run(name, "wine-tree", 60, seed=4)
    np.testing.assert_array_equal(a.stream.X, b.stream.X)
    assert not np.array_equal(a.stream.X, c.stream.X)


def test_mixup_rows_are_convex_mixtures_of_public_pairs():
    v, r = _run("mixup", "wine-tree", 300)
    pairs, lam = r.stream.meta["pairs"], r.stream.meta["lam"]
    P = v.X_public
    np.testing.assert_allclose(r.stream.X, lam[:, None] * P[pairs[:, 0]]
                               + (1 - lam[:, None]) * P[pairs[:, 1]])
    assert np.all((lam >= 0) & (lam <= 1)) and np.all(pairs[:, 0] != pairs[:, 1])
    assert _in_box(v, r.stream.X)
    assert np.mean(v.y_public[pairs[:, 0]] != v.y_public[pairs[:, 1]]) > 0.4  # often cross-class
    assert 0.3 < lam.mean() < 0.7 and lam.std() > 0.2  # Uniform(0, 1)


def test_seed_noise_rows_are_few_seeds_plus_scaled_noise():
    v, r = _run("seed-noise", "cancer-logreg", 500)
    seed = r.stream.meta["seed"]
    assert len(np.unique(seed)) <= 30 and _in_box(v, r.stream.X)
    sd = v.X_public.std(axis=0)
    z = (r.stream.X - v.X_public[seed]) / sd
    unclipped = (r.stream.X > v.lower) & (r.stream.X < v.upper)
    assert 0.25 < z[unclipped].std() < 0.33
    assert not {x.tobytes() for x in r.stream.X} & {x.tobytes() for x in v.X_public}


def test_fgsm_augmentation_steps_eps_std_from_earlier_points():
    v, r = _run("fgsm-augmentation", "cancer-logreg", 160)
    X = r.stream.X
    public = {x.tobytes() for x in v.X_public}
    assert all(x.tobytes() in public for x in X[:20])  # the 20 seeds are real records
    step = 0.2 * v.X_public.std(axis=0)
    assert r.stream.meta["rounds"] == 3  # 20 -> 40 -> 80 -> 160
    for lo, hi in ((20, 40), (40, 80), (80, 160)):
        new, prev = X[lo:hi], X[:lo]
        up = np.clip(prev + step, v.lower, v.upper)[None]
        down = np.clip(prev - step, v.lower, v.upper)[None]
        ok = np.isclose(new[:, None], up) | np.isclose(new[:, None], down)
        assert np.all(ok.all(axis=2).any(axis=1)), (lo, hi)  # a +-eps*std child of a point


def test_fgsm_steps_climb_the_surrogate_loss():
    from attacks.augmentation import fgsm_augmentation
    from attacks.oracle import answer_labels
    from attacks.surrogate import fit_surrogate

    v = load_victim("cancer-logreg", "label")
    seeds = v.X_public[:30]
    oracle = Oracle(v.answer, 60)
    r = fgsm_augmentation(oracle, seeds, (v.lower, v.upper), 60, np.random.default_rng(0),
                          v.classes, scale=v.X_public.std(axis=0), surrogate="logreg")
    sub = fit_surrogate(seeds, answer_labels(r.answers[:30], v.classes), "logreg", 0)
    y = np.searchsorted(sub.classes_, r.answers[:30])
    p_seed = sub.predict_proba(seeds)[np.arange(30), y]
    p_step = sub.predict_proba(r.stream.X[30:60])[np.arange(30), y]
    assert np.all(p_step <= p_seed + 1e-12) and np.mean(p_step < p_seed) > 0.9


def test_feature_sweep_rows_differ_from_their_seed_in_exactly_one_feature():
    v, r = _run("feature-sweep", "wine-tree", 1000)
    meta = r.stream.meta
    seeds, seed, feature = meta["seeds"], meta["seed"], meta["feature"]
    assert len(seeds) == 20
    public = {x.tobytes() for x in v.X_public}
    assert all(s.tobytes() in public for s in seeds)
    diff = r.stream.X != seeds[seed]
    assert np.all(diff.sum(axis=1) == 1)
    assert np.all(diff[np.arange(r.n_queries), feature])
    grid = np.linspace(v.lower, v.upper, 10, axis=1)  # (d, 10): values across the box
    vals = r.stream.X[np.arange(r.n_queries), feature]
    assert np.all(np.isclose(vals[:, None], grid[feature]).any(axis=1))
    # interleaved: each (feature, value) goes to every seed before the next value
    assert len(set(seed[:15].tolist())) >= 14 and len(set(feature[:100].tolist())) == 1


def test_feature_sweep_stops_when_the_sweep_is_done():
    v, r = _run("feature-sweep", "iris-knn", 2000)
    assert r.n_queries < 20 * 4 * 10 and r.n_queries > 20 * 4 * 8


def test_marginals_pool_takes_each_value_from_its_public_marginal():
    v, r = _run("marginals-pool", "cancer-logreg", 400)
    X, P = r.stream.X, v.X_public
    assert all(np.isin(X[:, j], P[:, j]).all() for j in range(v.n_features))
    assert np.mean([x.tobytes() in {p.tobytes() for p in P} for x in X]) < 0.05
    # correlations are broken: the strongly correlated radius / perimeter pair decorrelates
    assert np.corrcoef(P[:, 0], P[:, 2])[0, 1] > 0.9 and abs(np.corrcoef(X[:, 0], X[:, 2])[0, 1]) < 0.2


@pytest.mark.parametrize("jitter", [False, True])
def test_in_distribution_thief_sends_real_records_first_without_replacement(jitter):
    name = "in-distribution-thief" + ("-jitter" if jitter else "")
    v, r = _run(name, "wine-tree", 150)
    X, P = r.stream.X, v.X_public
    n_pub = len(P)
    assert n_pub < 150
    public = [p.tobytes() for p in P]
    first = [x.tobytes() for x in X[:n_pub]]
    assert sorted(first) == sorted(public)  # every public record once
    sd = P.std(axis=0)
    nearest = (np.abs(X[n_pub:, None] - P[None]) / sd).max(axis=2).argmin(axis=1)
    dev = np.abs(X[n_pub:] - P[nearest])
    if jitter:
        assert np.all(dev <= 0.06 * sd + 1e-12) and np.all(dev.max(axis=1) > 0)
    else:
        assert np.all(dev == 0)


@pytest.mark.parametrize("name", NEW_CLASSIFICATION)
def test_new_attacks_beat_the_majority_baseline(name):
    v, r = _run(name, "cancer-logreg", 300)
    public = agreement(r.surrogate, v, v.X_public)
    assert public >= _chance(v) + 0.2, (public, _chance(v))
    curve = fidelity_curve(r, v, [20, r.n_queries], n_uniform=200)
    assert curve["public"].iloc[-1] == pytest.approx(public)


@pytest.mark.parametrize("mode", ["proba", "rounded"])
def test_regression_equation_solving_recovers_the_ridge_exactly(mode):
    v, r = _run("regression-equation-solving", "diabetes-ridge", 50, mode)
    assert r.n_queries == v.n_features + 1
    scores = fidelity(r.surrogate, v, n_uniform=500)
    floor = 1 - 1e-9 if mode == "proba" else 0.9999
    assert scores["public"] >= floor and scores["uniform"] >= floor, scores
    if mode == "proba":
        np.testing.assert_allclose(r.surrogate.predict(v.X_public), v.answer(v.X_public))
        assert fidelity_curve(r, v, [5])["public"].iloc[0] < 0.99  # too few equations


@pytest.mark.parametrize("victim_name", REGRESSION_VICTIMS)
def test_regression_retraining_beats_a_constant(victim_name):
    v, r = _run("regression-retraining", victim_name, 300, "proba")
    assert r.answers.ndim == 1 and _in_box(v, r.stream.X)
    curve = fidelity_curve(r, v, [30, 300], n_uniform=200)
    assert curve["public"].iloc[-1] >= 0.85, curve  # R^2; a constant scores <= 0
    assert curve["public"].iloc[-1] > curve["public"].iloc[0]


def test_regression_attacks_need_real_values():
    v = load_victim("cancer-logreg", "label")
    with pytest.raises(ValueError, match="output mode"):
        run_attack("regression-retraining", v)
    from attacks.regression import regression_equation_solving

    p = load_victim("cancer-logreg", "proba")
    with pytest.raises(ValueError, match="real-valued"):
        regression_equation_solving(Oracle(p.answer, 100), (p.lower, p.upper),
                                    np.random.default_rng(0))
