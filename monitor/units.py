"""Evidence units: dependence-aware counting of a client's queries.

Evidence must not grow with the number of near-identical variations of the same few records:
a sensor re-measuring five objects with jitter, or an analyst sweeping one feature of a record
over a grid, sends hundreds of *dependent* queries that carry little more information than the
records they vary. Window tests that count such queries as independent events flag them (a
prototype of the analytic bound measured false-alarm levels of 1e-5 to 1e-30 where 0.01 was
nominal). So every distinct query is mapped, online, to an *evidence unit*, and only the first
query of a unit carries evidence:

1. **near-duplicates** — a query within ``radius`` of one of the client's recent unit
   *leaders* (the first query of a unit) belongs to that unit. Leaders only, so a walk of small
   steps cannot chain itself into one unit: it leaves its leader's ball and starts new units.
   The radius is a low quantile of held-out rows' distance to their nearest training row — a
   distance at which two real inputs are rarely that close (:func:`calibrate_radius`).
   One exception: a query far more extreme than anything its unit has shown (its smallest
   p-value below :data:`ESCALATION` times the unit's) starts a unit of its own — a bisection
   converging on a split threshold or the decision boundary escalates, jittered re-sends of
   one record never do;
2. **one-feature-at-a-time variants** — a query that differs from a recent *root* unit's
   leader in at most ``max_changed`` features (the rest within a fraction of the radius)
   belongs to the unit ``(root, changed features)``: a what-if grid over one feature of a
   record counts once. A root starts at most :data:`MAX_VARIANTS_PER_ROOT` variant units
   (a full sweep of one record over every feature counts like a what-if on it), while an
   attack sweeping many seeds still counts per seed;
3. otherwise the query starts a new root unit.

Per client the tracker keeps the last ``n_leaders`` leaders and ``n_roots`` roots (scaled,
half precision) and hashes of the last ``n_variants`` variant keys: bounded, about 4-9 KiB at
64 features. It also gives each distinct query its distance to the nearest recent leader, which
the ``chain`` detector turns into evidence of perturbation chains.

>>> import numpy as np
>>> tracker = UnitTracker(radius=0.5, n_features=5)
>>> state = tracker.initial_state()
>>> Z = np.array([[0.0, 0, 0, 0, 0], [0.1, 0, 0, 0, 0],   # a record, then jitter of it
...               [5.0, 5, 5, 5, 5],                      # another record
...               [5.0, 9, 5, 5, 5], [5.0, 12, 5, 5, 5],  # feature 1 swept: one variant
...               [5.0, 5, 5, 5, 9], [5.0, 5, 5, 9, 5],   # two more variants: the 2nd is capped
...               [9.0, 9, 9, 9, 9]])                     # a new record
>>> tracker.assign(Z, state).new_unit.tolist()
[True, False, True, True, False, True, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

N_LEADERS = 48
N_ROOTS = 16
N_VARIANTS = 64
MAX_CHANGED = 2
F16_MAX = float(np.finfo(np.float16).max)
MAX_VARIANTS_PER_ROOT = 2
"""Variant units one root record can start: a full sensitivity sweep of one record (every
feature over a grid) counts as the record and two variants, while an attack sweeping many
seeds still counts per seed."""
VARIANT_TOLERANCE = 0.25
"""A variant's unchanged features may move at most this fraction of the radius in total."""
ESCALATION = 0.01
"""A query inside a unit's ball starts a new unit when its smallest p-value is below this
fraction of the unit's smallest so far (at most ``log_100(1e6) = 3`` times per unit)."""
RADIUS_QUANTILE = 0.05
"""Quantile of held-out 1-NN distances used as the unit radius."""

_HASH_PRIME = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class UnitAssignment:
    """Per distinct query: does it start a new unit, and its distance to the nearest recent
    unit leader (``inf`` for a client's first query)."""

    new_unit: np.ndarray
    nearest_leader: np.ndarray


def calibrate_radius(nearest_distances: np.ndarray, quantile: float = RADIUS_QUANTILE) -> float:
    """The unit radius: a low quantile of held-out rows' distances to their nearest training row."""
    d = np.asarray(nearest_distances, dtype=np.float64)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.quantile(d, quantile)) if len(d) else 0.0


