"""Every attack under one signature, ``runner(victim, oracle, budget, rng) -> AttackResult``.

The attacker may use the victim's feature box, class labels, feature count and
public records (as a real attacker with some domain data would); never its model
or its train/calibration data. ``ATTACKS[name].applies_to`` lists the victims (and
output modes) it makes sense for, so a benchmark can loop::

    for name, spec in ATTACKS.items():
        for victim_name in spec.applies_to: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from attacks.boundary_walk import boundary_walk
from attacks.equation_solving import (
    equation_solving_linear,
    equation_solving_mlp,
    softmax_victim,
)
from attacks.jbda import jacobian_augmentation, seed_records
from attacks.knockoff import activethief, copycat, knockoff_adaptive, knockoff_random
from attacks.oracle import Oracle
from attacks.path_finding import path_finding
from attacks.pools import natural_pool
from attacks.result import AttackResult
from attacks.retraining import (
    adaptive_retraining,
    line_search_retraining,
    uniform_retraining,
)
from victims import load_victim

ALL = ("digits-mlp", "cancer-logreg", "wine-tree", "digits-svm")
Runner = Callable[[object, Oracle, int, np.random.Generator], AttackResult]


@dataclass(frozen=True)
class AttackSpec:
    """An attack runner, the victims it applies to and the output modes it needs."""

    runner: Runner
    applies_to: tuple[str, ...]
    output_modes: tuple[str, ...] = ("proba", "rounded", "label")
    default_budget: int = 300
    description: str = ""


def _box(v):
    return (v.lower, v.upper)


def _anchors(v, rng, k=10):
    return v.X_public[rng.choice(len(v.X_public), size=min(k, len(v.X_public)), replace=False)]


def _pool(v, budget, rng):
    return natural_pool(v, max(3 * budget, 1000), rng)


ATTACKS: dict[str, AttackSpec] = {
    "equation-solving": AttackSpec(
        lambda v, o, b, r: equation_solving_linear(o, _box(v), r, v.classes),
        ("cancer-logreg", "digits-softmax", "wine-softmax"), ("proba",), 65,
        "Tramèr: d+1 queries solve a (multinomial) logistic regression exactly"),
    "mlp-equation-solving": AttackSpec(
        lambda v, o, b, r: equation_solving_mlp(o, _box(v), r, v.classes, n=b),
        ("digits-mlp",), ("proba",), 1500,
        "Tramèr: alpha x unknowns random queries, then fit a one-hidden-layer net"),
    "path-finding": AttackSpec(
        lambda v, o, b, r: path_finding(o, _box(v), r, v.classes),
        ("wine-tree",), ("proba", "rounded"), 1000,
        "Tramèr: leaf-id path finding for decision trees"),
    "uniform": AttackSpec(
        lambda v, o, b, r: uniform_retraining(o, _box(v), b, r, v.classes), ALL,
        description="label-only retraining on uniform queries in the box"),
    "line-search": AttackSpec(
        lambda v, o, b, r: line_search_retraining(o, _box(v), b, r, v.classes,
                                                  anchors=_anchors(v, r)), ALL,
        description="Lowd-Meek line search to the boundary, then retraining"),
    "adaptive-retraining": AttackSpec(
        lambda v, o, b, r: adaptive_retraining(o, _box(v), b, r, v.classes), ALL,
        description="Tramèr adaptive retraining (least-confident uniform candidates)"),
    "jbda": AttackSpec(
        lambda v, o, b, r: jacobian_augmentation(
            o, seed_records(v.X_public, v.y_public, 15, r), _box(v), b, r, v.classes), ALL,
        description="Papernot 2017 Jacobian-based dataset augmentation"),
    "t-rnd": AttackSpec(
        lambda v, o, b, r: jacobian_augmentation(
            o, seed_records(v.X_public, v.y_public, 15, r), _box(v), b, r, v.classes,
            targeted=True), ALL,
        description="Juuti 2019 T-RND: Jacobian steps towards random target classes"),
    "knockoff": AttackSpec(
        lambda v, o, b, r: knockoff_random(o, _pool(v, b, r), b, r, v.classes), ALL,
        default_budget=500, description="Knockoff Nets, random policy, off-distribution pool"),
    "knockoff-adaptive": AttackSpec(
        lambda v, o, b, r: knockoff_adaptive(o, _pool(v, b, r), b, r, v.classes), ALL,
        default_budget=500, description="Knockoff Nets, adaptive (gradient bandit) policy"),
    "copycat": AttackSpec(
        lambda v, o, b, r: copycat(o, _pool(v, b, r), b, r, v.classes), ALL,
        default_budget=500, description="CopyCat on non-problem-domain data only"),
    "copycat-pd": AttackSpec(
        lambda v, o, b, r: copycat(o, _pool(v, b, r), b, r, v.classes, domain_X=v.X_public),
        ALL, default_budget=500, description="CopyCat with 20% problem-domain records"),
    "activethief-uncertainty": AttackSpec(
        lambda v, o, b, r: activethief(o, _pool(v, b, r), b, r, v.classes), ALL,
        default_budget=500, description="ActiveThief, entropy selection"),
    "activethief-k-center": AttackSpec(
        lambda v, o, b, r: activethief(o, _pool(v, b, r), b, r, v.classes,
                                       strategy="k-center"), ALL,
        default_budget=500, description="ActiveThief, k-center selection"),
    "boundary-walk": AttackSpec(
        lambda v, o, b, r: boundary_walk(o, _box(v), b, r, v.classes, anchors=_anchors(v, r)),
        ALL, description="decision-based boundary walk (HopSkipJump-like)"),
}
"""Attack name -> :class:`AttackSpec`."""


def load_target(name: str, output_mode: str = "proba", seed: int = 0):
    """A victim by name: the registry's victims plus ``digits-softmax`` / ``wine-softmax``."""
    if name.endswith("-softmax"):
        return softmax_victim(name, output_mode=output_mode, seed=seed)
    return load_victim(name, output_mode=output_mode, seed=seed)


def run_attack(name: str, victim, budget: int | None = None, seed: int = 0,
               oracle: Oracle | None = None) -> AttackResult:
    """Run attack ``name`` against ``victim`` (a local oracle unless one is given).

    >>> from victims import load_victim
    >>> r = run_attack("equation-solving", load_victim("cancer-logreg"), seed=0)
    >>> r.n_queries
    31
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    spec = ATTACKS[name]
    if victim.output_mode not in spec.output_modes:
        raise ValueError(f"attack {name!r} needs output mode {' or '.join(spec.output_modes)}; "
                         f"victim {victim.name!r} returns {victim.output_mode!r}")
    budget = spec.default_budget if budget is None else budget
    oracle = Oracle(victim.answer, budget) if oracle is None else oracle
    result = spec.runner(victim, oracle, budget, np.random.default_rng(seed))
    result.stream.client_id = f"attack-{name}-{seed}"
    return result
