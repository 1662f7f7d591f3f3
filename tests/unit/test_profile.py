"""The reference profile: honest calibration, and persistence without pickle."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from monitor import InvalidInput, Monitor, Profile
from monitor.conformal import conformal_pvalues
from monitor.detectors import Batch, BoundaryDetector, DensityDetector
from monitor.geometry import margin_closeness
from victims import VICTIMS


def _public_pvalues(victim, profile):
    X = victim.X_public
    batch = Batch(X=X, Z=profile.transform(X), proba=victim.predict_proba(X))
    return DensityDetector(profile).pvalues(batch), BoundaryDetector(profile).pvalues(batch)


@pytest.mark.parametrize("name", VICTIMS)
@pytest.mark.parametrize("cross_fit_only", [False, True])
def test_pvalues_of_held_out_records_are_calibrated(fitted_victim, name, cross_fit_only):
    """Public records (never trained on) get super-uniform p-values: P(p <= a) is about a."""
    victim, profile = fitted_victim(name, cross_fit_only)
    for p in _public_pvalues(victim, profile):
        for level in (0.05, 0.1, 0.25):
            # binomial sampling slack for ~160-540 public records, plus a small margin
            slack = 3 * np.sqrt(level * (1 - level) / len(p)) + 0.02
            assert np.mean(p <= level) <= level + slack, (name, level, np.mean(p <= level))


def test_naive_calibration_on_training_points_would_be_dishonest(fitted_victim):
    """The reason for cross-fitting: the victim's own training margins are optimistic."""
    victim, profile = fitted_victim("digits-mlp")
    naive = np.sort(margin_closeness(victim.predict_proba(victim.X_train)))
    public = margin_closeness(victim.predict_proba(victim.X_public))
    naive_rate = np.mean(conformal_pvalues(public, naive) <= 0.01)
    honest_rate = np.mean(conformal_pvalues(public, profile.calibration_["boundary"]["statistic"]) <= 0.01)
    assert naive_rate > 5 * max(honest_rate, 0.01)


def test_save_and_load_round_trip_without_pickle(fitted_victim, tmp_path):
    victim, profile = fitted_victim("wine-tree")
    profile.save(tmp_path / "p")
    with zipfile.ZipFile(tmp_path / "p" / "arrays.npz") as z:
        for name in z.namelist():  # every array loads with pickle disabled
            with z.open(name) as f:
                np.lib.format.read_array(f, allow_pickle=False)
    loaded = Profile.load(tmp_path / "p")
    assert loaded.boundary_kind_ == "tree"
    rng = np.random.default_rng(0)
    X = np.vstack([victim.X_public[:50], rng.uniform(victim.lower, victim.upper, (60, 13))])
    a = Monitor(profile).observe("c", X)
    b = Monitor(loaded).observe("c", X)
    np.testing.assert_array_equal(a.row_scores, b.row_scores)
    assert a.flag_at == b.flag_at


def test_load_rejects_other_format_versions_and_non_profiles(fitted_victim, tmp_path):
    _, profile = fitted_victim("cancer-logreg")
    profile.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "profile.json").read_text())
    meta["format_version"] = 999
    (tmp_path / "p" / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInput, match="format version 999"):
        Profile.load(tmp_path / "p")
    with pytest.raises(InvalidInput, match="not a profile folder"):
        Profile.load(tmp_path)


def test_fit_validates_its_inputs(fitted_victim):
    victim, _ = fitted_victim("cancer-logreg")
    with pytest.raises(InvalidInput, match="predict_proba"):
        Profile().fit(object(), victim.X_train)
    bad = victim.X_train.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        Profile().fit(victim.model, bad)
    with pytest.raises(InvalidInput, match="features"):
        Profile().fit(victim.model, victim.X_train, X_cal=victim.X_cal[:, :5])


def test_fit_can_be_called_on_the_class_with_default_parameters(fitted_victim):
    victim, fitted = fitted_victim("wine-tree")
    profile = Profile.fit(victim.model, victim.X_train, victim.y_train,
                          X_cal=victim.X_cal, y_cal=victim.y_cal)
    np.testing.assert_array_equal(profile.calibration_["density"]["statistic"],
                                  fitted.calibration_["density"]["statistic"])


@pytest.mark.parametrize("kind", ["proba", "decision", "tree", "regressor"])
@pytest.mark.parametrize("calibration, labels, cross_fit", [
    (True, True, True), (True, True, False), (False, True, True), (False, False, True)])
def test_model_calls_is_what_fitting_calls(kind, calibration, labels, cross_fit):
    """issue 26: the profile command's progress bar read 128/33 model calls; the count
    Profile.model_calls gives is the number of model calls fit really makes (counted on the
    model), for each way the boundary detector gets margins."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    from monitor.named_features import count_calls, with_feature_names

    make = make_regression if kind == "regressor" else make_classification
    X, y = make(240, 4, random_state=0)
    model = {"proba": LogisticRegression(), "decision": LinearSVC(),
             "tree": DecisionTreeClassifier(max_depth=3), "regressor": Ridge()}[kind]
    model.fit(X[:160], y[:160])
    profile = Profile(n_folds=3, drift_draws=4, cross_fit=cross_fit, exposure_points=40)
    calls: list[str] = []
    X_cal, y_cal = (X[160:], y[160:]) if calibration else (None, None)
    # rows without missing values: the model is probed with NaN once (answered by the tree,
    # which takes missing values; refused by the others)
    with count_calls(calls.append) as key:
        profile.fit(with_feature_names(model, calls=key), X[:160], y[:160] if labels else None,
                    X_cal=X_cal, y_cal=y_cal)
    probes = int(kind == "tree")
    assert len(calls) == profile.model_calls(model, calibration, labels) + probes, calls


def test_model_calls_counts_the_margins_on_grids_that_wipe_a_column_out():
    """Rounded to 1 decimal, a column of spread 0.014 is wiped out: the profile asks the model
    for margins on each split rounded and truncated to such a grid, and the estimate made before fitting
    (the profile command's progress bar) counts them from the rows."""
    from sklearn.linear_model import LogisticRegression

    from monitor.features import FeatureSchema
    from monitor.named_features import count_calls, with_feature_names

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(0.1, 0.014, 240), rng.normal(50, 10, (240, 2))]).round(4)
    y = (X[:, 1] > 50).astype(int)
    model = LogisticRegression().fit(X[:160], y[:160])
    profile = Profile(n_folds=3, drift_draws=2)
    rows = FeatureSchema.fit(X).rows(X, "rows")
    before = profile.model_calls(model, calibration=True, rows=rows)
    calls: list[str] = []
    with count_calls(calls.append) as key:
        profile.fit(with_feature_names(model, calls=key), X[:160], y[:160],
                    X_cal=X[160:], y_cal=y[160:])
    assert sorted(profile.wiped_calibration_) == [0, 1]
    assert len(calls) == before == profile.model_calls(model, calibration=True)
    assert before == Profile(n_folds=3, drift_draws=2).model_calls(model, True) + 2 * 2 * 4
