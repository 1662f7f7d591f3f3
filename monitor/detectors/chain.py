"""``chain`` (victim-specific distribution shift): near-duplicates of the client's own queries.

The statistic is minus the distance from a query to the nearest of the client's previous
``chain_memory`` distinct queries, compared with real inputs' distance to their nearest training
record: the small steps of Jacobian augmentation, boundary walks, line searches and path finding
are closer to each other than real inputs are to anything. Per-client state: the last
``chain_memory`` distinct queries (scaled, half precision), bounded.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.conformal import conformal_pvalues
from monitor.detectors.base import Batch, CalibrationData, DetectorState

DEFAULT_MEMORY = 64


class ChainDetector:
    """Near-duplicates of the client's own recent queries (bounded memory, blockwise)."""

    name: ClassVar[str] = "chain"
    stateful: ClassVar[bool] = True
    state_keys: ClassVar[tuple[str, ...]] = ("buffer",)

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        self.memory = config.chain_memory if config is not None else DEFAULT_MEMORY
        self.calibration = np.asarray(profile.calibration_[self.name]["statistic"])

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        nearest = np.concatenate([d[:, 0] for d in data.all_neighbour_distances()])
        return {"statistic": np.sort(-nearest)}

    def initial_state(self) -> DetectorState:
        return {"buffer": np.zeros((0, self.profile.n_features_), dtype=np.float16)}

    def phrase(self, level: float) -> str:
        return ("are near-duplicates of the client's own recent queries (closer than "
                f"{100 * (1 - level):g}% of real inputs are to any training record)")

    def nearest_previous(self, Z: np.ndarray, state: DetectorState) -> np.ndarray:
        """Distance of each row to the nearest of the previous ``memory`` distinct rows."""
        R = self.memory
        out = np.empty(len(Z))
        Z = Z.astype(np.float16).astype(np.float64)  # as stored: half precision halves the state
        buffer = state["buffer"].astype(np.float64)
        for start in range(0, len(Z), R):
            block = Z[start:start + R]
            b = len(buffer)
            candidates = np.concatenate([buffer, block])
            diff = block[:, None, :] - candidates[None, :, :]
            d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
            i = np.arange(len(block))[:, None]
            j = np.arange(b + len(block))[None, :]
            valid = (j < b + i) & (j >= b + i - R)
            d[~valid] = np.inf
            out[start:start + R] = d.min(axis=1)
            buffer = candidates[-R:]
        state["buffer"] = buffer.astype(np.float16)
        return out

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        if state is None:
            state = self.initial_state()
        stats = -self.nearest_previous(batch.Z, state)
        return conformal_pvalues(stats, self.calibration)
