"""The reference victims: which dataset, which model, which splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import ThreadpoolController

OUTPUT_MODES = ("proba", "rounded", "label")
"""What the prediction API returns: full probabilities, probabilities rounded
to two decimals, or the predicted label only."""

_PREDICT_METHODS = ("predict", "predict_proba", "decision_function")
_CONTROLLER: list[ThreadpoolController] = []


def _one_openmp_thread():
    """A context limiting OpenMP to one thread (the controller is built once: 15 ms)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="openmp")


class OneThreadModel(BaseEstimator):
    """A model whose fitting and predictions run on one OpenMP thread; everything else is
    the wrapped ``model``'s (``classes_``, ``n_features_in_``, ...). A scikit-learn estimator
    itself, so ``clone`` (the profile's cross-fitting) works.

    HGB and k-NN predict with OpenMP; on a busy two-core machine their threads stall a
    one-row prediction for 100+ ms, and attacks send thousands of small batches.

    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> m = OneThreadModel(KNeighborsClassifier(1).fit([[0.0], [1.0]], [0, 1]))
    >>> m.predict([[0.9]]).tolist(), m.classes_.tolist()
    ([1], [0, 1])
    """

    def __init__(self, model: BaseEstimator) -> None:
        self.model = model

    def fit(self, X, y=None, **fit_params) -> OneThreadModel:
        with _one_openmp_thread():
            self.model.fit(X, y, **fit_params)
        return self

    def __getattr__(self, name: str):
        if name == "model" or name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self.model, name)
        if name not in _PREDICT_METHODS:
            return attr

        def one_thread(*args, **kwargs):
            with _one_openmp_thread():
                return attr(*args, **kwargs)

        return one_thread

    def __repr__(self) -> str:
        return f"OneThreadModel({self.model!r})"


REGRESSION_OUTPUT_MODES = ("proba", "rounded")
"""A regressor's API returns its prediction at full precision (``proba``, kept as the
name of the full-precision mode) or rounded to two decimals (``rounded``)."""


@dataclass
class Victim:
    """A trained reference victim with its fixed data splits.

    ``answer(X)`` is what the prediction API returns in this victim's output
    mode: an ``(n, k)`` array of probabilities (``proba``/``rounded``) or an
    ``(n,)`` array of labels (``label``). A regression victim (``task ==
    "regression"``) has no classes and no ``predict_proba``; it answers the
    ``(n,)`` predictions, rounded to two decimals in ``rounded`` mode.
    """

    name: str
    model: BaseEstimator
    output_mode: str
    feature_names: list[str]
    classes: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    X_cal: np.ndarray
    y_cal: np.ndarray
    X_public: np.ndarray
    y_public: np.ndarray
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    task: str = "classification"
    output_modes: tuple[str, ...] = OUTPUT_MODES

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def is_regressor(self) -> bool:
        return self.task == "regression"

    @property
    def predict_proba(self) -> Callable[[np.ndarray], np.ndarray]:
        """The model's class probabilities (an AttributeError for a regressor, so
        ``hasattr(victim, "predict_proba")`` is False there)."""
        if self.is_regressor:
            raise AttributeError(f"victim {self.name!r} is a regressor: no predict_proba")
        return lambda X: self.model.predict_proba(np.asarray(X, dtype=float))

    def answer(self, X: np.ndarray) -> np.ndarray:
        """What the API returns for rows ``X`` in this victim's output mode."""
        if self.is_regressor:
            y = self.model.predict(np.asarray(X, dtype=float))
            return np.round(y, 2) if self.output_mode == "rounded" else y
        proba = self.predict_proba(X)
        if self.output_mode == "proba":
            return proba
        if self.output_mode == "rounded":
            return np.round(proba, 2)
        return self.classes[proba.argmax(axis=1)]


def _digits():
    d = load_digits()
    return d.data, d.target, [f"pixel_{i}" for i in range(d.data.shape[1])]


def _cancer():
    d = load_breast_cancer()
    return d.data, d.target, list(d.feature_names)


def _wine():
    d = load_wine()
    return d.data, d.target, list(d.feature_names)


def _mlp(seed: int):
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=500, alpha=1e-3,
                      random_state=seed),
    )


def _logreg(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def _tree(seed: int):
    return DecisionTreeClassifier(max_depth=5, min_samples_leaf=3, random_state=seed)


def _svm(seed: int):
    # Platt-calibrated RBF SVM (what SVC(probability=True) did, without its deprecation)
    return make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), ensemble=False),
    )


def _iris():
    d = load_iris()
    return d.data, d.target, list(d.feature_names)


def _synth40():
    # a fixed dataset (like the bundled ones): the victim seed varies splits and model only
    X, y = make_classification(n_samples=3000, n_features=40, n_informative=12, n_redundant=8,
                               n_classes=3, random_state=40)
    return X, y, [f"f_{i}" for i in range(X.shape[1])]


