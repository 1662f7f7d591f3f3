"""Adaptive attackers that try to hide an attack stream from a monitor."""

from __future__ import annotations

import numpy as np

from attacks.streams import ClientStream, poisson_times


def mix_with_public(attack: ClientStream, victim, ratio: float, rng: np.random.Generator,
                    client_id: str | None = None) -> ClientStream:
    """Interleave in-distribution public records with the attack queries: ``ratio``
    public records per attack query (e.g. 1.0 = half the stream is camouflage).
    The attack queries keep their order."""
    if ratio < 0:
        raise ValueError(f"ratio must be >= 0, got {ratio}")
    n_cover = int(round(ratio * attack.n_queries))
    cover = victim.X_public[rng.choice(len(victim.X_public), size=n_cover,
                                       replace=n_cover > len(victim.X_public))]
    is_cover = np.zeros(attack.n_queries + n_cover, dtype=bool)
    is_cover[rng.choice(len(is_cover), size=n_cover, replace=False)] = True
    X = np.empty((len(is_cover), attack.X.shape[1]))
    X[~is_cover], X[is_cover] = attack.X, cover
    return ClientStream(client_id or f"{attack.client_id}-mix{ratio:g}", attack.kind, True, X,
                        poisson_times(len(X), rng, 1.0),
                        meta={**_plain(attack.meta), "mix_ratio": ratio, "is_cover": is_cover})


def split_sybils(attack: ClientStream, k: int, rng: np.random.Generator) -> list[ClientStream]:
    """Split one attack over ``k`` sybil clients, round-robin, each keeping send order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    owner = np.arange(attack.n_queries) % k
    ts = attack.timestamps()
    return [
        ClientStream(f"{attack.client_id}-sybil{i}", attack.kind, True, attack.X[owner == i],
                     ts[owner == i], meta={**_plain(attack.meta), "sybil": i, "of": k})
        for i in range(k)
    ]


def slow_down(attack: ClientStream, rng: np.random.Generator, mean_gap: float = 600.0,
              client_id: str | None = None) -> ClientStream:
    """The same queries spread over time: exponential gaps of ``mean_gap`` seconds."""
    return ClientStream(client_id or f"{attack.client_id}-slow", attack.kind, True, attack.X,
                        poisson_times(attack.n_queries, rng, mean_gap),
                        meta={**_plain(attack.meta), "mean_gap": mean_gap})


def _plain(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "result"}
