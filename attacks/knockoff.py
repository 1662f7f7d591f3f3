"""Knockoff Nets (Orekondy et al. 2019), CopyCat (Correia-Silva et al. 2018) and
ActiveThief (Pal et al. 2020): train a surrogate on the victim's answers for
natural data drawn from a pool that is not the victim's training distribution.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.dummy import DummyClassifier

from attacks.oracle import Oracle, answer_labels
from attacks.result import AttackResult
from attacks.retraining import _result
from attacks.surrogate import fit_surrogate


def knockoff_random(oracle: Oracle, pool: np.ndarray, n: int, rng: np.random.Generator,
                    classes=None, surrogate: str = "mlp", batch_size: int = 50,
                    client_id: str | None = None) -> AttackResult:
    """Knockoff with the random policy: ``n`` pool samples without replacement."""
    X = pool[rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    for start in range(0, len(X), batch_size):
        oracle(X[start:start + batch_size])
    return _result("knockoff", oracle, classes, surrogate, int(rng.integers(2**31)),
                   client_id)


def knockoff_adaptive(oracle: Oracle, pool: np.ndarray, n: int, rng: np.random.Generator,
                      classes=None, n_actions: int = 10, batch_size: int = 20,
                      lr: float = 0.5, surrogate: str = "mlp",
                      client_id: str | None = None) -> AttackResult:
    """Knockoff with the adaptive policy: a gradient bandit over ``n_actions`` pool
    clusters, rewarded by the surrogate's loss on the answers it just got
    (uncertainty) plus the novelty of the labels (diversity)."""
    seed = int(rng.integers(2**31))
    actions = KMeans(n_clusters=n_actions, n_init=3, random_state=seed).fit_predict(pool)
    available = np.ones(len(pool), dtype=bool)
    prefs = np.zeros(n_actions)
    mean_reward, t = 0.0, 0
    model = None
    while oracle.n_queries < n and available.any():
        pi = np.exp(prefs - prefs.max())
        pi /= pi.sum()
        open_actions = np.unique(actions[available])
        pi_open = np.where(np.isin(np.arange(n_actions), open_actions), pi, 0)
        a = int(rng.choice(n_actions, p=pi_open / pi_open.sum()))
        members = np.flatnonzero(available & (actions == a))
        m = min(batch_size, len(members), n - oracle.n_queries)
        pick = rng.choice(members, size=m, replace=False)
        available[pick] = False
        labels = answer_labels(oracle(pool[pick]), classes)
        if model is None or isinstance(model, DummyClassifier):
            loss = 1.0
        else:
            P = model.predict_proba(pool[pick])
            col = np.searchsorted(model.classes_, labels)
            known = (col < len(model.classes_)) & (model.classes_[np.minimum(col, len(model.classes_) - 1)] == labels)
            p = np.where(known, P[np.arange(m), np.minimum(col, P.shape[1] - 1)], 1e-3)
            loss = float(np.mean(-np.log(np.clip(p, 1e-3, 1))))
        seen = answer_labels(oracle.answers[:-m], classes) if oracle.n_queries > m else []
        diversity = float(np.mean(~np.isin(labels, seen))) if len(seen) else 1.0
        reward = loss + diversity
        t += 1
        mean_reward += (reward - mean_reward) / t
        onehot = np.eye(n_actions)[a]
        prefs += lr * (reward - mean_reward) * (onehot - pi)
        if t % 5 == 0:
            model = fit_surrogate(oracle.queries, answer_labels(oracle.answers, classes),
                                  surrogate, seed)
    return _result("knockoff-adaptive", oracle, classes, surrogate, seed, client_id,
                   {"preferences": prefs.round(3).tolist()})


def copycat(oracle: Oracle, pool: np.ndarray, n: int, rng: np.random.Generator,
            classes=None, domain_X: np.ndarray | None = None, domain_fraction: float = 0.2,
            surrogate: str = "mlp", client_id: str | None = None) -> AttackResult:
    """CopyCat: label non-problem-domain data (the pool) with the victim; with
    ``domain_X``, a ``domain_fraction`` of the queries are problem-domain records."""
    n_domain = int(domain_fraction * n) if domain_X is not None else 0
    X = pool[rng.choice(len(pool), size=n - n_domain, replace=len(pool) < n - n_domain)]
    if n_domain:
        X = np.vstack([X, domain_X[rng.choice(len(domain_X), size=n_domain,
                                              replace=len(domain_X) < n_domain)]])
        X = X[rng.permutation(len(X))]
    for start in range(0, len(X), 50):
        oracle(X[start:start + 50])
    name = "copycat-pd" if n_domain else "copycat"
    return _result(name, oracle, classes, surrogate, int(rng.integers(2**31)), client_id,
                   {"n_domain": n_domain})


def activethief(oracle: Oracle, pool: np.ndarray, n: int, rng: np.random.Generator,
                classes=None, strategy: str = "uncertainty", rounds: int = 6,
                surrogate: str = "mlp", client_id: str | None = None) -> AttackResult:
    """ActiveThief: a random initial set from the pool, then per round the pool samples
    the surrogate is least sure of (``uncertainty``: highest entropy) or farthest from
    everything queried (``k-center``, greedy, on standardised features)."""
    if strategy not in ("uncertainty", "k-center"):
        raise ValueError(f"unknown strategy {strategy!r}; use 'uncertainty' or 'k-center'")
    seed = int(rng.integers(2**31))
    n = min(n, len(pool))
    per_round = max(1, n // (rounds + 1))
    available = np.ones(len(pool), dtype=bool)
    first = rng.choice(len(pool), size=per_round, replace=False)
    available[first] = False
    oracle(pool[first])
    mu, sd = pool.mean(axis=0), pool.std(axis=0)
    Z = (pool - mu) / np.where(sd > 0, sd, 1.0)
    while oracle.n_queries < n:
        m = min(per_round, n - oracle.n_queries)
        idx = np.flatnonzero(available)
        if strategy == "uncertainty":
            model = fit_surrogate(oracle.queries, answer_labels(oracle.answers, classes),
                                  surrogate, seed)
            P = model.predict_proba(pool[idx])
            entropy = -(P * np.log(np.clip(P, 1e-12, 1))).sum(axis=1)
            pick = idx[np.argsort(-entropy, kind="stable")[:m]]
        else:
            Zq = (oracle.queries - mu) / np.where(sd > 0, sd, 1.0)
            dist = ((Z[idx, None, :] - Zq[None]) ** 2).sum(axis=2).min(axis=1)
            pick = []
            for _ in range(m):  # greedy k-center: m farthest-first picks
                j = int(dist.argmax())
                pick.append(idx[j])
                dist = np.minimum(dist, ((Z[idx] - Z[idx[j]]) ** 2).sum(axis=1))
            pick = np.asarray(pick)
        available[pick] = False
        oracle(pool[pick])
    return _result(f"activethief-{strategy}", oracle, classes, surrogate, seed, client_id)
