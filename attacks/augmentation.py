"""Retraining attacks that synthesise their queries from real public records.

* mixup: convex mixtures ``lam x_i + (1 - lam) x_j`` of random pairs of records;
* seed noise: a few seed records plus Gaussian noise (a fraction of each feature's std);
* FGSM augmentation: like JbDA, but every point steps ``eps`` x std along the sign of
  the gradient of the local surrogate's *loss* (towards the boundary), round after round;
* feature sweep: seeds varied one feature at a time over a grid across the feature box.

All of them then retrain a surrogate on the answers (labels suffice).
"""

from __future__ import annotations

import numpy as np
from sklearn.dummy import DummyClassifier

from attacks.oracle import Oracle, answer_labels
from attacks.result import AttackResult
from attacks.retraining import _result, retrain_on
from attacks.surrogate import class_gradient, fit_surrogate

Box = tuple[np.ndarray, np.ndarray]


def mixup_queries(X: np.ndarray, n: int, rng: np.random.Generator,
                  alpha: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` mixtures of random pairs of distinct rows of ``X``, with ``lam`` uniform in
    (0, 1) or ``Beta(alpha, alpha)``. Returns ``(queries, pairs (n, 2), lam)``.

    >>> X = np.array([[0.0, 0.0], [1.0, 2.0]])
    >>> Q, pairs, lam = mixup_queries(X, 3, np.random.default_rng(0))
    >>> bool(np.allclose(Q, lam[:, None] * X[pairs[:, 0]] + (1 - lam[:, None]) * X[pairs[:, 1]]))
    True
    """
    i = rng.integers(len(X), size=n)
    j = (i + rng.integers(1, max(len(X), 2), size=n)) % len(X)
    lam = rng.uniform(size=n) if alpha is None else rng.beta(alpha, alpha, size=n)
    Q = lam[:, None] * X[i] + (1 - lam[:, None]) * X[j]
    return Q, np.column_stack([i, j]), lam


def mixup(oracle: Oracle, X_public: np.ndarray, n: int, rng: np.random.Generator,
          classes=None, alpha: float | None = None, surrogate: str = "mlp",
          client_id: str | None = None) -> AttackResult:
    """Query ``n`` mixup mixtures of public records and retrain on the answers; the
    stream's meta has the ``pairs`` (indices into ``X_public``) and ``lam``."""
    Q, pairs, lam = mixup_queries(X_public, min(n, oracle.remaining), rng, alpha)
    return retrain_on(oracle, Q, "mixup", rng, classes, surrogate, client_id=client_id,
                      meta={"pairs": pairs, "lam": lam, "alpha": alpha})


def seed_noise_queries(X_public: np.ndarray, n: int, rng: np.random.Generator,
                       n_seed: int = 30, noise: float = 0.3, box: Box | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` copies of ``n_seed`` random public records plus Gaussian noise of ``noise`` x
    each feature's public std, clipped to ``box``. Returns ``(queries, seed index)``.

    >>> X = np.random.default_rng(1).normal(size=(50, 3))
    >>> Q, seed = seed_noise_queries(X, 2000, np.random.default_rng(0), n_seed=5)
    >>> len(np.unique(seed)), round(float(((Q - X[seed]) / X.std(axis=0)).std()), 2)
    (5, 0.3)
    """
    seeds = rng.choice(len(X_public), size=min(n_seed, len(X_public)), replace=False)
    seed = seeds[rng.integers(len(seeds), size=n)]
    Q = X_public[seed] + noise * X_public.std(axis=0) * rng.normal(size=(n, X_public.shape[1]))
    return (Q if box is None else np.clip(Q, *box)), seed


def seed_noise(oracle: Oracle, X_public: np.ndarray, box: Box, n: int,
               rng: np.random.Generator, classes=None, n_seed: int = 30, noise: float = 0.3,
               surrogate: str = "mlp", client_id: str | None = None) -> AttackResult:
    """Query noisy copies of ``n_seed`` public seeds (see :func:`seed_noise_queries`),
    retrain on the answers; meta ``seed`` indexes ``X_public``."""
    Q, seed = seed_noise_queries(X_public, min(n, oracle.remaining), rng, n_seed, noise, box)
    return retrain_on(oracle, Q, "seed-noise", rng, classes, surrogate, client_id=client_id,
                      meta={"seed": seed, "noise": noise, "n_seed": n_seed})


def fgsm_augmentation(oracle: Oracle, seed_X: np.ndarray, box: Box, n: int,
                      rng: np.random.Generator, classes=None, eps: float = 0.2,
                      scale: np.ndarray | None = None, surrogate: str = "mlp",
                      client_id: str | None = None) -> AttackResult:
    """FGSM augmentation within ``n`` queries: answer the seeds, then per round retrain the
    local surrogate on everything answered and query ``x + eps * scale * sign(grad_x
    loss(x, oracle label))`` for every point so far (the set doubles; the last round is a
    random subset). ``scale`` is each feature's std (default: the seeds' std).

    >>> from victims import load_victim
    >>> v = load_victim("cancer-logreg", "label")
    >>> r = fgsm_augmentation(Oracle(v.answer, 40), v.X_public[:10], (v.lower, v.upper), 40,
    ...                       np.random.default_rng(0), v.classes, surrogate="logreg")
    >>> r.n_queries, r.stream.meta["rounds"]
    (40, 2)
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    seed_X = np.asarray(seed_X, dtype=float)
    scale = seed_X.std(axis=0) if scale is None else np.asarray(scale, dtype=float)
    step = eps * scale
    n = min(n, oracle.remaining)
    S = seed_X[:n]
    Y = answer_labels(oracle(S), classes)
    model_seed = int(rng.integers(2**31))
    rounds = 0
    while oracle.n_queries < n and oracle.remaining > 0:
        sub = fit_surrogate(S, Y, surrogate, model_seed)
        if isinstance(sub, DummyClassifier):
            direction = rng.choice([-1.0, 1.0], size=S.shape)
        else:  # loss = -log p_y, so sign(grad loss) = -sign(grad p_y)
            direction = -np.sign(class_gradient(sub, S, np.searchsorted(sub.classes_, Y)))
        new = np.clip(S + step * direction, lower, upper)
        m = min(len(new), n - oracle.n_queries, oracle.remaining)
        if m < len(new):
            new = new[rng.choice(len(new), size=m, replace=False)]
        S = np.vstack([S, new])
        Y = np.concatenate([Y, answer_labels(oracle(new), classes)])
        rounds += 1
    return _result("fgsm-augmentation", oracle, classes, surrogate, model_seed, client_id,
                   {"rounds": rounds, "n_seed": len(seed_X), "eps": eps})


