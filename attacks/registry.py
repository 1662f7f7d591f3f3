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

from attacks.augmentation import feature_sweep, fgsm_augmentation, mixup, seed_noise
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
from attacks.pools import in_distribution_pool, marginals_pool, natural_pool
from attacks.regression import regression_equation_solving, regression_retraining
from attacks.result import AttackResult
from attacks.retraining import (
    adaptive_retraining,
    line_search_retraining,
    retrain_on,
    uniform_retraining,
)
from victims import load_victim
from victims.registry import ALL_VICTIMS, REGRESSION_VICTIMS

ALL = ("digits-mlp", "cancer-logreg", "wine-tree", "digits-svm")
"""The four original (classification) victims."""
CLASSIFIERS = tuple(n for n in ALL_VICTIMS if n not in REGRESSION_VICTIMS)
"""Every classification victim: the original four and the extra families."""
REGRESSORS = REGRESSION_VICTIMS
"""The regression victims: only the regression attacks apply to them."""
REAL_VALUED = ("proba", "rounded")
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


def _seeds(v, rng, k):
    return seed_records(v.X_public, v.y_public, k, rng)


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
        lambda v, o, b, r: uniform_retraining(o, _box(v), b, r, v.classes), CLASSIFIERS,
        description="label-only retraining on uniform queries in the box"),
    "line-search": AttackSpec(
        lambda v, o, b, r: line_search_retraining(o, _box(v), b, r, v.classes,
                                                  anchors=_anchors(v, r)), CLASSIFIERS,
        description="Lowd-Meek line search to the boundary, then retraining"),
    "adaptive-retraining": AttackSpec(
        lambda v, o, b, r: adaptive_retraining(o, _box(v), b, r, v.classes), CLASSIFIERS,
        description="Tramèr adaptive retraining (least-confident uniform candidates)"),
    "jbda": AttackSpec(
        lambda v, o, b, r: jacobian_augmentation(
            o, seed_records(v.X_public, v.y_public, 15, r), _box(v), b, r, v.classes),
        CLASSIFIERS, description="Papernot 2017 Jacobian-based dataset augmentation"),
    "t-rnd": AttackSpec(
        lambda v, o, b, r: jacobian_augmentation(
            o, seed_records(v.X_public, v.y_public, 15, r), _box(v), b, r, v.classes,
            targeted=True), CLASSIFIERS,
        description="Juuti 2019 T-RND: Jacobian steps towards random target classes"),
    "knockoff": AttackSpec(
        lambda v, o, b, r: knockoff_random(o, _pool(v, b, r), b, r, v.classes), CLASSIFIERS,
        default_budget=500, description="Knockoff Nets, random policy, off-distribution pool"),
    "knockoff-adaptive": AttackSpec(
        lambda v, o, b, r: knockoff_adaptive(o, _pool(v, b, r), b, r, v.classes), CLASSIFIERS,
        default_budget=500, description="Knockoff Nets, adaptive (gradient bandit) policy"),
    "copycat": AttackSpec(
        lambda v, o, b, r: copycat(o, _pool(v, b, r), b, r, v.classes), CLASSIFIERS,
        default_budget=500, description="CopyCat on non-problem-domain data only"),
    "copycat-pd": AttackSpec(
        lambda v, o, b, r: copycat(o, _pool(v, b, r), b, r, v.classes, domain_X=v.X_public),
        CLASSIFIERS, default_budget=500, description="CopyCat with 20% problem-domain records"),
    "activethief-uncertainty": AttackSpec(
        lambda v, o, b, r: activethief(o, _pool(v, b, r), b, r, v.classes), CLASSIFIERS,
        default_budget=500, description="ActiveThief, entropy selection"),
    "activethief-k-center": AttackSpec(
        lambda v, o, b, r: activethief(o, _pool(v, b, r), b, r, v.classes,
                                       strategy="k-center"), CLASSIFIERS,
        default_budget=500, description="ActiveThief, k-center selection"),
    "boundary-walk": AttackSpec(
        lambda v, o, b, r: boundary_walk(o, _box(v), b, r, v.classes, anchors=_anchors(v, r)),
        CLASSIFIERS, description="decision-based boundary walk (HopSkipJump-like)"),
    "mixup": AttackSpec(
        lambda v, o, b, r: mixup(o, v.X_public, b, r, v.classes), CLASSIFIERS,
        default_budget=500,
        description="mixup: convex mixtures of random pairs of public records, retraining"),
    "seed-noise": AttackSpec(
        lambda v, o, b, r: seed_noise(o, v.X_public, _box(v), b, r, v.classes), CLASSIFIERS,
        default_budget=500,
        description="30 public seeds plus Gaussian noise (0.3 x feature std), retraining"),
    "fgsm-augmentation": AttackSpec(
        lambda v, o, b, r: fgsm_augmentation(o, _seeds(v, r, 20), _box(v), b, r, v.classes,
                                             scale=v.X_public.std(axis=0)), CLASSIFIERS,
        description="FGSM steps (0.2 x feature std) up the surrogate's loss, JbDA-style rounds"),
    "feature-sweep": AttackSpec(
        lambda v, o, b, r: feature_sweep(o, _seeds(v, r, 20), _box(v), b, r, v.classes,
                                         order="interleaved"), CLASSIFIERS, default_budget=1000,
        description="20 seeds x every feature x 10 values across its box, one at a time "
                    "(each feature value for all seeds in turn)"),
    "marginals-pool": AttackSpec(
        lambda v, o, b, r: retrain_on(o, marginals_pool(v.X_public, b, r), "marginals-pool", r,
                                      v.classes), CLASSIFIERS, default_budget=500,
        description="pool of per-feature public marginals (correlations broken), retraining"),
    "in-distribution-thief": AttackSpec(
        lambda v, o, b, r: retrain_on(o, in_distribution_pool(v.X_public, b, r),
                                      "in-distribution-thief", r, v.classes), CLASSIFIERS,
        default_budget=500,
        description="real public records (then repeats), retraining: measurable by exposure"),
    "in-distribution-thief-jitter": AttackSpec(
        lambda v, o, b, r: retrain_on(
            o, in_distribution_pool(v.X_public, b, r, jitter=0.01, box=_box(v)),
            "in-distribution-thief-jitter", r, v.classes), CLASSIFIERS, default_budget=500,
        description="in-distribution thief; repeats beyond the public pool get 1% std jitter"),
    "regression-equation-solving": AttackSpec(
        lambda v, o, b, r: regression_equation_solving(o, _box(v), r), ("diabetes-ridge",),
        REAL_VALUED, 50, "Tramèr: d+1 queries solve a linear regression exactly"),
    "regression-retraining": AttackSpec(
        lambda v, o, b, r: regression_retraining(o, _box(v), b, r, seeds=v.X_public),
        REGRESSORS, REAL_VALUED,
        description="public-seeded noisy queries, a random-forest regressor on the answers"),
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
