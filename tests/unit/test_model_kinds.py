"""Models beyond probability classifiers: regressors (values out, boundary off, exposure as
R²), classifiers with decision_function only (decision margins) and with labels only (no
boundary evidence, and the verdict and the notes say so)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeRegressor

from attacks.registry import run_attack
from monitor import InvalidInput, Monitor, Profile
from monitor.analyze import analyze_log
from monitor.detectors import Batch, BoundaryDetector
from monitor.logs import read_log
from victims import REGRESSION_VICTIMS, load_victim


def _public_clients(v, n_clients: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [v.X_public[rng.choice(len(v.X_public), size=n, replace=False)]
            for _ in range(n_clients)]


@pytest.fixture(scope="module")
def regressors():
    out = {}
    for name in REGRESSION_VICTIMS:
        v = load_victim(name)
        out[name] = (v, Profile(seed=0).fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal,
                                            y_cal=v.y_cal))
    return out


@pytest.mark.parametrize("name", REGRESSION_VICTIMS)
def test_regressor_profile_and_benign_clients(regressors, name, tmp_path):
    v, profile = regressors[name]
    assert (profile.task_, profile.output_kind_, profile.boundary_kind_) == \
        ("regression", "values", "none")
    assert profile.classes_.size == 0 and "values" in profile.exposure_
    mon = Monitor(profile, model=v.model)
    assert mon.evidence_notes("values")[0].startswith("boundary: off for a regressor")
    for i, X in enumerate(_public_clients(v, 6, 60)):
        verdict = mon.observe(f"benign-{i}", X, v.answer(X))
        assert not verdict.flagged, verdict.reason
        assert not verdict.detectors["boundary"]["evidence"]
        assert 0.0 <= verdict.exposure <= 1.0
    profile.save(tmp_path / "p")
    loaded = Profile.load(tmp_path / "p")
    assert loaded.task_ == "regression"
    X = v.X_public[:30]
    a, b = Monitor(profile).observe("c", X, v.answer(X)), Monitor(loaded).observe("c", X, v.answer(X))
    np.testing.assert_array_equal(a.row_scores, b.row_scores)
    assert a.exposure == b.exposure


def test_tramer_equation_solving_on_a_linear_regressor_is_flagged(regressors):
    v, profile = regressors["diabetes-ridge"]
    result = run_attack("regression-equation-solving", v, seed=0)
    assert np.allclose(result.surrogate.predict(v.X_public), v.answer(v.X_public))  # it works
    verdict = Monitor(profile).observe("thief", result.stream.X, v.answer(result.stream.X))
    assert verdict.flagged and verdict.flag_at < len(result.stream.X), verdict.reason
    rng = np.random.default_rng(1)
    U = rng.uniform(v.lower, v.upper, (100, v.n_features))
    assert Monitor(profile).observe("uniform", U, v.answer(U)).flagged


def test_regressor_exposure_grows_with_what_the_answers_reveal(regressors):
    v, profile = regressors["diabetes-ridge"]
    mon = Monitor(profile)
    few = mon.observe("c", v.X_public[:5], v.answer(v.X_public[:5])).exposure
    many = mon.observe("c", v.X_public[5:], v.answer(v.X_public[5:])).exposure
    assert 0.0 <= few < many <= 1.0 and many > 0.5


def test_regressor_outputs_are_values(regressors):
    v, profile = regressors["diabetes-ridge"]
    mon = Monitor(profile)
    X = v.X_public[:3]
    with pytest.raises(InvalidInput, match="outputs must be 3 predicted values"):
        mon.observe("c", X, np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match="NaN or infinite predictions"):
        mon.observe("c", X, np.array([1.0, np.nan, 2.0]))
    assert mon.verdict("c").n_queries == 0
    column = mon.observe("c", X, v.answer(X)[:, None])  # (n, 1) is (n,)
    assert column.n_queries == 3


def test_a_regressor_that_takes_missing_values_accepts_them(regressors):
    v, profile = regressors["diabetes-hgb"]
    assert all(profile.schema_.allow_nan)
    X = v.X_public[:20].copy()
    X[::3, 2] = np.nan
    verdict = Monitor(profile, model=v.model).observe("c", X)
    assert verdict.n_distinct == 20 and verdict.exposure is not None


def test_a_regression_tree_keeps_split_threshold_evidence():
    v = load_victim("diabetes-ridge")
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(v.X_train, v.y_train)
    profile = Profile(seed=0, drift_draws=5).fit(tree, v.X_train, v.y_train,
                                                 X_cal=v.X_cal, y_cal=v.y_cal)
    assert profile.boundary_kind_ == "tree"
    verdict = Monitor(profile).observe("c", v.X_public[:20], tree.predict(v.X_public[:20]))
    assert verdict.detectors["boundary"]["evidence"]


def test_analyze_a_regressor_log_with_a_prediction_column(regressors, tmp_path):
    v, profile = regressors["diabetes-ridge"]
    clients = _public_clients(v, 4, 50, seed=3)
    rng = np.random.default_rng(4)
    thief = rng.uniform(v.lower, v.upper, (60, v.n_features))
    X = np.vstack([*clients, thief])
    ids = [f"benign-{i}" for i in range(4) for _ in range(50)] + ["thief"] * 60
    frame = pd.DataFrame(X, columns=profile.feature_names_)
    frame.insert(0, "client_id", ids)
    frame.insert(1, "seq", np.arange(len(frame)))
    frame["pred"] = v.answer(X)
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    log = read_log(path, profile.schema_, len(profile.classes_))
    assert log.proba is None and log.labels.dtype == np.float64
    table = analyze_log(log, Monitor(profile)).set_index("client_id")
    assert table.loc["thief", "flagged"] and not table.drop(index="thief")["flagged"].any()
    online = Monitor(profile).observe("thief", thief, v.answer(thief))
    assert online.peak_score == pytest.approx(table.loc["thief", "peak_score"], abs=1e-9)
    assert table.loc["thief", "exposure"] == pytest.approx(online.exposure)


class LabelsOnly(ClassifierMixin, BaseEstimator):
    """A classifier that answers labels only: no predict_proba, no decision_function."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, X, y):
        self.knn_ = KNeighborsClassifier(self.k).fit(X, y)
        self.classes_ = self.knn_.classes_
        return self

    def predict(self, X):
        return self.knn_.predict(X)


