"""``label_change`` (victim specific, labels only): new units right next to a label change.

Line searches, bisections and boundary walks on a labels-only API query between records that
got different labels, halving the gap at every step: each new evidence unit
(:mod:`monitor.units`) lands close to one of the client's earlier units *whose answer
differs*. The statistic of a new unit is minus its distance to the nearest of the client's
last :data:`LABEL_MEMORY` units (leaders) answered with another label, in the profile's
scaled space; ``-inf`` (p = 1) when none of them differs.

Calibration (honest, on held-out data): for every held-out row, minus its distance to the
nearest *other held-out row* (all splits pooled, each row labelled by its split's model,
one that did not train on it) that is labelled differently. A benign client's recent units
are a few dozen records; the nearest differently-labelled one among them is at least as far
as the nearest among the (larger) pool whenever they come from such a pool, in any order, so
under a benign client the p-value is super-uniform. Needs only labels: the API's labels, or the argmax of
its probabilities. Without labels (a regressor, nothing answered) there is no evidence
(p = 1); outside a client's stream (no leaders) too.

The rows compared with are the unit tracker's leaders (:attr:`Batch.leaders`, the ones the
``chain`` detector reads too), so per client this detector keeps only their label codes
(:data:`LABEL_MEMORY` of them, int16, aligned with the leaders; -1 for a unit answered
without a label); each batch is one vectorised pass over blocks of queries.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> from monitor.detectors.base import Batch
>>> profile = SimpleNamespace(calibration_={"label_change": {
...     "statistic": np.sort(-np.linspace(0.5, 5.0, 99))}})
>>> detector = LabelChangeDetector(profile)
>>> state = detector.initial_state()
>>> Z = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
>>> batch = Batch(X=Z, Z=Z, proba=None, leaders=np.zeros((0, 2), np.float16),
...               labels=np.array([0, 1, 0, 1, 1]))
>>> detector.pvalues(batch, state).round(2).tolist()  # 4, 2 and 1 from a differing label
[1.0, 0.78, 0.34, 0.12, 1.0]
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.conformal import conformal_pvalues
from monitor.detectors.base import Batch, CalibrationData, DetectorState
from monitor.units import N_LEADERS

LABEL_MEMORY = N_LEADERS
"""Labels of recent units kept per client: one per unit-tracker leader."""
MAX_POOL = 4000
"""Held-out rows (all splits pooled) compared with each other at calibration: a random subset
when there are more (distances among 4000 rows are still far smaller than among a client's
48, so the null stays conservative)."""
_F16_MAX = float(np.finfo(np.float16).max)
_BLOCK_VALUES = 2_000_000
"""Floats one block of pairwise differences may hold (bounds the memory of a pass)."""


def label_codes(batch: Batch) -> np.ndarray | None:
    """Each query's answer as a class index (the monitor codes labels, or the argmax of the
    probabilities, into :attr:`Batch.labels`); ``None`` when no answer is known."""
    return None if batch.labels is None else np.asarray(batch.labels, dtype=np.int64)


def nearest_other_label(Z: np.ndarray, labels: np.ndarray, pool: np.ndarray,
                        pool_labels: np.ndarray, exclude: np.ndarray | None = None
                        ) -> np.ndarray:
    """Per row of ``Z``: the distance to the nearest row of ``pool`` whose label differs
    (``inf`` when none does; unknown labels, -1, never differ). ``exclude[i]``: a pool row
    row ``i`` is never compared with (itself).

    >>> nearest_other_label(np.array([[0.0], [3.0]]), np.array([0, 1]),
    ...                     np.array([[1.0], [2.5], [9.0]]), np.array([1, 0, 1])).tolist()
    [1.0, 0.5]
    """
    out = np.full(len(Z), np.inf)
    if not len(Z) or not len(pool):
        return out
    pool_sq = np.einsum("ij,ij->i", pool, pool)
    step = max(1, _BLOCK_VALUES // max(1, len(pool)))
    for start in range(0, len(Z), step):
        block = Z[start:start + step]
        d2 = (np.einsum("ij,ij->i", block, block)[:, None] + pool_sq[None, :]
              - 2.0 * block @ pool.T)
        lab = labels[start:start + step]
        same = (lab[:, None] == pool_labels[None, :]) | (lab[:, None] < 0) | \
            (pool_labels[None, :] < 0)
        d2[same] = np.inf
        if exclude is not None:
            d2[np.arange(len(block)), exclude[start:start + step]] = np.inf
        out[start:start + step] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


class LabelChangeDetector:
    """New units unusually close to an earlier unit of the client that got another label."""

    name: ClassVar[str] = "label_change"
    stateful: ClassVar[bool] = True
    state_keys: ClassVar[tuple[str, ...]] = ("labels",)
    needs_stream: ClassVar[bool] = True
    """Its evidence depends on the client's own stream: outside one (no
    :attr:`Batch.leaders`, e.g. at fit time) it has none."""
    needs_labels: ClassVar[bool] = True
    """Reads the answers' labels (:attr:`Batch.labels`), which the monitor then codes."""

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        self.calibration = np.asarray(profile.calibration_[self.name]["statistic"])
        self.memory = LABEL_MEMORY

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        labelled = [split for split in data.splits if split.labels is not None]
        if not labelled:  # a regressor: no labels, nothing to calibrate
            return {"statistic": np.zeros(0)}
        # all held-out rows, each labelled by the model of its split (one that did not train
        # on it): pooled, so a small dataset's splits still give a pool larger than a
        # client's LABEL_MEMORY recent units (a smaller pool would be anti-conservative)
        Z = np.concatenate([np.asarray(s.Z, dtype=np.float64) for s in labelled])
        labels = np.concatenate([np.asarray(s.labels, dtype=np.int64) for s in labelled])
        if len(Z) < 2:
            return {"statistic": np.zeros(0)}
        pool = np.sort(rng.permutation(len(Z))[:MAX_POOL])
        where = np.full(len(Z), -1)
        where[pool] = np.arange(len(pool))
        # rows in the pool are not compared with themselves; others with all of it
        exclude = np.where(where >= 0, where, len(pool))
        padded = np.concatenate([Z[pool], np.zeros((1, Z.shape[1]))])
        padded_labels = np.concatenate([labels[pool], [-1]])
        return {"statistic": np.sort(-nearest_other_label(Z, labels, padded, padded_labels,
                                                           exclude))}

    def initial_state(self) -> DetectorState:
        return {"labels": np.zeros(0, dtype=np.int16)}

    def phrase(self, level: float) -> str:
        return ("land closer to an earlier query of the client that got another label than "
                f"{100 * (1 - level):g}% of real inputs are to a differently labelled one")

    def has_evidence(self, batch: Batch) -> bool:
        return label_codes(batch) is not None

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        m = len(batch.Z)
        if batch.leaders is None or state is None:  # outside a client's stream: no evidence
            return np.ones(m)
        codes = label_codes(batch)
        stored = state["labels"].astype(np.int64)
        if m:  # one code per new leader, -1 when unlabelled
            new = np.full(m, -1) if codes is None else codes
            state["labels"] = np.concatenate([stored, new])[-self.memory:].astype(np.int16)
        if codes is None or not len(self.calibration) or not m:
            return np.ones(m)
        # the leaders as the tracker stores them (half precision, saturating)
        Z = np.clip(np.asarray(batch.Z, dtype=np.float64), -_F16_MAX, _F16_MAX).astype(
            np.float16).astype(np.float64)
        old = np.asarray(batch.leaders, dtype=np.float64)
        n_old = min(len(old), len(stored))  # aligned from the most recent (a reset state)
        old, old_labels = old[len(old) - n_old:], stored[len(stored) - n_old:]
        rows = np.concatenate([old, Z[:-1]])
        row_labels = np.concatenate([old_labels, codes[:-1]])
        distance = self._windowed(Z, codes, rows, row_labels, n_old)
        return conformal_pvalues(-distance, self.calibration)

    def _windowed(self, Z: np.ndarray, codes: np.ndarray, rows: np.ndarray,
                  row_labels: np.ndarray, n_old: int) -> np.ndarray:
        """Query ``k``'s distance to the nearest of ``rows[n_old + k - memory:n_old + k]``
        (the units before it) labelled otherwise; ``inf`` when none is."""
        out = np.full(len(Z), np.inf)
        if not len(rows):
            return out
        width = self.memory
        if len(Z) == 1:  # the online path: the window is a slice (the blocks' sums exactly)
            lo = max(0, n_old - width)
            diff = rows[None, lo:n_old] - Z[:, None, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff)[0]
            other, mine = row_labels[lo:n_old], codes[0]
            d2[(other == mine) | (other < 0) | (mine < 0)] = np.inf
            if len(d2):
                out[0] = np.sqrt(d2.min())
            return out
        step = max(1, _BLOCK_VALUES // max(1, width * Z.shape[1]))
        for start in range(0, len(Z), step):
            k = np.arange(start, min(len(Z), start + step))
            window = (n_old + k)[:, None] - width + np.arange(width)[None, :]
            valid = window >= 0
            at = np.maximum(window, 0)
            diff = rows[at] - Z[k][:, None, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff)
            other = row_labels[at]
            mine = codes[k][:, None]
            d2[~valid | (other == mine) | (other < 0) | (mine < 0)] = np.inf
            out[k] = np.sqrt(d2.min(axis=1))
        return out


__all__ = ["LABEL_MEMORY", "LabelChangeDetector", "label_codes", "nearest_other_label"]
