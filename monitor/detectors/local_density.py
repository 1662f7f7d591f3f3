"""``local_density`` (training-set specific): farther from the data than the data's own local
spacing there.

The statistic is a query's mean distance to its ``k`` nearest reference rows divided by those
rows' own mean distance to their nearest reference rows (a local-outlier-factor ratio). It
normalises for how dense the data is where the query lands, so a query between two real
records of a sparse region is ordinary while one off a dense manifold is not: it sees
product-of-marginals pools and Jacobian steps that the plain distance misses. Calibrated like
``density``, with a generalised Pareto tail beyond the calibration values.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector
from monitor.detectors.density import calibration_with_tail, stored_tail
from monitor.detectors.reference import ReferenceIndex
from monitor.tails import tail_pvalues

_EPS = 1e-9


class LocalDensityDetector(StatelessDetector):
    """Off the local data density: k-NN distance relative to the neighbours' own spacing."""

    name: ClassVar[str] = "local_density"

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        calibration = profile.calibration_[self.name]
        self.calibration = np.asarray(calibration["statistic"])
        self.own = np.asarray(calibration["reference_own"], dtype=np.float64)
        self.tail = stored_tail(calibration)
        self.index = ReferenceIndex(profile)

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        stats = []
        for i in range(len(data.splits)):
            distances, indices = data.neighbours(i)
            own = data.reference_own(i)
            stats.append(distances.mean(axis=1) / np.maximum(own[indices].mean(axis=1), _EPS))
        out = calibration_with_tail(np.concatenate(stats))
        out["reference_own"] = data.profile_reference_own()
        return out

    def phrase(self, level: float) -> str:
        return (f"lie farther from the nearest training records, relative to how densely "
                f"those are packed, than {100 * (1 - level):g}% of real inputs")

    def statistic(self, batch: Batch, exact: bool = False) -> np.ndarray:
        distances, indices = self.index.neighbours(batch, exact)
        k = distances.shape[1]  # means as sums over k (np.mean's overhead, its result)
        return (distances.sum(axis=1) / k) / np.maximum(self.own[indices].sum(axis=1) / k, _EPS)

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        return tail_pvalues(self.statistic(batch), self.calibration, self.tail)

    def fit_time_pvalues(self, batch: Batch) -> np.ndarray:
        return tail_pvalues(self.statistic(batch, exact=True), self.calibration, self.tail)
