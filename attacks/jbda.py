"""Jacobian-based dataset augmentation (Papernot et al. 2017) and T-RND (Juuti et al. 2019).

Starting from a handful of seed records, the attacker trains a substitute on the
oracle's labels and grows the set by stepping every point ``lam`` (as a fraction
of each feature's range) along the sign of the substitute's gradient: towards
the oracle's class for JbDA, towards a random other class for T-RND.
"""

from __future__ import annotations

import numpy as np
from sklearn.dummy import DummyClassifier

from attacks.oracle import Oracle, answer_labels
from attacks.result import AttackResult
from attacks.streams import ClientStream
from attacks.surrogate import class_gradient, fit_surrogate

Box = tuple[np.ndarray, np.ndarray]


def jacobian_augmentation(oracle: Oracle, seed_X: np.ndarray, box: Box, n: int,
                          rng: np.random.Generator, classes: np.ndarray | None = None, lam: float = 0.1,
                          tau: int = 3, targeted: bool = False, surrogate: str = "mlp",
                          client_id: str | None = None) -> AttackResult:
    """Run JbDA (``targeted=False``) or T-RND (``targeted=True``) within ``n`` queries.

    Each round doubles the set (the last round is a random subset so the budget is
    met exactly); the step sign flips every ``tau`` rounds (Papernot's periodic step).
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    step = lam * (upper - lower)
    n = min(n, oracle.remaining)
    S = np.asarray(seed_X, dtype=float)[:n]
    Y = answer_labels(oracle(S), classes)
    model_seed = int(rng.integers(2**31))
    rounds = 0
    while oracle.n_queries < n and oracle.remaining > 0:
        sub = fit_surrogate(S, Y, surrogate, model_seed)
        if isinstance(sub, DummyClassifier):
            direction = rng.choice([-1.0, 1.0], size=S.shape)
        else:
            sub_classes = sub.classes_
            if targeted:
                k = len(sub_classes)
                own = np.searchsorted(sub_classes, Y)
                target = (own + rng.integers(1, max(k, 2), size=len(Y))) % k
            else:
                target = np.searchsorted(sub_classes, Y)
            direction = np.sign(class_gradient(sub, S, target))
        sign = -1.0 if (rounds // tau) % 2 and not targeted else 1.0
        new = np.clip(S + sign * step * direction, lower, upper)
        m = min(len(new), n - oracle.n_queries, oracle.remaining)
        if m < len(new):
            new = new[rng.choice(len(new), size=m, replace=False)]
        S = np.vstack([S, new])
        Y = np.concatenate([Y, answer_labels(oracle(new), classes)])
        rounds += 1
    X, answers = oracle.queries, oracle.answers
    labels = answer_labels(answers, classes)

    def refit(k: int):
        return fit_surrogate(X[:k], labels[:k], surrogate, model_seed)

    name = "t-rnd" if targeted else "jbda"
    stream = ClientStream(client_id or f"attack-{name}", name, True, X,
                          meta={"rounds": rounds, "n_seed": len(seed_X), "lam": lam})
    return AttackResult(name, stream, refit(len(X)), answers, refit=refit)


def seed_records(X_public: np.ndarray, y_public: np.ndarray | None, n_seed: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``n_seed`` public records, spread over the classes when labels are known."""
    if y_public is None:
        return X_public[rng.choice(len(X_public), size=n_seed, replace=False)]
    order = rng.permutation(len(X_public))
    _, first = np.unique(y_public[order], return_index=True)
    picked = list(order[first][:n_seed])
    rest = [i for i in order if i not in set(picked)]
    picked += rest[: n_seed - len(picked)]
    return X_public[np.asarray(picked)]
