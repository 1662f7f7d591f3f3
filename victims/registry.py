"""The reference victims: which dataset, which model, which splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

OUTPUT_MODES = ("proba", "rounded", "label")
"""What the prediction API returns: full probabilities, probabilities rounded
to two decimals, or the predicted label only."""


@dataclass
class Victim:
    """A trained reference victim with its fixed data splits.

    ``answer(X)`` is what the prediction API returns in this victim's output
    mode: an ``(n, k)`` array of probabilities (``proba``/``rounded``) or an
    ``(n,)`` array of labels (``label``).
    """

    name: str
    model: ClassifierMixin
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

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(X, dtype=float))

    def answer(self, X: np.ndarray) -> np.ndarray:
        """What the API returns for rows ``X`` in this victim's output mode."""
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


_SPECS: dict[str, tuple[Callable, Callable]] = {
    "digits-mlp": (_digits, _mlp),
    "cancer-logreg": (_cancer, _logreg),
    "wine-tree": (_wine, _tree),
    "digits-svm": (_digits, _svm),
}

VICTIMS: tuple[str, ...] = tuple(_SPECS)
"""Names accepted by :func:`load_victim`."""

_CACHE: dict[tuple[str, int], Victim] = {}


def load_victim(name: str, output_mode: str = "proba", seed: int = 0) -> Victim:
    """Train (or fetch from the in-process cache) the reference victim ``name``.

    Splits are stratified and seeded: 50% train, 20% calibration, 30% public.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown victim {name!r}; choose one of {', '.join(VICTIMS)}")
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"unknown output mode {output_mode!r}; choose one of {OUTPUT_MODES}")
    key = (name, seed)
    if key not in _CACHE:
        load, make_model = _SPECS[name]
        X, y, names = load()
        X = np.asarray(X, dtype=float)
        X_train, X_rest, y_train, y_rest = train_test_split(
            X, y, train_size=0.5, stratify=y, random_state=seed
        )
        X_cal, X_public, y_cal, y_public = train_test_split(
            X_rest, y_rest, train_size=0.4, stratify=y_rest, random_state=seed
        )
        model = make_model(seed).fit(X_train, y_train)
        _CACHE[key] = Victim(
            name=name, model=model, output_mode="proba", feature_names=names,
            classes=np.asarray(model.classes_), X_train=X_train, y_train=y_train,
            X_cal=X_cal, y_cal=y_cal, X_public=X_public, y_public=y_public,
            lower=X.min(axis=0), upper=X.max(axis=0),
        )
    cached = _CACHE[key]
    return Victim(**{**cached.__dict__, "output_mode": output_mode})
