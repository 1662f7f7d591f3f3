"""Label-only retraining attacks (Tramèr et al. 2016): uniform, line-search, adaptive.

The attacker queries points, keeps the predicted labels, and trains a surrogate
on them. Only the victim's feature box and class set are assumed known.
"""

from __future__ import annotations

import numpy as np

from attacks.oracle import BudgetExhausted, Oracle, answer_labels
from attacks.result import AttackResult
from attacks.streams import ClientStream
from attacks.surrogate import fit_regressor, fit_surrogate

Box = tuple[np.ndarray, np.ndarray]


def _result(name: str, oracle: Oracle, classes: np.ndarray | None, kind: str, seed: int,
            client_id: str | None, meta: dict | None = None,
            regression: bool = False) -> AttackResult:
    """Package the oracle's record as an AttackResult with a retrained surrogate
    (a classifier on the answers' labels; with ``regression``, a regressor of ``kind``
    on the real-valued answers)."""
    X, answers = oracle.queries, oracle.answers
    targets = np.asarray(answers, dtype=float) if regression else answer_labels(answers, classes)
    fit = fit_regressor if regression else fit_surrogate

    def refit(n: int):
        return fit(X[:n], targets[:n], kind, seed)

    stream = ClientStream(client_id or f"attack-{name}", name, True, X, meta=meta or {})
    return AttackResult(name, stream, refit(len(X)), answers, refit=refit)


def retrain_on(oracle: Oracle, X: np.ndarray, name: str, rng: np.random.Generator,
               classes: np.ndarray | None = None, surrogate: str = "mlp", batch_size: int = 50,
               client_id: str | None = None, meta: dict | None = None,
               regression: bool = False) -> AttackResult:
    """Send the rows of ``X`` in order (batches of ``batch_size``, at most the oracle's
    remaining budget) and retrain a surrogate on the answers: the common tail of every
    attack whose queries are fixed up front (pools, mixtures, sweeps).

    >>> from victims import load_victim
    >>> v = load_victim("cancer-logreg", "label")
    >>> r = retrain_on(Oracle(v.answer, 30), v.X_public[:40], "demo",
    ...                np.random.default_rng(0), v.classes, surrogate="logreg")
    >>> r.n_queries, r.stream.kind
    (30, 'demo')
    """
    X = np.asarray(X, dtype=float)[:oracle.remaining]
    for start in range(0, len(X), batch_size):
        oracle(X[start:start + batch_size])
    return _result(name, oracle, classes, surrogate, int(rng.integers(2**31)), client_id, meta,
                   regression=regression)


def uniform_retraining(oracle: Oracle, box: Box, n: int, rng: np.random.Generator,
                       classes: np.ndarray | None = None, surrogate: str = "mlp", batch_size: int = 50,
                       client_id: str | None = None) -> AttackResult:
    """Query ``n`` points uniform in the feature box, retrain on the labels."""
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    X = rng.uniform(lower, upper, size=(n, len(lower)))
    for start in range(0, n, batch_size):
        oracle(X[start:start + batch_size])
    return _result("uniform", oracle, classes, surrogate, int(rng.integers(2**31)), client_id)


def _bisect(oracle: Oracle, a: np.ndarray, b: np.ndarray, label_a, steps: int,
            classes: np.ndarray) -> None:
    """Binary search on segment a-b for the label change, one query per step."""
    for _ in range(steps):
        mid = (a + b) / 2
        if answer_labels(oracle(mid[None, :]), classes)[0] == label_a:
            a = mid
        else:
            b = mid


def line_search_retraining(oracle: Oracle, box: Box, n: int, rng: np.random.Generator,
                           classes: np.ndarray | None = None, anchors: np.ndarray | None = None,
                           steps: int = 8, init_fraction: float = 0.25,
                           surrogate: str = "mlp", client_id: str | None = None
                           ) -> AttackResult:
    """Lowd-Meek style line search: find pairs of points with different labels and
    bisect each segment to the decision boundary (``steps`` queries per pair).

    The pairs come from ``init_fraction * n`` initial points: uniform in the box, or
    ``anchors`` (e.g. a few known records) followed by uniform points.
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    n_init = max(2, int(init_fraction * n))
    start = rng.uniform(lower, upper, size=(n_init, len(lower)))
    if anchors is not None and len(anchors):
        k = min(len(anchors), n_init // 2)
        start[:k] = anchors[rng.choice(len(anchors), size=k, replace=False)]
        start = start[rng.permutation(n_init)]
    labels = answer_labels(oracle(start), classes)
    n_pairs = 0
    try:
        while oracle.remaining > 0:
            i, j = rng.choice(n_init, size=2, replace=False)
            if labels[i] == labels[j]:
                if len(np.unique(labels)) < 2:
                    oracle(rng.uniform(lower, upper, size=(1, len(lower))))
                continue
            _bisect(oracle, start[i], start[j], labels[i], min(steps, oracle.remaining),
                    classes)
            n_pairs += 1
    except BudgetExhausted:
        pass
    return _result("line-search", oracle, classes, surrogate, int(rng.integers(2**31)),
                   client_id, {"pairs": n_pairs, "steps": steps})


def adaptive_retraining(oracle: Oracle, box: Box, n: int, rng: np.random.Generator,
                        classes: np.ndarray | None = None, rounds: int = 8, pool_factor: int = 20,
                        surrogate: str = "mlp", client_id: str | None = None
                        ) -> AttackResult:
    """Tramèr's adaptive retraining: start uniform, then in each round query the
    candidate points (uniform in the box) the current surrogate is least sure about."""
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    seed = int(rng.integers(2**31))
    per_round = max(1, n // (rounds + 1))
    oracle(rng.uniform(lower, upper, size=(min(per_round, oracle.remaining), len(lower))))
    while oracle.remaining > 0:
        labels = answer_labels(oracle.answers, classes)
        model = fit_surrogate(oracle.queries, labels, surrogate, seed)
        m = min(per_round, oracle.remaining)
        pool = rng.uniform(lower, upper, size=(m * pool_factor, len(lower)))
        if hasattr(model, "predict_proba") and len(np.unique(labels)) > 1:
            top2 = np.sort(model.predict_proba(pool), axis=1)[:, -2:]
            pick = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:m]
        else:
            pick = np.arange(m)
        oracle(pool[pick])
    return _result("adaptive-retraining", oracle, classes, surrogate, seed, client_id,
                   {"rounds": rounds})