class UnitTracker:
    """Maps a client's distinct queries to evidence units (see the module docstring)."""

    name: ClassVar[str] = "units"
    state_keys: ClassVar[tuple[str, ...]] = ("leaders", "leader_scores", "roots", "root_ids",
                                             "root_variants", "variants", "counter")

    def __init__(self, radius: float, n_features: int, n_leaders: int = N_LEADERS,
                 n_roots: int = N_ROOTS, n_variants: int = N_VARIANTS,
                 max_changed: int = MAX_CHANGED) -> None:
        self.radius = float(radius)
        self.n_features = int(n_features)
        self.n_leaders, self.n_roots, self.n_variants = n_leaders, n_roots, n_variants
        self.max_changed = min(max_changed, self.n_features)

    def initial_state(self) -> dict[str, np.ndarray]:
        d = self.n_features
        return {"leaders": np.zeros((0, d), dtype=np.float16),
                "leader_scores": np.zeros(0, dtype=np.float16),
                "roots": np.zeros((0, d), dtype=np.float16),
                "root_ids": np.zeros(0, dtype=np.int64),
                "root_variants": np.zeros(0, dtype=np.int16),
                "variants": np.zeros(0, dtype=np.uint64),
                "counter": np.zeros(1, dtype=np.int64)}

    def assign(self, Z: np.ndarray, state: dict[str, np.ndarray],
               pvalues: np.ndarray | None = None) -> UnitAssignment:
        """Assign distinct queries ``Z`` (scaled, in order) to units, updating ``state``.

        ``pvalues`` (each query's smallest p-value over the detectors, optional) lets a query
        far more extreme than its unit start a unit of its own (:data:`ESCALATION`).

        Distances to the leaders already stored are computed for the whole batch at once;
        only queries that start new units take the sequential path (a new leader can absorb
        the next query). The result equals assigning the queries one call at a time.
        """
        # as stored (half precision; coordinates beyond its range saturate, never overflow)
        Z = np.minimum(np.maximum(np.asarray(Z, dtype=np.float64), -F16_MAX), F16_MAX).astype(
            np.float16).astype(np.float64)
        m = len(Z)
        new = np.zeros(m, dtype=bool)
        nearest2 = np.empty(m)
        # each query's evidence in the stored precision: -log10 of its smallest p-value
        score = [0.0] * m if pvalues is None else (-np.log10(np.maximum(
            pvalues, 1e-300))).astype(np.float16).tolist()
        old = state["leaders"].astype(np.float64)
        n_old = len(old)
        leader_scores = state["leader_scores"].tolist()
        to_old = _squared_distances(Z, old)  # (m, n_old), oldest leader first
        if n_old:
            old_arg = to_old.argmin(axis=1)
            old_best = to_old[np.arange(m), old_arg].tolist()
            old_arg = old_arg.tolist()
        escalate = -np.log10(ESCALATION)
        created = np.empty_like(Z)  # the queries that became leaders, in order
        n_created = 0
        stored_roots = state["roots"].astype(np.float64)
        root_rows = np.concatenate([stored_roots, np.empty_like(Z)])  # stored, then new
        n_root_rows = len(stored_roots)
        root_ids = state["root_ids"].tolist()
        root_variants = state["root_variants"].tolist()
        variants = state["variants"].tolist()
        counter = int(state["counter"][0])
        r2 = self.radius ** 2
        for i in range(m):  # sequential by nature: a query may become the next one's leader
            evicted = max(0, n_old + n_created - self.n_leaders)  # oldest leaders dropped
            if evicted == 0 and n_old:
                best, owner = old_best[i], old_arg[i]
            elif evicted < n_old:
                j = int(to_old[i, evicted:].argmin())
                best, owner = float(to_old[i, evicted + j]), evicted + j
            else:
                best, owner = np.inf, -1
            if n_created:
                n_recent = min(n_created, self.n_leaders)
                d2 = _squared_distances(Z[i:i + 1], created[n_created - n_recent:n_created])[0]
                j = int(d2.argmin())
                if d2[j] < best:
                    best, owner = float(d2[j]), n_old + n_created - n_recent + j
            nearest2[i] = best
            if best <= r2:
                if score[i] <= leader_scores[owner] + escalate:
                    leader_scores[owner] = max(leader_scores[owner], score[i])
                    continue
                # far more extreme than its unit so far: a unit of its own (no variant rule);
                # the unit's record rises too, so its ball escalates at most 3 times in all
                leader_scores[owner] = score[i]
                counter += 1
                new[i] = True
                created[n_created] = Z[i]
                n_created += 1
                leader_scores.append(score[i])
                continue
            roots = root_rows[max(0, n_root_rows - self.n_roots):n_root_rows]  # the recent
            variant = self._variant_of(Z[i], roots, root_ids)
            if variant is not None:
                root, key = variant
                if key in variants or root_variants[root] >= MAX_VARIANTS_PER_ROOT:
                    continue
                variants = (variants + [key])[-self.n_variants:]
                root_variants[root] += 1
            else:
                root_rows[n_root_rows] = Z[i]
                n_root_rows += 1
                root_ids = (root_ids + [counter])[-self.n_roots:]
                root_variants = (root_variants + [0])[-self.n_roots:]
            counter += 1
            new[i] = True
            created[n_created] = Z[i]
            n_created += 1
            leader_scores.append(score[i])
        if n_created:
            state["leaders"] = np.concatenate([old, created[:n_created]])[
                -self.n_leaders:].astype(np.float16)
            state["roots"] = root_rows[max(0, n_root_rows - self.n_roots):n_root_rows].astype(
                np.float16)
        state["leader_scores"] = np.array(leader_scores[-self.n_leaders:], dtype=np.float16)
        state["root_ids"] = np.array(root_ids, dtype=np.int64)
        state["root_variants"] = np.array(root_variants, dtype=np.int16)
        state["variants"] = np.array(variants, dtype=np.uint64)
        state["counter"] = np.array([counter], dtype=np.int64)
        return UnitAssignment(new_unit=new, nearest_leader=np.sqrt(nearest2))

    def _variant_of(self, z: np.ndarray, roots: np.ndarray, root_ids: list[int]
                    ) -> tuple[int, int] | None:
        """``(root position, hash of (root id, changed features))`` if ``z`` varies at most
        ``max_changed`` features of a recent root, else ``None``."""
        if not len(roots) or self.max_changed < 1:
            return None
        deviation = np.abs(roots - z)
        k = self.max_changed
        tolerance = VARIANT_TOLERANCE * self.radius
        # the residual after the k largest deviations are forgiven
        total = np.einsum("ij,ij->i", deviation, deviation)
        negated = -deviation
        negated.partition(k - 1, axis=1)  # in place: the k largest deviations first
        top = negated[:, :k]  # negated: the same squares
        residual = total - np.einsum("ij,ij->i", top, top)
        j = int(np.argmin(residual))
        if residual[j] > tolerance ** 2:
            return None
        # the changed features: the forgiven ones that moved beyond the tolerance
        changed = np.sort(np.argsort(-deviation[j], kind="stable")[:k])
        changed = changed[deviation[j, changed] > tolerance]
        key = ((int(root_ids[j]) + 1) * _HASH_PRIME) & _MASK
        for feature in changed.tolist():
            key = ((key ^ (feature + 1)) * _HASH_PRIME) & _MASK
        return j, key


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Exact squared distances between the rows of ``A`` and of ``B`` (per-pair differences,
    so a pair's value never depends on the other rows), in blocks that bound memory."""
    if len(A) == 1 and len(B):  # the online path: one query (the same sums as the blocks)
        diff = B - A[0]
        return np.einsum("ij,ij->i", diff, diff)[None, :]
    out = np.empty((len(A), len(B)))
    if not len(A) or not len(B):
        return out
    step = max(1, 2_000_000 // max(1, len(B) * A.shape[1]))
    for start in range(0, len(A), step):
        diff = A[start:start + step, None, :] - B[None, :, :]
        out[start:start + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def variant_limit(n_model_features: int) -> int:
    """Features a one-feature-at-a-time variant may change: :data:`MAX_CHANGED`, but at most
    a third of the model's features (rounded down, leaving one out), so that on a
    low-dimensional model — where any two records differ in only a few features — a stream of
    unrelated records is not mistaken for variants of its first one.

    >>> [variant_limit(d) for d in (2, 3, 4, 6, 7, 30)]
    [0, 0, 1, 1, 2, 2]
    """
    return max(0, min(MAX_CHANGED, (int(n_model_features) - 1) // 3))


__all__ = ["MAX_CHANGED", "MAX_VARIANTS_PER_ROOT", "N_LEADERS", "N_ROOTS", "N_VARIANTS",
           "RADIUS_QUANTILE", "UnitAssignment", "UnitTracker", "calibrate_radius",
           "variant_limit"]
