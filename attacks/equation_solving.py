"""Equation-solving extraction (Tramèr et al. 2016) from probability outputs.

For (multinomial) logistic regression, ``log(p_j / p_0) = (w_j - w_0) . x + (b_j - b_0)``
is linear in ``x``: ``d + 1`` queries with probabilities give a linear system whose
solution predicts exactly like the victim (in its raw input space, whatever
standardisation the victim applies inside). For a one-hidden-layer MLP the attacker
sends ``alpha x (number of unknowns)`` random queries and fits the parameters to the
probabilities by minimising cross-entropy.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from attacks.oracle import Oracle
from attacks.result import AttackResult
from attacks.streams import ClientStream

Box = tuple[np.ndarray, np.ndarray]


class LinearSoftmaxModel:
    """A softmax model ``p ∝ exp([0, x @ W + b])`` with class 0 as the reference.

    >>> import numpy as np
    >>> m = LinearSoftmaxModel(np.array([[1.0]]), np.array([0.0]), np.array([0, 1]))
    >>> m.predict(np.array([[-2.0], [3.0]])).tolist()
    [0, 1]
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, classes: np.ndarray) -> None:
        self.W, self.b, self.classes_ = W, b, np.asarray(classes)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=float) @ self.W + self.b
        return np.hstack([np.zeros((len(Z), 1)), Z])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = self.decision_function(X)
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        return P / P.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def _require_proba(answers: np.ndarray, attack: str) -> np.ndarray:
    answers = np.asarray(answers, dtype=float)
    if answers.ndim != 2:
        raise ValueError(f"{attack} needs probability outputs; the oracle returns labels only")
    return answers


def _solve_linear(X: np.ndarray, P: np.ndarray, classes: np.ndarray) -> LinearSoftmaxModel:
    logP = np.log(np.clip(P, 1e-300, None))
    Z = logP[:, 1:] - logP[:, [0]]
    A = np.hstack([X, np.ones((len(X), 1))])
    theta, *_ = np.linalg.lstsq(A, Z, rcond=None)
    return LinearSoftmaxModel(theta[:-1], theta[-1], classes)


def equation_solving_linear(oracle: Oracle, box: Box, rng: np.random.Generator,
                            classes: np.ndarray | None = None, n: int | None = None,
                            client_id: str | None = None) -> AttackResult:
    """Recover a (multinomial) logistic regression from ``n`` (default ``d + 1``)
    random queries in the box; works for binary and softmax victims alike."""
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    d = len(lower)
    n = d + 1 if n is None else n
    X = rng.uniform(lower, upper, size=(n, d))
    P = _require_proba(oracle(X), "equation solving")
    classes = np.arange(P.shape[1]) if classes is None else np.asarray(classes)

    def refit(m: int) -> LinearSoftmaxModel:
        return _solve_linear(X[:m], P[:m], classes)

    model = refit(n)
    stream = ClientStream(client_id or "attack-equation-solving", "equation-solving", True, X)
    return AttackResult("equation-solving", stream, model, P, refit=refit,
                        extracted={"W": model.W, "b": model.b})


