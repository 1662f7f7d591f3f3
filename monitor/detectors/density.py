"""``density`` (training-set specific): far from the training data.

The statistic is the mean Euclidean distance from a query to its ``k`` nearest records of
the profile's reference index (scaled training rows), larger than real held-out inputs show.
Calibrated on held-out rows' distances to the rows their model trained on; beyond the largest
calibration value the p-value follows a generalised Pareto tail (:mod:`monitor.tails`), so a
query ten times farther than any real input carries far more evidence than one just past them.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Profile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 3)); y = (X[:, 0] > 0).astype(int)
>>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
>>> detector = DensityDetector(profile)
>>> near, far = np.zeros((1, 3)), np.full((1, 3), 8.0)
>>> [bool(detector.pvalues(Batch(X=x, Z=profile.transform(x), proba=None))[0] < 1e-3)
...  for x in (near, far)]
[False, True]
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector
from monitor.detectors.reference import ReferenceIndex
from monitor.tails import NO_TAIL, Tail, fit_tail, tail_pvalues


def calibration_with_tail(stats: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted calibration values and their fitted tail (what tail-aware detectors store)."""
    stats = np.sort(np.asarray(stats, dtype=np.float64))
    tail = fit_tail(stats)
    return {"statistic": stats, "tail": NO_TAIL if tail is None else tail.to_array()}


def stored_tail(calibration: dict[str, np.ndarray]) -> Tail | None:
    """The tail a detector's calibration holds (``None`` for profiles fitted before tails)."""
    values = calibration.get("tail")
    return None if values is None else Tail.from_array(values)


class DensityDetector(StatelessDetector):
    """Far from the training data: k-NN distance beyond real inputs' distances."""

    name: ClassVar[str] = "density"

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        calibration = profile.calibration_[self.name]
        self.calibration = np.asarray(calibration["statistic"])
        self.tail = stored_tail(calibration)
        self.index = ReferenceIndex(profile)

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        k = min(d.shape[1] for d in data.all_neighbour_distances())
        stats = np.concatenate([d[:, :k].mean(axis=1) for d in data.all_neighbour_distances()])
        return calibration_with_tail(stats)

    def phrase(self, level: float) -> str:
        return f"lie farther from the training data than {100 * (1 - level):g}% of real inputs"

    def statistic(self, batch: Batch, exact: bool = False) -> np.ndarray:
        distances = self.index.neighbours(batch, exact)[0]
        return distances.sum(axis=1) / distances.shape[1]  # the mean, without its overhead

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        return tail_pvalues(self.statistic(batch), self.calibration, self.tail)

    def fit_time_pvalues(self, batch: Batch) -> np.ndarray:
        """Exact (float64) distances, as the calibration values were computed."""
        return tail_pvalues(self.statistic(batch, exact=True), self.calibration, self.tail)
