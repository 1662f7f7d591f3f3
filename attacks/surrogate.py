"""Surrogate models an attacker trains on stolen answers, and their input gradients."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

SURROGATE_KINDS = ("mlp", "logreg", "tree")
REGRESSOR_KINDS = ("forest", "mlp", "linear")


def make_surrogate(kind: str = "mlp", seed: int = 0) -> Pipeline:
    """An unfitted surrogate pipeline (standardisation + model) of type ``kind``."""
    if kind == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, alpha=1e-3,
                              random_state=seed)
    elif kind == "logreg":
        model = LogisticRegression(C=10.0, max_iter=2000)
    elif kind == "tree":
        model = DecisionTreeClassifier(random_state=seed)
    else:
        raise ValueError(f"unknown surrogate kind {kind!r}; choose one of {SURROGATE_KINDS}")
    return make_pipeline(StandardScaler(), model)


def fit_surrogate(X: np.ndarray, y: np.ndarray, kind: str = "mlp", seed: int = 0):
    """Fit a surrogate on queries ``X`` and stolen labels ``y``.

    With a single label seen, returns a constant classifier predicting it.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(40, 2))
    >>> s = fit_surrogate(X, (X[:, 0] > 0).astype(int), kind="logreg")
    >>> float((s.predict(X) == (X[:, 0] > 0)).mean())
    1.0
    """
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_surrogate(kind, seed).fit(X, y)


def fit_regressor(X: np.ndarray, y: np.ndarray, kind: str = "forest", seed: int = 0):
    """Fit a regression surrogate (``forest``, ``mlp`` or ``linear``) on queries ``X``
    and the victim's real-valued answers ``y``.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 3))
    >>> s = fit_regressor(X, X @ [1.0, -2.0, 0.5] + 3, kind="linear")
    >>> np.round(s.predict(X[:2]) - (X[:2] @ [1.0, -2.0, 0.5] + 3), 8).tolist()
    [0.0, 0.0]
    """
    if kind == "forest":
        model = RandomForestRegressor(n_estimators=100, random_state=seed)
    elif kind == "mlp":
        model = make_pipeline(StandardScaler(), MLPRegressor(
            hidden_layer_sizes=(64,), max_iter=2000, alpha=1e-3, random_state=seed))
    elif kind == "linear":
        model = LinearRegression()
    else:
        raise ValueError(f"unknown regressor kind {kind!r}; choose one of {REGRESSOR_KINDS}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(np.asarray(X, dtype=float), np.asarray(y, dtype=float))


def _mlp_logits_grad(mlp: MLPClassifier, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output-layer activations (n, m) and their Jacobian w.r.t. inputs (n, m, d)."""
    act = {
        "relu": (lambda a: np.maximum(a, 0), lambda a, h: (a > 0).astype(float)),
        "tanh": (np.tanh, lambda a, h: 1 - h**2),
        "logistic": (lambda a: 1 / (1 + np.exp(-a)), lambda a, h: h * (1 - h)),
        "identity": (lambda a: a, lambda a, h: np.ones_like(a)),
    }[mlp.activation]
    h = Z
    J = np.broadcast_to(np.eye(Z.shape[1]), (len(Z), Z.shape[1], Z.shape[1]))
    layers = list(zip(mlp.coefs_, mlp.intercepts_, strict=True))
    for i, (W, b) in enumerate(layers):
        a = h @ W + b
        J = np.einsum("nid,ij->njd", J, W)
        if i < len(layers) - 1:
            h = act[0](a)
            J = J * act[1](a, h)[:, :, None]
        else:
            h = a
    return h, J


def class_gradient(model, X: np.ndarray, class_index: np.ndarray) -> np.ndarray:
    """Gradient of the predicted probability of ``class_index[i]`` w.r.t. row ``X[i]``.

    Supports a (StandardScaler +) MLPClassifier or LogisticRegression surrogate;
    the result is in the raw input space, shape ``(n, d)``.
    """
    X = np.asarray(X, dtype=float)
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    scale = np.ones(X.shape[1])
    Z = X
    for _, step in steps[:-1]:
        if not isinstance(step, StandardScaler):
            raise TypeError(f"unsupported preprocessing step {type(step).__name__}")
        Z = step.transform(Z)
        scale = scale / step.scale_
    clf = steps[-1][1]
    if isinstance(clf, MLPClassifier):
        logits, J = _mlp_logits_grad(clf, Z)
    elif isinstance(clf, LogisticRegression):
        logits = Z @ clf.coef_.T + clf.intercept_
        J = np.broadcast_to(clf.coef_, (len(Z), *clf.coef_.shape))
    else:
        raise TypeError(f"no input gradient for {type(clf).__name__}")
    rows = np.arange(len(X))
    if logits.shape[1] == 1:  # binary: p1 = sigmoid(o); grad p0 = -grad p1
        p1 = 1 / (1 + np.exp(-logits[:, 0]))
        g = (p1 * (1 - p1))[:, None] * J[:, 0, :]
        g = np.where((np.asarray(class_index) == 1)[:, None], g, -g)
    else:
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean_grad = np.einsum("nk,nkd->nd", p, J)
        g = p[rows, class_index][:, None] * (J[rows, class_index] - mean_grad)
    return g * scale
