"""The calibrated per-query detectors.

Every detector follows one small protocol: ``pvalues(batch, state)`` returns,
for each distinct query of the batch in order, its conformal p-value against
the profile's calibration distribution (small = unusual; 1.0 where the
detector has nothing to say). Stateful detectors update their bounded
per-client state in the same call. ``phrase(level)`` says in words what a
p-value at most ``level`` means, for verdict reasons. The evidence layer
(:mod:`monitor.evidence`) turns p-values into window counts and scores.

* :class:`DensityDetector` (training-set-specific): mean distance to the k
  nearest training records, larger than real held-out inputs show.
* :class:`BoundaryDetector` (victim-specific): closeness to the decision
  boundary (probability margin, or distance to a tree's split thresholds).
* :class:`ChainDetector` (victim-specific distribution shift): distance to the
  nearest of the client's own recent distinct queries, smaller than real
  inputs' distance to their nearest training record: the small steps of
  Jacobian augmentation, boundary walks, line searches and path finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.boundary import margin_closeness
from monitor.conformal import conformal_pvalues
from monitor.neighbors import knn_distances
from monitor.profile import Profile
from monitor.state import ClientState


@dataclass
class Batch:
    """The distinct queries of one ``observe`` call, as the detectors see them."""

    X: np.ndarray             # raw rows (m, d)
    Z: np.ndarray             # rows in the profile's scaled space
    proba: np.ndarray | None  # class probabilities (m, k), or None when unknown


class DensityDetector:
    """Far from the training data: k-NN distance beyond real inputs' distances."""

    name = "density"
    stateless = True

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        # float32 for the k-NN cross product (the offline hot spot); norms in float64
        self._reference = np.ascontiguousarray(profile.reference_, dtype=np.float32)
        self._reference_sq = np.einsum("ij,ij->i", self._reference, self._reference,
                                       dtype=np.float64)

    def phrase(self, level: float) -> str:
        return f"lie farther from the training data than {100 * (1 - level):g}% of real inputs"

    def pvalues(self, batch: Batch, state: ClientState | None = None) -> np.ndarray:
        stats = knn_distances(batch.Z, self._reference, self.profile.k_neighbors,
                              self._reference_sq).mean(axis=1)
        return conformal_pvalues(stats, self.profile.cal_density_)


class BoundaryDetector:
    """Near the decision boundary: closer than real inputs usually are."""

    name = "boundary"
    stateless = True

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def phrase(self, level: float) -> str:
        what = "a split threshold of the tree" if self.profile.tree_ is not None else \
            "the decision boundary"
        return f"lie closer to {what} than {100 * (1 - level):g}% of real inputs"

    def pvalues(self, batch: Batch, state: ClientState | None = None) -> np.ndarray:
        if self.profile.tree_ is not None:
            stats = self.profile.tree_.closeness(batch.X, self.profile.scale_)
        elif batch.proba is not None:
            stats = margin_closeness(batch.proba)
        else:  # labels only and no model to compute margins: no evidence
            return np.ones(len(batch.X))
        return conformal_pvalues(stats, self.profile.cal_boundary_)


class ChainDetector:
    """Near-duplicates of the client's own recent queries (bounded memory, blockwise)."""

    name = "chain"
    stateless = False

    def __init__(self, profile: Profile, memory: int) -> None:
        self.profile, self.memory = profile, memory
        self._cal = np.sort(-profile.cal_nearest_)

    def phrase(self, level: float) -> str:
        return ("are near-duplicates of the client's own recent queries (closer than "
                f"{100 * (1 - level):g}% of real inputs are to any training record)")

    def nearest_previous(self, Z: np.ndarray, state: ClientState) -> np.ndarray:
        """Distance of each row to the nearest of the previous ``memory`` distinct rows."""
        R = self.memory
        out = np.empty(len(Z))
        Z = Z.astype(np.float16).astype(np.float64)  # as stored: half precision halves the state
        buffer = state.chain.astype(np.float64)
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
        state.chain = buffer.astype(np.float16)
        return out

    def pvalues(self, batch: Batch, state: ClientState) -> np.ndarray:
        stats = -self.nearest_previous(batch.Z, state)
        return conformal_pvalues(stats, self._cal)


def build_detectors(profile: Profile, config) -> list:
    """The detectors named in ``config.detectors``, in that order."""
    factories = {
        "density": lambda: DensityDetector(profile),
        "boundary": lambda: BoundaryDetector(profile),
        "chain": lambda: ChainDetector(profile, config.chain_memory),
    }
    return [factories[name]() for name in config.detectors]