class OneHiddenLayerModel:
    """``softmax(tanh-free) `` one-hidden-layer network: ``softmax(relu(z W1 + b1) W2 + b2)``
    on standardised inputs ``z = (x - mean) / scale``.

    >>> import numpy as np
    >>> m = OneHiddenLayerModel(np.zeros(1), np.ones(1), np.ones((1, 2)), np.zeros(2),
    ...                         np.array([[1.0, -1.0], [0.0, 0.0]]).T, np.zeros(2), np.array([0, 1]))
    >>> m.predict(np.array([[2.0]])).tolist()
    [0]
    """

    def __init__(self, mean, scale, W1, b1, W2, b2, classes) -> None:
        self.mean, self.scale = mean, scale
        self.W1, self.b1, self.W2, self.b2 = W1, b1, W2, b2
        self.classes_ = np.asarray(classes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        H = np.maximum((np.asarray(X, dtype=float) - self.mean) / self.scale @ self.W1 + self.b1,
                       0)
        Z = H @ self.W2 + self.b2
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        return P / P.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _fit_mlp(X: np.ndarray, P: np.ndarray, hidden: int, seed: int, classes: np.ndarray,
             max_iter: int = 300) -> OneHiddenLayerModel:
    """Fit a one-hidden-layer ReLU network to soft targets ``P`` with L-BFGS."""
    rng = np.random.default_rng(seed)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    Zx = (X - mean) / scale
    d, k = X.shape[1], P.shape[1]
    shapes = [(d, hidden), (hidden,), (hidden, k), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(theta):
        parts = np.split(theta, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]

    def loss(theta):
        W1, b1, W2, b2 = unpack(theta)
        A = Zx @ W1 + b1
        H = np.maximum(A, 0)
        Z = H @ W2 + b2
        Z = Z - Z.max(axis=1, keepdims=True)
        logQ = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        n = len(X)
        value = -(P * logQ).sum() / n + 1e-5 * (W1**2).sum() + 1e-5 * (W2**2).sum()
        G = (np.exp(logQ) - P) / n
        gW2 = H.T @ G + 2e-5 * W2
        gA = (G @ W2.T) * (A > 0)
        gW1 = Zx.T @ gA + 2e-5 * W1
        return value, np.concatenate([gW1.ravel(), gA.sum(0), gW2.ravel(), G.sum(0)])

    theta0 = np.concatenate([
        rng.normal(0, 1 / np.sqrt(d), size=sizes[0]), np.zeros(sizes[1]),
        rng.normal(0, 1 / np.sqrt(hidden), size=sizes[2]), np.zeros(sizes[3]),
    ])
    opt = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return OneHiddenLayerModel(mean, scale, *unpack(opt.x), classes)


def equation_solving_mlp(oracle: Oracle, box: Box, rng: np.random.Generator,
                         classes: np.ndarray | None = None, hidden: int = 20,
                         alpha: float = 0.5, n: int | None = None,
                         client_id: str | None = None) -> AttackResult:
    """Tramèr's MLP attack: ``alpha x unknowns`` random queries (uniform in the box),
    then fit a one-hidden-layer network with ``hidden`` units to the probabilities."""
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    d = len(lower)
    k_guess = len(classes) if classes is not None else 2
    unknowns = hidden * (d + 1) + k_guess * (hidden + 1)
    n = int(np.ceil(alpha * unknowns)) if n is None else n
    n = min(n, oracle.remaining)
    X = rng.uniform(lower, upper, size=(n, d))
    P = _require_proba(oracle(X), "MLP equation solving")
    classes = np.arange(P.shape[1]) if classes is None else np.asarray(classes)
    seed = int(rng.integers(2**31))

    def refit(m: int) -> OneHiddenLayerModel:
        return _fit_mlp(X[:m], P[:m], hidden, seed, classes)

    stream = ClientStream(client_id or "attack-mlp-equation-solving", "mlp-equation-solving",
                          True, X, meta={"unknowns": unknowns, "hidden": hidden})
    return AttackResult("mlp-equation-solving", stream, refit(n), P, refit=refit)


def softmax_victim(base: str = "digits-mlp", output_mode: str = "proba", seed: int = 0):
    """A multinomial logistic-regression victim on the data splits of victim ``base``
    (the target of softmax equation solving)."""
    from victims import VICTIMS, load_victim
    from victims.registry import Victim

    prefix = base.split("-")[0]
    base = base if base in VICTIMS else next((n for n in VICTIMS if n.startswith(prefix)), base)
    v = load_victim(base, output_mode=output_mode, seed=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    model.fit(v.X_train, v.y_train)
    fields = {**v.__dict__, "name": f"{base.split('-')[0]}-softmax", "model": model,
              "classes": np.asarray(model.classes_)}
    return Victim(**fields)
