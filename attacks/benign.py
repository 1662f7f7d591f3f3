"""Benign client behaviours, drawn from the victim's public records only.

Every generator takes ``(victim, n, rng)`` and returns a :class:`ClientStream`
whose rows come from ``victim.X_public`` (never the train or calibration split),
optionally perturbed the way real data drifts.
"""

from __future__ import annotations

import numpy as np

from attacks.streams import ClientStream, poisson_times


def _pick(pool_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` records: without replacement when the pool is large enough."""
    return rng.choice(pool_size, size=n, replace=n > pool_size)


def _std(public: np.ndarray) -> np.ndarray:
    """Per-feature public std, 1 where a feature is constant (for z-scoring)."""
    sd = public.std(axis=0)
    return np.where(sd > 0, sd, 1.0)


def _jitter(X: np.ndarray, public: np.ndarray, scale: float,
            rng: np.random.Generator) -> np.ndarray:
    """``X`` plus Gaussian noise of ``scale`` x each feature's public std (constant features
    untouched); features that are never negative in the public data stay non-negative."""
    X = X + rng.normal(size=X.shape) * (scale * public.std(axis=0))
    return np.where(public.min(axis=0) >= 0, np.maximum(X, 0.0), X)


def isolation(public: np.ndarray, k: int = 5) -> np.ndarray:
    """Each record's mean Euclidean distance to its ``k`` nearest *other* records, in
    space standardised by the public std: large for records in the tail.

    >>> X = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [5.0]])
    >>> int(isolation(X).argmax())
    6
    """
    Z = public / _std(public)
    sq = (Z**2).sum(axis=1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * Z @ Z.T, 0.0))
    np.fill_diagonal(D, np.inf)
    k = min(k, len(public) - 1)
    return np.partition(D, k - 1, axis=1)[:, :k].mean(axis=1)


def _feature_grid(public: np.ndarray, feature: int, n_grid: int) -> np.ndarray:
    return np.linspace(public[:, feature].min(), public[:, feature].max(), n_grid)


def _varying(public: np.ndarray) -> np.ndarray:
    """Features whose public range is not a single value."""
    return np.flatnonzero(public.max(axis=0) > public.min(axis=0))


def random_records(victim, n: int, rng: np.random.Generator,
                   client_id: str = "benign-random") -> ClientStream:
    """A user sending random public records (with replacement when ``n`` > pool)."""
    X = victim.X_public[_pick(len(victim.X_public), n, rng)]
    return ClientStream(client_id, "benign-random", False, X, poisson_times(n, rng))


def class_user(victim, n: int, rng: np.random.Generator, n_classes: int = 1,
               client_id: str | None = None) -> ClientStream:
    """A user whose records all belong to ``n_classes`` (1 or 2) randomly chosen classes
    (for a regression victim: quartiles of the public targets)."""
    y = victim.y_public
    if getattr(victim, "task", "classification") == "regression":
        y = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))
    labels = np.unique(y)
    chosen = rng.choice(labels, size=min(n_classes, len(labels)), replace=False)
    pool = np.flatnonzero(np.isin(y, chosen))
    X = victim.X_public[pool[_pick(len(pool), n, rng)]]
    kind = "benign-one-class" if n_classes == 1 else "benign-two-class"
    return ClientStream(client_id or kind, kind, False, X, poisson_times(n, rng),
                        meta={"classes": chosen.tolist()})


def one_class_user(victim, n: int, rng: np.random.Generator,
                   client_id: str = "benign-one-class") -> ClientStream:
    """A user who only ever sends records of one class."""
    return class_user(victim, n, rng, 1, client_id)


def two_class_user(victim, n: int, rng: np.random.Generator,
                   client_id: str = "benign-two-class") -> ClientStream:
    """A user who only sends records of two classes."""
    return class_user(victim, n, rng, 2, client_id)


def drifted_records(victim, n: int, rng: np.random.Generator, noise: float = 0.1,
                    scale_range: tuple[float, float] = (0.9, 1.15),
                    client_id: str = "benign-drift") -> ClientStream:
    """Public records with drift: Gaussian noise (``noise`` x per-feature std) and a
    per-feature scale drawn in ``scale_range``; features that are never negative
    in the public data stay non-negative."""
    public = victim.X_public
    X = public[_pick(len(public), n, rng)]
    scale = rng.uniform(*scale_range, size=public.shape[1])
    X = X * scale + rng.normal(size=X.shape) * (noise * public.std(axis=0))
    X = np.where(public.min(axis=0) >= 0, np.maximum(X, 0.0), X)
    return ClientStream(client_id, "benign-drift", False, X, poisson_times(n, rng),
                        meta={"scale": scale.tolist()})


def rounded_records(victim, n: int, rng: np.random.Generator,
                    client_id: str = "benign-rounded") -> ClientStream:
    """Public records with every value rounded to ``r`` decimals, as a fixed-point column
    stores them: ``r`` is the coarsest whole number of
    decimals whose step is at most the smallest feature spread (so no feature is wiped
    out), or one decimal finer, drawn per client."""
    public = victim.X_public
    spread = public.std(axis=0)
    smallest = spread[spread > 0].min() if (spread > 0).any() else 1.0
    coarsest = max(0, int(np.ceil(-np.log10(smallest))))
    decimals = coarsest + int(rng.integers(0, 2))
    X = np.round(public[_pick(len(public), n, rng)], decimals)
    return ClientStream(client_id, "benign-rounded", False, X, poisson_times(n, rng),
                        meta={"decimals": decimals})


def duplicate_records(victim, n: int, rng: np.random.Generator,
                      client_id: str = "benign-duplicates") -> ClientStream:
    """A client that retries: each record is sent 1-4 times in a row."""
    repeats = rng.integers(1, 5, size=n)
    n_records = int(np.searchsorted(np.cumsum(repeats), n) + 1)
    records = victim.X_public[_pick(len(victim.X_public), n_records, rng)]
    X = np.repeat(records, repeats[:n_records], axis=0)[:n]
    gaps = np.where(np.r_[True, np.any(X[1:] != X[:-1], axis=1)],
                    rng.exponential(2.0, size=n), rng.exponential(0.2, size=n))
    return ClientStream(client_id, "benign-duplicates", False, X, np.cumsum(gaps))


def sorted_batch(victim, n: int, rng: np.random.Generator, feature: int | None = None,
                 client_id: str = "benign-sorted-batch") -> ClientStream:
    """A batch job scoring ``n`` public records sorted by one feature, sent back to back."""
    if feature is None:
        feature = int(rng.choice(np.flatnonzero(victim.X_public.std(axis=0) > 0)))
    X = victim.X_public[_pick(len(victim.X_public), n, rng)]
    X = X[np.argsort(X[:, feature], kind="stable")]
    ts = np.cumsum(rng.exponential(0.01, size=n))
    return ClientStream(client_id, "benign-sorted-batch", False, X, ts,
                        meta={"sorted_by": feature})


def tiny_client(victim, n: int, rng: np.random.Generator,
                client_id: str = "benign-tiny") -> ClientStream:
    """A client that sends at most 20 (and at most ``n``) public records."""
    m = int(rng.integers(1, min(n, 20) + 1))
    X = victim.X_public[_pick(len(victim.X_public), m, rng)]
    return ClientStream(client_id, "benign-tiny", False, X, poisson_times(m, rng, 30.0))


def bursty_client(victim, n: int, rng: np.random.Generator,
                  client_id: str = "benign-bursty") -> ClientStream:
    """Random public records sent in bursts: 10-50 queries ~50 ms apart, then 1-10 min idle."""
    X = victim.X_public[_pick(len(victim.X_public), n, rng)]
    gaps = rng.exponential(0.05, size=n)
    starts = np.cumsum(rng.integers(10, 51, size=n))
    starts = starts[starts < n]
    gaps[starts] = rng.uniform(60.0, 600.0, size=len(starts))
    return ClientStream(client_id, "benign-bursty", False, X, np.cumsum(gaps),
                        meta={"n_bursts": len(starts) + 1})


def tail_jitter(victim, n: int, rng: np.random.Generator, quantile: float = 0.99,
                client_id: str = "benign-tail-jitter") -> ClientStream:
    """A sensor re-measuring a few unusual objects: 1-5 base records from the tail of the
    public data (:func:`isolation` at or above its ``quantile``; the most isolated ones
    when fewer qualify), re-sent in random order with Gaussian jitter of 0.5-3% of each
    feature's std (the scale drawn per client). The length is drawn uniformly in
    ``[100, min(1500, max(n, 100))]``.

    >>> from victims import load_victim
    >>> s = tail_jitter(load_victim("wine-tree"), 300, np.random.default_rng(0))
    >>> 100 <= s.n_queries <= 300, 1 <= len(s.meta["bases"]) <= 5
    (True, True)
    """
    public = victim.X_public
    stat = isolation(public)
    k = int(rng.integers(1, 6))
    tail = np.flatnonzero(stat >= np.quantile(stat, quantile))
    if len(tail) < k:
        bases = np.argsort(-stat, kind="stable")[:k]
    else:
        bases = rng.choice(tail, size=k, replace=False)
    m = int(rng.integers(100, min(1500, max(n, 100)) + 1))
    owner = bases[rng.integers(len(bases), size=m)]
    scale = float(rng.uniform(0.005, 0.03))
    X = _jitter(public[owner], public, scale, rng)
    return ClientStream(client_id, "benign-tail-jitter", False, X, poisson_times(m, rng),
                        meta={"bases": bases.tolist(), "base": owner, "scale": scale})


def what_if(victim, n: int, rng: np.random.Generator,
            client_id: str = "benign-what-if") -> ClientStream:
    """A what-if analyst: 1-3 public records, 1 or 2 features each, each feature set in turn
    to 10-30 grid values spanning its public range (all other features exactly as in the
    record); the pass is repeated 1-3 times while the total stays within ``max(n, one
    pass)``.

    >>> from victims import load_victim
    >>> s = what_if(load_victim("cancer-logreg"), 300, np.random.default_rng(0))
    >>> s.n_queries <= 300, sorted(s.meta)
    (True, ['base', 'feature', 'passes', 'records'])
    """
    public = victim.X_public
    records = rng.choice(len(public), size=int(rng.integers(1, 4)), replace=False)
    varying = _varying(public)
    rows, base, feature = [], [], []
    for r in records:  # at most 3 records x 2 features: a loop over plans, not samples
        for f in rng.choice(varying, size=min(int(rng.integers(1, 3)), len(varying)),
                            replace=False):
            grid = _feature_grid(public, f, int(rng.integers(10, 31)))
            block = np.repeat(public[r][None, :], len(grid), axis=0)
            block[:, f] = grid
            rows.append(block)
            base += [r] * len(grid)
            feature += [f] * len(grid)
    one_pass = np.vstack(rows)
    passes = min(int(rng.integers(1, 4)), max(1, n // len(one_pass)))
    X = np.tile(one_pass, (passes, 1))
    return ClientStream(client_id, "benign-what-if", False, X, poisson_times(len(X), rng, 3.0),
                        meta={"records": records.tolist(), "passes": passes,
                              "base": np.tile(base, passes), "feature": np.tile(feature, passes)})


def prototype_user(victim, n: int, rng: np.random.Generator, k: int = 20,
                   client_id: str = "benign-prototype") -> ClientStream:
    """The ``k`` public records nearest a random prototype record (standardised distance,
    the prototype included), sent in repeated random-order passes with Gaussian jitter of
    0.5-2% of each feature's std (drawn per client), ``n`` queries.

    >>> from victims import load_victim
    >>> s = prototype_user(load_victim("wine-tree"), 50, np.random.default_rng(0))
    >>> s.n_queries, len(s.meta["neighbours"])
    (50, 20)
    """
    public = victim.X_public
    Z = public / _std(public)
    proto = int(rng.integers(len(public)))
    k = min(k, len(public))
    neighbours = np.argsort(((Z - Z[proto]) ** 2).sum(axis=1), kind="stable")[:k]
    passes = -(-n // k)
    owner = neighbours[np.argsort(rng.random((passes, k)), axis=1).ravel()[:n]]
    scale = float(rng.uniform(0.005, 0.02))
    X = _jitter(public[owner], public, scale, rng)
    return ClientStream(client_id, "benign-prototype", False, X, poisson_times(n, rng),
                        meta={"prototype": proto, "neighbours": neighbours.tolist(),
                              "base": owner, "scale": scale})


def full_sweep(victim, n: int, rng: np.random.Generator,
               client_id: str = "benign-full-sweep") -> ClientStream:
    """A sensitivity analysis of one case: one public record, every feature (that varies
    in the public data) swept one at a time over a grid of 10-20 values across its public
    range, sent back to back. The grid shrinks (not below 10) so that the sweep stays
    within ``max(n, 10 x features)`` rows.

    >>> from victims import load_victim
    >>> s = full_sweep(load_victim("wine-tree"), 300, np.random.default_rng(0))
    >>> s.n_queries == 13 * s.meta["n_grid"], s.meta["n_grid"] <= 20
    (True, True)
    """
    public = victim.X_public
    record = int(rng.integers(len(public)))
    feats = _varying(public)
    g = min(int(rng.integers(10, 21)), max(10, n // max(len(feats), 1)))
    grid = np.linspace(public[:, feats].min(axis=0), public[:, feats].max(axis=0), g, axis=1)
    X = np.repeat(public[record][None, :], len(feats) * g, axis=0).reshape(len(feats), g, -1)
    X[np.arange(len(feats))[:, None], np.arange(g)[None, :], feats[:, None]] = grid
    X = X.reshape(len(feats) * g, -1)
    ts = np.cumsum(rng.exponential(0.05, size=len(X)))
    return ClientStream(client_id, "benign-full-sweep", False, X, ts,
                        meta={"record": record, "n_grid": g, "feature": np.repeat(feats, g)})


BENIGN_BEHAVIOURS = {
    "benign-random": random_records,
    "benign-one-class": one_class_user,
    "benign-two-class": two_class_user,
    "benign-drift": drifted_records,
    "benign-rounded": rounded_records,
    "benign-duplicates": duplicate_records,
    "benign-sorted-batch": sorted_batch,
    "benign-tiny": tiny_client,
    "benign-bursty": bursty_client,
    "benign-tail-jitter": tail_jitter,
    "benign-what-if": what_if,
    "benign-prototype": prototype_user,
    "benign-full-sweep": full_sweep,
}
"""Behaviour name -> generator ``(victim, n, rng, client_id=...) -> ClientStream``."""

HARD_BENIGN_KINDS = ("benign-tail-jitter", "benign-what-if", "benign-prototype",
                     "benign-full-sweep")
"""Benign behaviours that look like probing (few records re-sent with jitter, one-feature
sweeps): :func:`benign_streams` includes them only with ``hard=True``."""


def benign_streams(victim, seed: int = 0, n: int = 300,
                   hard: bool = False) -> list[ClientStream]:
    """One client per benign behaviour (two tiny clients, a batch job of ``2 n``).

    With ``hard``, also one client of each of :data:`HARD_BENIGN_KINDS` (appended, so
    the other streams stay the same): a tail-jitter sensor of up to ``5 n`` rows capped
    at 1500; the what-if and sweep kinds choose their own lengths (see their generators).
    They are off by default because the current monitor flags the tail-jitter sensor.

    >>> from victims import load_victim
    >>> streams = benign_streams(load_victim("wine-tree"), seed=0, n=50)
    >>> [(s.kind, s.n_queries) for s in streams][:3]
    [('benign-random', 50), ('benign-one-class', 50), ('benign-two-class', 50)]
    >>> [s.kind for s in benign_streams(load_victim("wine-tree"), n=50, hard=True)][-4:]
    ['benign-tail-jitter', 'benign-what-if', 'benign-prototype', 'benign-full-sweep']
    """
    rng = np.random.default_rng(seed)
    streams = []
    for kind, make in BENIGN_BEHAVIOURS.items():
        if kind in HARD_BENIGN_KINDS and not hard:
            continue
        size = {"benign-sorted-batch": 2 * n, "benign-tail-jitter": 5 * n}.get(kind, n)
        copies = 2 if kind == "benign-tiny" else 1
        for i in range(copies):
            client_id = f"{kind}-{seed}" + (f"-{i}" if copies > 1 else "")
            streams.append(make(victim, size, rng, client_id=client_id))
    return streams