def feature_sweep_queries(seeds: np.ndarray, box: Box, n_grid: int = 10,
                          order: str = "seed") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every seed x every non-constant feature x ``n_grid`` values evenly spaced across the
    feature's box, one feature changed at a time (a grid value equal to the seed's own is
    skipped, so each row differs from its seed in exactly one feature).

    ``order="seed"`` sweeps seed by seed, feature by feature; ``"interleaved"`` sends
    each (feature, value) for all seeds in turn. Returns ``(queries, seed index, feature)``.

    >>> Q, s, f = feature_sweep_queries(np.array([[0.5, 0.5]]), (np.zeros(2), np.ones(2)), 3)
    >>> Q.tolist(), f.tolist()
    ([[0.0, 0.5], [1.0, 0.5], [0.5, 0.0], [0.5, 1.0]], [0, 0, 1, 1])
    """
    if order not in ("seed", "interleaved"):
        raise ValueError(f"unknown order {order!r}; use 'seed' or 'interleaved'")
    seeds = np.atleast_2d(np.asarray(seeds, dtype=float))
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    feats = np.flatnonzero(upper > lower)
    grid = np.linspace(lower[feats], upper[feats], n_grid, axis=1)  # (m, g)
    s, m, g = len(seeds), len(feats), n_grid
    Q = np.broadcast_to(seeds[:, None, None, :], (s, m, g, seeds.shape[1])).copy()
    Q[:, np.arange(m)[:, None], np.arange(g)[None, :], feats[:, None]] = grid
    keep = grid[None] != seeds[:, feats][:, :, None]  # (s, m, g)
    seed_idx = np.broadcast_to(np.arange(s)[:, None, None], (s, m, g))
    feat_idx = np.broadcast_to(feats[None, :, None], (s, m, g))
    if order == "interleaved":
        Q, keep = Q.transpose(1, 2, 0, 3), keep.transpose(1, 2, 0)
        seed_idx, feat_idx = seed_idx.transpose(1, 2, 0), feat_idx.transpose(1, 2, 0)
    return Q[keep], seed_idx[keep], feat_idx[keep]


def feature_sweep(oracle: Oracle, seeds: np.ndarray, box: Box, n: int,
                  rng: np.random.Generator, classes=None, n_grid: int = 10,
                  order: str = "seed", surrogate: str = "mlp",
                  client_id: str | None = None) -> AttackResult:
    """Send (the first ``n`` rows of) the one-feature-at-a-time sweep of ``seeds`` (see
    :func:`feature_sweep_queries`) and retrain on the answers. Meta: ``seeds``, and per
    row ``seed`` (index into ``seeds``) and ``feature``."""
    Q, seed_idx, feat_idx = feature_sweep_queries(seeds, box, n_grid, order)
    m = min(n, oracle.remaining, len(Q))
    return retrain_on(oracle, Q[:m], "feature-sweep", rng, classes, surrogate,
                      client_id=client_id,
                      meta={"seeds": np.asarray(seeds, dtype=float), "seed": seed_idx[:m],
                            "feature": feat_idx[:m], "n_grid": n_grid, "order": order})