def _diabetes():
    d = load_diabetes()
    return d.data, d.target, list(d.feature_names)


def _knn(seed: int):
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7))


def _hgb(seed: int):
    return HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, learning_rate=0.1,
                                          early_stopping=False, random_state=seed)


def _forest(seed: int):
    return RandomForestClassifier(n_estimators=100, max_depth=8, random_state=seed)


def _ridge(seed: int):
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


def _hgb_regressor(seed: int):
    return HistGradientBoostingRegressor(max_iter=100, max_leaf_nodes=15, learning_rate=0.1,
                                         early_stopping=False, random_state=seed)


_SPECS: dict[str, tuple[Callable, Callable]] = {
    "digits-mlp": (_digits, _mlp),
    "cancer-logreg": (_cancer, _logreg),
    "wine-tree": (_wine, _tree),
    "digits-svm": (_digits, _svm),
}
_EXTRA_SPECS: dict[str, tuple[Callable, Callable]] = {
    "iris-knn": (_iris, _knn),
    "synth40-hgb": (_synth40, _hgb),
    "cancer-forest": (_cancer, _forest),
    "diabetes-ridge": (_diabetes, _ridge),
    "diabetes-hgb": (_diabetes, _hgb_regressor),
}

VICTIMS: tuple[str, ...] = tuple(_SPECS)
"""The four original classification victims (what the detection tests run over)."""

EXTRA_VICTIMS: tuple[str, ...] = tuple(_EXTRA_SPECS)
"""Victims of further model families: k-NN, gradient boosting, random forest, and two
regressors (``diabetes-ridge``, ``diabetes-hgb``)."""

ALL_VICTIMS: tuple[str, ...] = VICTIMS + EXTRA_VICTIMS
"""Every name accepted by :func:`load_victim`."""

REGRESSION_VICTIMS: tuple[str, ...] = ("diabetes-ridge", "diabetes-hgb")
"""The victims whose task is regression (they answer real values, never labels)."""

_ALL_SPECS = {**_SPECS, **_EXTRA_SPECS}

_CACHE: dict[tuple[str, int], Victim] = {}


def load_victim(name: str, output_mode: str = "proba", seed: int = 0) -> Victim:
    """Train (or fetch from the in-process cache) the reference victim ``name``.

    Splits are seeded: 50% train, 20% calibration, 30% public, stratified by class
    for classifiers (plain for regressors). A regressor rejects ``output_mode="label"``.

    >>> v = load_victim("diabetes-ridge", output_mode="rounded")
    >>> v.task, v.classes.size, v.answer(v.X_public[:3]).shape
    ('regression', 0, (3,))
    >>> load_victim("diabetes-ridge", output_mode="label")
    Traceback (most recent call last):
    ...
    ValueError: victim 'diabetes-ridge' is a regressor: output mode 'label' makes no sense; choose one of ('proba', 'rounded')
    """
    if name not in _ALL_SPECS:
        raise ValueError(f"unknown victim {name!r}; choose one of {', '.join(ALL_VICTIMS)}")
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"unknown output mode {output_mode!r}; choose one of {OUTPUT_MODES}")
    regression = name in REGRESSION_VICTIMS
    if regression and output_mode not in REGRESSION_OUTPUT_MODES:
        raise ValueError(f"victim {name!r} is a regressor: output mode {output_mode!r} makes no "
                         f"sense; choose one of {REGRESSION_OUTPUT_MODES}")
    key = (name, seed)
    if key not in _CACHE:
        load, make_model = _ALL_SPECS[name]
        X, y, names = load()
        X = np.asarray(X, dtype=float)
        X_train, X_rest, y_train, y_rest = train_test_split(
            X, y, train_size=0.5, stratify=None if regression else y, random_state=seed
        )
        X_cal, X_public, y_cal, y_public = train_test_split(
            X_rest, y_rest, train_size=0.4, stratify=None if regression else y_rest,
            random_state=seed
        )
        if name in _SPECS:
            model = make_model(seed).fit(X_train, y_train)
        else:  # one OpenMP thread: threaded HGB training stalls for seconds on a busy box
            with _one_openmp_thread():
                model = OneThreadModel(make_model(seed).fit(X_train, y_train))
        _CACHE[key] = Victim(
            name=name, model=model, output_mode="proba", feature_names=names,
            classes=np.empty(0) if regression else np.asarray(model.classes_),
            X_train=X_train, y_train=y_train,
            X_cal=X_cal, y_cal=y_cal, X_public=X_public, y_public=y_public,
            lower=X.min(axis=0), upper=X.max(axis=0),
            task="regression" if regression else "classification",
            output_modes=REGRESSION_OUTPUT_MODES if regression else OUTPUT_MODES,
        )
    cached = _CACHE[key]
    return Victim(**{**cached.__dict__, "output_mode": output_mode})
