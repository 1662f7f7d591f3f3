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


def random_records(victim, n: int, rng: np.random.Generator,
                   client_id: str = "benign-random") -> ClientStream:
    """A user sending random public records (with replacement when ``n`` > pool)."""
    X = victim.X_public[_pick(len(victim.X_public), n, rng)]
    return ClientStream(client_id, "benign-random", False, X, poisson_times(n, rng))


def class_user(victim, n: int, rng: np.random.Generator, n_classes: int = 1,
               client_id: str | None = None) -> ClientStream:
    """A user whose records all belong to ``n_classes`` (1 or 2) randomly chosen classes."""
    labels = np.unique(victim.y_public)
    chosen = rng.choice(labels, size=min(n_classes, len(labels)), replace=False)
    pool = np.flatnonzero(np.isin(victim.y_public, chosen))
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


BENIGN_BEHAVIOURS = {
    "benign-random": random_records,
    "benign-one-class": one_class_user,
    "benign-two-class": two_class_user,
    "benign-drift": drifted_records,
    "benign-duplicates": duplicate_records,
    "benign-sorted-batch": sorted_batch,
    "benign-tiny": tiny_client,
    "benign-bursty": bursty_client,
}
"""Behaviour name -> generator ``(victim, n, rng, client_id=...) -> ClientStream``."""


def benign_streams(victim, seed: int = 0, n: int = 300) -> list[ClientStream]:
    """One client per benign behaviour (two tiny clients, a batch job of ``2 n``).

    >>> from victims import load_victim
    >>> streams = benign_streams(load_victim("wine-tree"), seed=0, n=50)
    >>> [(s.kind, s.n_queries) for s in streams][:3]
    [('benign-random', 50), ('benign-one-class', 50), ('benign-two-class', 50)]
    """
    rng = np.random.default_rng(seed)
    streams = []
    for kind, make in BENIGN_BEHAVIOURS.items():
        size = 2 * n if kind == "benign-sorted-batch" else n
        copies = 2 if kind == "benign-tiny" else 1
        for i in range(copies):
            client_id = f"{kind}-{seed}" + (f"-{i}" if copies > 1 else "")
            streams.append(make(victim, size, rng, client_id=client_id))
    return streams
