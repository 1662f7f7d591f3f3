"""Extraction of regression victims from their real-valued outputs.

Equation solving (Tramèr et al. 2016): a linear regressor ``y = x . w + b`` has
``d + 1`` unknowns, so ``d + 1`` queries in general position solve it exactly (in the
raw input space, whatever scaling the victim applies inside). Retraining: query
uniform or public-seeded points and fit a regressor on the answers.
"""

from __future__ import annotations

import numpy as np

from attacks.oracle import Oracle
from attacks.result import AttackResult
from attacks.retraining import retrain_on
from attacks.streams import ClientStream

Box = tuple[np.ndarray, np.ndarray]


class LinearModel:
    """``y = X @ w + b``.

    >>> import numpy as np
    >>> LinearModel(np.array([2.0, -1.0]), 0.5).predict(np.array([[1.0, 1.0]])).tolist()
    [1.5]
    """

    def __init__(self, w: np.ndarray, b: float) -> None:
        self.w, self.b = np.asarray(w, dtype=float), float(b)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.w + self.b


def _real_outputs(answers: np.ndarray, attack: str) -> np.ndarray:
    answers = np.asarray(answers)
    if answers.ndim != 1 or answers.dtype.kind not in "fiu":
        raise ValueError(f"{attack} needs the victim's real-valued (n,) outputs, "
                         f"got an array of shape {answers.shape}")
    return answers.astype(float)


def _solve(X: np.ndarray, y: np.ndarray) -> LinearModel:
    theta, *_ = np.linalg.lstsq(np.hstack([X, np.ones((len(X), 1))]), y, rcond=None)
    return LinearModel(theta[:-1], theta[-1])


def regression_equation_solving(oracle: Oracle, box: Box, rng: np.random.Generator,
                                n: int | None = None, client_id: str | None = None
                                ) -> AttackResult:
    """Solve a linear regression from ``n`` (default ``d + 1``) uniform queries in the box.

    >>> from victims import load_victim
    >>> v = load_victim("diabetes-ridge")
    >>> r = regression_equation_solving(Oracle(v.answer, 100), (v.lower, v.upper),
    ...                                 np.random.default_rng(0))
    >>> r.n_queries, bool(np.allclose(r.surrogate.predict(v.X_public), v.answer(v.X_public)))
    (11, True)
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    d = len(lower)
    n = d + 1 if n is None else n
    X = rng.uniform(lower, upper, size=(n, d))
    y = _real_outputs(oracle(X), "regression equation solving")

    def refit(m: int) -> LinearModel:
        return _solve(X[:m], y[:m])

    model = refit(n)
    stream = ClientStream(client_id or "attack-regression-equation-solving",
                          "regression-equation-solving", True, X)
    return AttackResult("regression-equation-solving", stream, model, y, refit=refit,
                        extracted={"w": model.w, "b": model.b})


def regression_retraining(oracle: Oracle, box: Box, n: int, rng: np.random.Generator,
                          seeds: np.ndarray | None = None, noise: float = 0.3,
                          surrogate: str = "forest", client_id: str | None = None
                          ) -> AttackResult:
    """Query ``n`` points and fit a regressor on the answers: uniform in the box, or,
    given ``seeds`` (public records), random seeds plus Gaussian noise of ``noise`` x
    each feature's seed std, clipped to the box.

    >>> from victims import load_victim
    >>> v = load_victim("diabetes-ridge")
    >>> r = regression_retraining(Oracle(v.answer, 50), (v.lower, v.upper), 50,
    ...                           np.random.default_rng(0), surrogate="linear")
    >>> r.n_queries, r.stream.meta["queries"]
    (50, 'uniform')
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    n = min(n, oracle.remaining)
    if seeds is None:
        X = rng.uniform(lower, upper, size=(n, len(lower)))
    else:
        seeds = np.asarray(seeds, dtype=float)
        X = seeds[rng.integers(len(seeds), size=n)]
        X = np.clip(X + noise * seeds.std(axis=0) * rng.normal(size=X.shape), lower, upper)
    return retrain_on(oracle, X, "regression-retraining", rng, surrogate=surrogate,
                      client_id=client_id, regression=True,
                      meta={"queries": "uniform" if seeds is None else "seeded", "noise": noise})
