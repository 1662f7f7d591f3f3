"""``boundary`` (victim specific): near the decision boundary.

The statistic depends on what the model answers (the profile's ``boundary_kind_``):

* ``margin`` — the probability margin's closeness ``1 - (p1 - p2)`` (from the wrapped model,
  or from the probabilities the API returned);
* ``decision`` — for a classifier without probabilities, minus the ``decision_function``
  margin (from the wrapped model: APIs return labels);
* ``tree`` — for a bare decision tree (classifier or regressor), whose outputs are constant on
  each leaf, minus the scaled distance to the nearest split threshold on the query's path
  (:mod:`monitor.geometry`); it needs no outputs at all;
* ``none`` — no evidence (p = 1; the verdict says so): a labels-only classifier has no margin,
  and a regressor has no decision boundary. For regressors this is deliberate: the analogue
  (how steep the prediction surface is around a query) costs extra model calls per query, and
  the regression attacks we know (equation solving, retraining on uniform or perturbed
  queries) are input-distribution attacks that ``density``, ``local_density`` and ``chain``
  see; exposure measures what the answers reveal (R² of a 1-NN copy).

Without the model or the outputs it needs (labels only and no model), a margin or decision
profile also gives no evidence. Calibrated on held-out rows scored by a model that did not
train on them. A window of queries that sit near the boundary more often than real inputs do
is the answer-side trace of boundary walks, line searches, uncertainty sampling, and of convex
mixtures of records of different classes (mixup) or adversarial steps (FGSM), which the
input-side detectors miss.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector
from monitor.detectors.density import calibration_with_tail, stored_tail
from monitor.geometry import decision_closeness, margin_closeness
from monitor.tails import NO_TAIL, tail_pvalues


class BoundaryDetector(StatelessDetector):
    """Near the decision boundary: closer than real inputs usually are."""

    name: ClassVar[str] = "boundary"
    reads_answers: ClassVar[bool] = True
    """Its statistic reads the model's answers (the rounding null asks no model: left out)."""

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        self.kind = getattr(profile, "boundary_kind_", None) or (
            "tree" if profile.tree_ is not None else "margin")
        calibration = profile.calibration_[self.name]
        self.calibration = np.asarray(calibration["statistic"])
        self.tail = stored_tail(calibration)

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        stats = []
        for split in data.splits:
            if split.tree is not None:
                stats.append(split.tree.closeness(split.X, data.scale))
            elif split.proba is not None:
                stats.append(margin_closeness(split.proba))
            elif split.decision is not None:
                stats.append(decision_closeness(split.decision))
        if not stats:  # labels only, or a regressor that is not a tree: nothing to calibrate
            return {"statistic": np.zeros(0), "tail": NO_TAIL}
        return calibration_with_tail(np.concatenate(stats))

    def phrase(self, level: float) -> str:
        what = "a split threshold of the tree" if self.kind == "tree" else \
            "the decision boundary"
        return f"lie closer to {what} than {100 * (1 - level):g}% of real inputs"

    def has_evidence(self, batch: Batch) -> bool:
        """Whether closeness is known for this batch (trees need no outputs)."""
        if self.kind == "tree":
            return True
        if self.kind == "margin":
            return batch.proba is not None
        if self.kind == "decision":
            return batch.decision is not None
        return False

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        if not self.has_evidence(batch) or len(self.calibration) == 0:
            return np.ones(len(batch.X))  # no margins known: no evidence
        if self.kind == "tree":
            stats = self.profile.tree_.closeness(batch.X, self.profile.scale_)
        elif self.kind == "margin":
            stats = margin_closeness(batch.proba)
        else:
            stats = decision_closeness(batch.decision)
        return tail_pvalues(stats, self.calibration, self.tail)
