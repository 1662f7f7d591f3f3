"""``boundary`` (victim specific): near the decision boundary.

The statistic is the probability margin's closeness ``1 - (p1 - p2)`` (from the wrapped model,
or from the probabilities the API returned); for a decision tree, whose probabilities are
constant on each leaf, minus the scaled distance to the nearest split threshold on the query's
path (:mod:`monitor.geometry`). Labels only and no model: no evidence (p = 1; the verdict says
so). Calibrated on held-out rows scored by a model that did not train on them. A window of
queries that sit near the boundary more often than real inputs do is the answer-side trace of
boundary walks, line searches, uncertainty sampling, and of convex mixtures of records of
different classes (mixup) or adversarial steps (FGSM), which the input-side detectors miss.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector
from monitor.detectors.density import calibration_with_tail, stored_tail
from monitor.geometry import margin_closeness
from monitor.tails import tail_pvalues


class BoundaryDetector(StatelessDetector):
    """Near the decision boundary: closer than real inputs usually are."""

    name: ClassVar[str] = "boundary"

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        calibration = profile.calibration_[self.name]
        self.calibration = np.asarray(calibration["statistic"])
        self.tail = stored_tail(calibration)

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        stats = []
        for split in data.splits:
            if split.tree is not None:
                stats.append(split.tree.closeness(split.X, data.scale))
            else:
                stats.append(margin_closeness(split.proba))
        return calibration_with_tail(np.concatenate(stats))

    def phrase(self, level: float) -> str:
        what = "a split threshold of the tree" if self.profile.tree_ is not None else \
            "the decision boundary"
        return f"lie closer to {what} than {100 * (1 - level):g}% of real inputs"

    def has_evidence(self, batch: Batch) -> bool:
        """Whether margins are known for this batch (trees need none)."""
        return self.profile.tree_ is not None or batch.proba is not None

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        if self.profile.tree_ is not None:
            stats = self.profile.tree_.closeness(batch.X, self.profile.scale_)
        elif batch.proba is not None:
            stats = margin_closeness(batch.proba)
        else:  # labels only and no model to compute margins: no evidence
            return np.ones(len(batch.X))
        return tail_pvalues(stats, self.calibration, self.tail)
