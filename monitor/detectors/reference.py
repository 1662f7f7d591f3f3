"""The profile's reference index, shared by the detectors that measure distances to it.

``density`` and ``local_density`` both need each query's nearest reference rows; the first to
ask computes them and leaves them in the batch's memo for the other. The serving path runs the
cross product in float32 (the offline hot spot); fit-time calibration uses exact float64.
"""

from __future__ import annotations

import numpy as np

from monitor.detectors.base import Batch
from monitor.neighbors import knn


class ReferenceIndex:
    """k-NN queries against a fitted profile's ``reference_`` rows."""

    def __init__(self, profile) -> None:
        self.profile = profile
        self.k = profile.k_neighbors
        self.reference = np.ascontiguousarray(profile.reference_, dtype=np.float32)
        self.reference_sq = np.einsum("ij,ij->i", self.reference, self.reference,
                                      dtype=np.float64)

    def neighbours(self, batch: Batch, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of each query's ``k`` nearest reference rows."""
        key = ("reference-knn", id(self.profile.reference_), exact)
        if key not in batch.memo:
            if exact:
                batch.memo[key] = knn(batch.Z, self.profile.reference_.astype(np.float64),
                                      self.k)
            else:
                batch.memo[key] = knn(batch.Z, self.reference, self.k, self.reference_sq)
        return batch.memo[key]


__all__ = ["ReferenceIndex"]