@cache
def _classifier(kind: str):
    v = load_victim("cancer-logreg")
    last = LinearSVC() if kind == "decision" else LabelsOnly()
    model = make_pipeline(StandardScaler(), last).fit(v.X_train, v.y_train)
    profile = Profile(seed=0).fit(model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal)
    return kind, v, model, profile


@pytest.fixture(params=["decision", "labels"])
def classifier(request):
    return _classifier(request.param)


def test_classifiers_without_predict_proba(classifier):
    kind, v, model, profile = classifier
    assert profile.output_kind_ == kind
    assert profile.boundary_kind_ == ("decision" if kind == "decision" else "none")
    rng = np.random.default_rng(5)
    U = rng.uniform(v.lower, v.upper, (120, v.n_features))
    for with_model in (True, False):
        mon = Monitor(profile, model=model if with_model else None)
        notes = mon.evidence_notes("labels")
        evidence = kind == "decision" and with_model
        assert (notes == []) == evidence
        for i, X in enumerate(_public_clients(v, 5, 80)):
            verdict = mon.observe(f"benign-{i}", X, model.predict(X))
            assert not verdict.flagged, verdict.reason
            assert verdict.detectors["boundary"]["evidence"] == evidence
        attack = mon.observe("mallory", U, model.predict(U))
        assert attack.flagged and attack.exposure is not None
    with pytest.raises(InvalidInput, match="outputs must be 3 labels"):
        Monitor(profile).observe("c", v.X_public[:3], np.zeros((3, 2)))


def test_decision_margins_are_calibrated_on_held_out_rows():
    _, v, model, profile = _classifier("decision")
    detector = BoundaryDetector(profile)
    X = v.X_public
    p = detector.pvalues(Batch(X=X, Z=profile.transform(X), proba=None,
                               decision=model.decision_function(X)))
    for level in (0.05, 0.1, 0.25):
        assert np.mean(p <= level) <= level + 3 * np.sqrt(level * (1 - level) / len(p)) + 0.02
    # points right on the boundary (f(x) = 0) are unusually close
    on = detector.pvalues(Batch(X=X[:5], Z=profile.transform(X[:5]), proba=None,
                                decision=np.zeros(5)))
    assert (on < 0.05).all()
