"""The three demo attacks as stream generators, and the demo's client mix.

``uniform_random``, ``jbda`` and ``line_search`` really run against an
:class:`~attacks.oracle.Oracle` and return the :class:`ClientStream` of queries
they sent (the surrogate they stole is in ``stream.meta["result"]``).
"""

from __future__ import annotations

import numpy as np

from attacks.benign import (
    drifted_records,
    duplicate_records,
    one_class_user,
    random_records,
    sorted_batch,
)
from attacks.jbda import jacobian_augmentation, seed_records
from attacks.oracle import Oracle
from attacks.result import AttackResult
from attacks.retraining import line_search_retraining, uniform_retraining
from attacks.streams import ClientStream, with_times

Box = tuple[np.ndarray, np.ndarray]


def _stream(result: AttackResult, client_id: str | None) -> ClientStream:
    stream = result.stream
    if client_id is not None:
        stream.client_id = client_id
    stream.meta["result"] = result
    return stream


def uniform_random(oracle: Oracle, victim_box: Box, n: int, rng: np.random.Generator,
                   classes: np.ndarray | None = None, client_id: str | None = None
                   ) -> ClientStream:
    """Uniform queries in the feature box (the label-only uniform retraining attack)."""
    result = uniform_retraining(oracle, victim_box, n - oracle.n_queries, rng, classes,
                                client_id=client_id)
    return _stream(result, client_id)


def jbda(oracle: Oracle, seed_X: np.ndarray, victim_box: Box, n: int,
         rng: np.random.Generator, classes: np.ndarray | None = None, lam: float = 0.1,
         client_id: str | None = None) -> ClientStream:
    """Papernot et al. 2017 JbDA from ``seed_X`` (~10-20 public records), ``n`` queries."""
    result = jacobian_augmentation(oracle, seed_X, victim_box, n, rng,
                                   classes, lam=lam,
                                   client_id=client_id)
    return _stream(result, client_id)


def line_search(oracle: Oracle, victim_box: Box, n: int, rng: np.random.Generator,
                classes: np.ndarray | None = None, anchors: np.ndarray | None = None,
                client_id: str | None = None) -> ClientStream:
    """Label-only boundary line search (bisection between differently-labelled points)."""
    result = line_search_retraining(oracle, victim_box, n, rng,
                                    classes, anchors=anchors,
                                    client_id=client_id)
    return _stream(result, client_id)


def demo_clients(victim, seed: int = 0, n: int = 300) -> list[ClientStream]:
    """Benign users (random, one-class, drifted, duplicates, sorted batch) and the
    three demo attacks (uniform, JbDA, line search), ``n`` queries each.

    >>> from victims import load_victim
    >>> clients = demo_clients(load_victim("cancer-logreg"), seed=0, n=40)
    >>> [(c.kind, c.is_attack, c.n_queries) for c in clients][-3:]
    [('uniform', True, 40), ('jbda', True, 40), ('line-search', True, 40)]
    """
    rng = np.random.default_rng(seed)
    box = (victim.lower, victim.upper)
    streams = [
        random_records(victim, n, rng, client_id=f"benign-random-{seed}"),
        one_class_user(victim, n, rng, client_id=f"benign-one-class-{seed}"),
        drifted_records(victim, n, rng, client_id=f"benign-drift-{seed}"),
        duplicate_records(victim, n, rng, client_id=f"benign-duplicates-{seed}"),
        sorted_batch(victim, n, rng, client_id=f"benign-sorted-batch-{seed}"),
    ]
    attacks = [
        uniform_random(Oracle(victim.answer, n), box, n, rng, victim.classes,
                       client_id=f"attack-uniform-{seed}"),
        jbda(Oracle(victim.answer, n), seed_records(victim.X_public, victim.y_public, 15, rng),
             box, n, rng, victim.classes, client_id=f"attack-jbda-{seed}"),
        line_search(Oracle(victim.answer, n), box, n, rng, victim.classes,
                    anchors=victim.X_public[rng.choice(len(victim.X_public), 10, replace=False)],
                    client_id=f"attack-line-search-{seed}"),
    ]
    streams += [with_times(s, rng, mean_gap=1.0) for s in attacks]
    return streams
