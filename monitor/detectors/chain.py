"""``chain`` (victim-specific distribution shift): perturbation chains.

Jacobian augmentation, boundary walks, line searches and path finding step from query to
query: each new evidence unit (:mod:`monitor.units`) lands close to one the client already
made. The statistic is minus a query's distance to the nearest of the client's recent unit
leaders, compared with real inputs' distance to their nearest training record (of 2000): a
client whose new units keep appearing closer to its own earlier ones than real inputs are to
anything is walking. Benign re-sends and jitter never count (they join an existing unit), so
the detector is on by default. Stateless itself: the distances come from the unit tracker.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.conformal import conformal_pvalues
from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector


class ChainDetector(StatelessDetector):
    """New units unusually close to the client's own earlier ones."""

    name: ClassVar[str] = "chain"
    needs_stream: ClassVar[bool] = True
    """Its evidence depends on the client's own stream (never precomputed for a log chunk)."""

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        self.calibration = np.asarray(profile.calibration_[self.name]["statistic"])

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        nearest = np.concatenate([d[:, 0] for d in data.all_neighbour_distances()])
        return {"statistic": np.sort(-nearest)}

    def phrase(self, level: float) -> str:
        return ("land closer to the client's own earlier queries than "
                f"{100 * (1 - level):g}% of real inputs are to any training record")

    def has_evidence(self, batch: Batch) -> bool:
        return batch.nearest_leader is not None

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        if batch.nearest_leader is None:  # outside a client's stream (fit time): no evidence
            return np.ones(len(batch.X))
        return conformal_pvalues(-np.asarray(batch.nearest_leader, dtype=np.float64),
                                 self.calibration)
