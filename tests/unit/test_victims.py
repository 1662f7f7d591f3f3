"""The reference victims: the original four unchanged, the extra families load, train fast
and answer in each of their output modes; regressors refuse labels."""

import time

import numpy as np
import pytest

from victims import ALL_VICTIMS, EXTRA_VICTIMS, REGRESSION_VICTIMS, VICTIMS, load_victim
from victims.registry import _CACHE

CLASSIFIERS = [n for n in EXTRA_VICTIMS if n not in REGRESSION_VICTIMS]


def test_victim_tuples():
    assert VICTIMS == ("digits-mlp", "cancer-logreg", "wine-tree", "digits-svm")
    assert set(EXTRA_VICTIMS) == {"iris-knn", "synth40-hgb", "cancer-forest", "diabetes-ridge",
                                  "diabetes-hgb"}
    assert ALL_VICTIMS == VICTIMS + EXTRA_VICTIMS
    assert set(REGRESSION_VICTIMS) <= set(EXTRA_VICTIMS)
    with pytest.raises(ValueError, match="unknown victim"):
        load_victim("iris-svm")


@pytest.mark.parametrize("name", EXTRA_VICTIMS)
def test_extra_victims_train_fast_with_disjoint_splits(name):
    _CACHE.pop((name, 3), None)
    started = time.process_time()
    v = load_victim(name, seed=3)
    assert time.process_time() - started < 3.0
    n = len(v.X_train) + len(v.X_cal) + len(v.X_public)
    assert abs(len(v.X_train) / n - 0.5) < 0.01 and abs(len(v.X_public) / n - 0.3) < 0.01
    rows = {r.tobytes() for r in v.X_public}
    assert not rows & {r.tobytes() for r in v.X_train}
    assert np.all(v.X_public >= v.lower) and np.all(v.X_public <= v.upper)
    assert load_victim(name, seed=3).model is v.model  # cached


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_extra_classifiers_answer_in_every_mode(name):
    X = load_victim(name).X_public[:20]
    proba = load_victim(name, "proba").answer(X)
    v = load_victim(name, "label")
    assert v.task == "classification" and v.output_modes == ("proba", "rounded", "label")
    assert proba.shape == (20, len(v.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(load_victim(name, "rounded").answer(X), np.round(proba, 2))
    np.testing.assert_array_equal(v.answer(X), v.classes[proba.argmax(axis=1)])
    # the model generalises: well above the majority rate on its public records
    majority = np.bincount(v.y_public).max() / len(v.y_public)
    assert np.mean(v.model.predict(v.X_public) == v.y_public) > majority + 0.3


@pytest.mark.parametrize("name", REGRESSION_VICTIMS)
def test_regressors_answer_values_and_reject_labels(name):
    v = load_victim(name, "proba")
    assert v.task == "regression" and v.is_regressor and v.classes.size == 0
    assert v.output_modes == ("proba", "rounded")
    assert not hasattr(v, "predict_proba")
    y = v.answer(v.X_public)
    assert y.shape == (len(v.X_public),) and y.dtype.kind == "f"
    np.testing.assert_array_equal(load_victim(name, "rounded").answer(v.X_public), np.round(y, 2))
    with pytest.raises(ValueError, match="regressor.*'label'"):
        load_victim(name, "label")
    from sklearn.metrics import r2_score

    assert r2_score(v.y_public, y) > 0.3  # diabetes is noisy; the models still learn it


def test_diabetes_ridge_is_linear_in_raw_inputs():
    v = load_victim("diabetes-ridge")
    rng = np.random.default_rng(0)
    a, b = rng.uniform(v.lower, v.upper, size=(2, v.n_features))
    mid = v.answer(np.array([(a + b) / 2]))[0]
    assert mid == pytest.approx(v.answer(np.array([a, b])).mean())
