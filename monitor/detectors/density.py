"""``density`` (training-set specific): far from the training data.

The statistic is the mean Euclidean distance from a query to its ``k`` nearest records of
the profile's reference index (scaled training rows), larger than real held-out inputs show.
Calibrated on held-out rows' distances to the rows their model trained on.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Profile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 3)); y = (X[:, 0] > 0).astype(int)
>>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
>>> detector = DensityDetector(profile)
>>> far = np.full((1, 3), 8.0)
>>> batch = Batch(X=far, Z=profile.transform(far), proba=None)
>>> float(detector.pvalues(batch)[0]) == 1 / (len(profile.calibration_["density"]["statistic"]) + 1)
True
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.conformal import conformal_pvalues
from monitor.detectors.base import Batch, CalibrationData, DetectorState, StatelessDetector
from monitor.neighbors import knn_distances


class DensityDetector(StatelessDetector):
    """Far from the training data: k-NN distance beyond real inputs' distances."""

    name: ClassVar[str] = "density"

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        self.calibration = np.asarray(profile.calibration_[self.name]["statistic"])
        # float32 for the k-NN cross product (the offline hot spot); norms in float64
        self._reference = np.ascontiguousarray(profile.reference_, dtype=np.float32)
        self._reference_sq = np.einsum("ij,ij->i", self._reference, self._reference,
                                       dtype=np.float64)

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        k = min(d.shape[1] for d in data.all_neighbour_distances())
        stats = np.concatenate([d[:, :k].mean(axis=1) for d in data.all_neighbour_distances()])
        return {"statistic": np.sort(stats)}

    def phrase(self, level: float) -> str:
        return f"lie farther from the training data than {100 * (1 - level):g}% of real inputs"

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        stats = knn_distances(batch.Z, self._reference, self.profile.k_neighbors,
                              self._reference_sq).mean(axis=1)
        return conformal_pvalues(stats, self.calibration)

    def fit_time_pvalues(self, batch: Batch) -> np.ndarray:
        """Exact (float64) distances, as the calibration values were computed."""
        reference = self.profile.reference_.astype(np.float64)
        stats = knn_distances(batch.Z, reference, self.profile.k_neighbors).mean(axis=1)
        return conformal_pvalues(stats, self.calibration)
