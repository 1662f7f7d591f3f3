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


def mix_with_cover(attack: ClientStream, victim, attack_fraction: float,
                   rng: np.random.Generator, client_id: str | None = None) -> ClientStream:
    """The attack hidden in benign cover traffic (public records) so that only
    ``attack_fraction`` of the stream's rows (e.g. 0.1-0.2) are attack queries;
    :func:`mix_with_public` with ``ratio = (1 - f) / f``.

    >>> from victims import load_victim
    >>> v = load_victim("wine-tree")
    >>> a = ClientStream("a", "uniform", True, np.zeros((10, v.n_features)))
    >>> s = mix_with_cover(a, v, 0.2, np.random.default_rng(0))
    >>> s.n_queries, float((~s.meta["is_cover"]).mean()), s.client_id
    (50, 0.2, 'a-cover0.2')
    """
    if not 0 < attack_fraction <= 1:
        raise ValueError(f"attack_fraction must be in (0, 1], got {attack_fraction}")
    mixed = mix_with_public(attack, victim, (1 - attack_fraction) / attack_fraction, rng,
                            client_id or f"{attack.client_id}-cover{attack_fraction:g}")
    mixed.meta["attack_fraction"] = attack_fraction
    return mixed


def split_one_per_id(attack: ClientStream, rng: np.random.Generator,
                     group: str | None = None) -> list[ClientStream]:
    """One single-query client per attack query, in send order, each with its own random
    client id (``anon-`` + 12 hex digits, nothing linking it to the attack) and
    ``meta["group"]`` naming the attacker's group/account (default: the attack's client
    id), so a group-aware monitor can be tested. Each keeps its query's send time.

    >>> a = ClientStream("thief", "uniform", True, np.zeros((3, 2)))
    >>> parts = split_one_per_id(a, np.random.default_rng(0))
    >>> [p.n_queries for p in parts], {p.meta["group"] for p in parts}, len({p.client_id for p in parts})
    ([1, 1, 1], {'thief'}, 3)
    """
    group = attack.client_id if group is None else group
    ids = rng.choice(16**12, size=attack.n_queries, replace=False)
    ts = attack.timestamps()
    return [
        ClientStream(f"anon-{int(ids[i]):012x}", attack.kind, True, attack.X[i:i + 1],
                     ts[i:i + 1], meta={"group": group, "index": i, "of": attack.n_queries})
        for i in range(attack.n_queries)
    ]


def slow_down(attack: ClientStream, rng: np.random.Generator, mean_gap: float = 600.0,
              client_id: str | None = None) -> ClientStream:
    """The same queries spread over time: exponential gaps of ``mean_gap`` seconds."""
    return ClientStream(client_id or f"{attack.client_id}-slow", attack.kind, True, attack.X,
                        poisson_times(attack.n_queries, rng, mean_gap),
                        meta={**_plain(attack.meta), "mean_gap": mean_gap})


def _plain(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "result"}
