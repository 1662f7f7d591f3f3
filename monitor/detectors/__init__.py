"""The calibrated per-query detectors and the one registry that names them.

Every detector follows the protocol of :mod:`monitor.detectors.base`: it calibrates on
held-out data (what the profile stores for it), turns each distinct query into a conformal
p-value (small = unusual), keeps per-client state only under the keys it declares, and says
in words what an unusual p-value means. The evidence layer (:mod:`monitor.evidence`) turns
p-values into window counts and scores.

* :class:`DensityDetector` (training-set specific): far from the training data;
* :class:`LocalDensityDetector` (training-set specific): far relative to the data's own local
  spacing;
* :class:`BoundaryDetector` (victim specific): near the decision boundary;
* :class:`ChainDetector` (victim-specific distribution shift): new queries unusually close to
  the client's own earlier ones (perturbation chains);
* :class:`LabelChangeDetector` (victim specific, labels only): new queries unusually close to
  an earlier query of the client that got another label (line searches, bisections);
* :class:`BlockDetector` (set-level, off by default): a client's last 16 evidence units, as
  a set, off the data's correlation structure (mixup, seed noise, feature sweeps).

Adding a detector is one module defining the class plus one :func:`register_detector` line
below (see docs/architecture.md, "How to add a detector").

>>> list(REGISTRY)
['density', 'local_density', 'boundary', 'chain', 'label_change', 'block']
"""

from __future__ import annotations

from typing import Any

from monitor.detectors.base import (
    Batch,
    CalibrationData,
    Detector,
    DetectorState,
    FittedProfile,
    HeldOutSplit,
    StatelessDetector,
)
from monitor.detectors.block import BlockDetector
from monitor.detectors.boundary import BoundaryDetector
from monitor.detectors.chain import ChainDetector
from monitor.detectors.density import DensityDetector
from monitor.detectors.label_change import LabelChangeDetector
from monitor.detectors.local_density import LocalDensityDetector

REGISTRY: dict[str, type[Detector]] = {}
"""Detector name -> class, in the order verdicts list them."""


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Add a detector class to :data:`REGISTRY` under ``cls.name`` (usable as a decorator)."""
    REGISTRY[cls.name] = cls
    return cls


register_detector(DensityDetector)
register_detector(LocalDensityDetector)
register_detector(BoundaryDetector)
register_detector(ChainDetector)
register_detector(LabelChangeDetector)
register_detector(BlockDetector)


def build_detectors(profile: FittedProfile, config: Any) -> list[Detector]:
    """The detectors named in ``config.detectors`` (a MonitorConfig), in that order, bound to
    ``profile``."""
    from monitor.errors import InvalidInput

    missing = [n for n in config.detectors if n not in profile.calibration_]
    if missing:
        raise InvalidInput(f"the profile has no calibration for detector(s) "
                           f"{', '.join(missing)}; refit it with `extraction-monitor profile`")
    return [REGISTRY[name](profile, config) for name in config.detectors]


OUTPUT_KINDS = ("proba", "labels", "values", "none")
"""What a prediction API may answer: probabilities, labels, a regressor's values, nothing."""


def evidence_notes(profile: FittedProfile, detectors, outputs: str = "proba",
                   has_model: bool = False, exposure: bool = True) -> list[str]:
    """One sentence per detector of ``detectors`` (names) — and for exposure — that gets no
    evidence when the API answers ``outputs`` (one of :data:`OUTPUT_KINDS`) and the monitor
    has (``has_model``) or lacks the victim model. What serving logs at startup and
    ``analyze`` prints as a warning; empty when every detector has what it needs.

    >>> class P:  # a probability classifier's profile
    ...     boundary_kind_, task_ = "margin", "classification"
    >>> evidence_notes(P(), ["density", "boundary"], "labels")[0][:52]
    'boundary: no evidence: the answers carry no probabil'
    >>> evidence_notes(P(), ["density", "boundary"], "labels", has_model=True)
    []
    """
    if outputs not in OUTPUT_KINDS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {outputs!r}")
    notes = []
    kind = getattr(profile, "boundary_kind_", "margin")
    regression = getattr(profile, "task_", "classification") == "regression"
    if "boundary" in detectors:
        if kind == "margin" and outputs != "proba" and not has_model:
            notes.append("boundary: no evidence: the answers carry no probabilities and no "
                         "model was given to compute margins; give the model (Monitor(model=...)"
                         ", --model) or answer with probabilities")
        elif kind == "decision" and not has_model:
            notes.append("boundary: no evidence: the model has no predict_proba and its "
                         "decision_function margins need the model itself; give it "
                         "(Monitor(model=...), --model)")
        elif kind == "none" and regression:
            notes.append("boundary: off for a regressor (no decision boundary; see "
                         "docs/detectors.md); density, local_density and chain still apply")
        elif kind == "none":
            notes.append("boundary: no evidence: the model answers labels only (no "
                         "predict_proba, no decision_function), so no margin exists; density, "
                         "local_density and chain still apply")
    if "label_change" in detectors:
        if regression:
            notes.append("label_change: off for a regressor (its answers carry no labels)")
        elif outputs in ("none", "values") and not has_model:
            notes.append("label_change: no evidence: the answers carry no labels and no model "
                         "was given to label the queries")
    if exposure and outputs == "none" and not has_model:
        notes.append("exposure: not measured: neither the answers nor a model are known")
    return notes


__all__ = [
    "REGISTRY", "Batch", "BlockDetector", "BoundaryDetector", "CalibrationData", "ChainDetector",
    "DensityDetector", "LabelChangeDetector", "LocalDensityDetector", "Detector", "DetectorState", "FittedProfile", "HeldOutSplit",
    "StatelessDetector",
    "OUTPUT_KINDS", "build_detectors", "evidence_notes", "register_detector",
]
