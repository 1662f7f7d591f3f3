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
SPECULATE_BLOCK = 8
MAX_SPECULATE_BLOCK = 256
"""Queries :meth:`UnitTracker.assign` guesses at once: the block doubles while guesses hold."""

_ESCALATE = -float(np.log10(ESCALATION))  # in units of the stored -log10 p-value
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

    speculate: ClassVar[bool] = True
    """Confirm runs of new root units a block at a time (see :meth:`assign`); ``False``
    assigns one query at a time, the reference the blocks are tested against."""

    def assign(self, Z: np.ndarray, state: dict[str, np.ndarray],
               pvalues: np.ndarray | None = None) -> UnitAssignment:
        """Assign distinct queries ``Z`` (scaled, in order) to units, updating ``state``.

        ``pvalues`` (each query's smallest p-value over the detectors, optional) lets a query
        far more extreme than its unit start a unit of its own (:data:`ESCALATION`).

        Sequential by nature: a query may become the next one's leader or root. Most queries
        of a stream of unrelated records start root units of their own, so the pass first
        guesses that the next block of queries all do, checks every query of the block
        against the leaders and roots the guess implies (one array operation), keeps the
        prefix for which the guess holds and takes the first query that breaks it one at a
        time. The result equals assigning the queries one call at a time.
        """
        # as stored (half precision; coordinates beyond its range saturate, never overflow)
        Z = np.minimum(np.maximum(np.asarray(Z, dtype=np.float64), -F16_MAX), F16_MAX).astype(
            np.float16).astype(np.float64)
        # each query's evidence in the stored precision: -log10 of its smallest p-value
        score = [0.0] * len(Z) if pvalues is None else (-np.log10(np.maximum(
            pvalues, 1e-300))).astype(np.float16).tolist()
        run = _Pass(self, Z, score, state)
        i, block, wait, misses = 0, SPECULATE_BLOCK, 0, 0
        while i < len(Z):
            if not self.speculate or wait or len(Z) - i < 2:
                run.step(i)
                i += 1
                wait = max(0, wait - 1)
                continue
            stop = min(len(Z), i + block)
            confirmed = run.new_roots(i, stop)
            i += confirmed
            if i == stop:  # the guess held for the whole block: try a longer one
                block = min(2 * block, MAX_SPECULATE_BLOCK)
                continue
            run.step(i)  # the query that broke the guess
            i += 1
            block = max(SPECULATE_BLOCK, 2 * confirmed)
            # a stream of near-duplicates breaks every guess at once: back off, 2, 4, 8, ...
            misses = 0 if confirmed else misses + 1
            wait = min(MAX_SPECULATE_BLOCK, 2 ** misses) if misses else 0
        return run.finish(state)

    def _variant_of(self, z: np.ndarray, roots: np.ndarray, root_ids: list[int]
                    ) -> tuple[int, int] | None:
        """``(root position, hash of (root id, changed features))`` if ``z`` varies at most
        ``max_changed`` features of a recent root, else ``None``."""
        if not len(roots) or self.max_changed < 1:
            return None
        deviation, residual = self._residuals(roots, z)
        tolerance = VARIANT_TOLERANCE * self.radius
        j = int(np.argmin(residual))
        if residual[j] > tolerance ** 2:
            return None
        # the changed features: the forgiven ones that moved beyond the tolerance
        changed = np.sort(np.argsort(-deviation[j], kind="stable")[:self.max_changed])
        changed = changed[deviation[j, changed] > tolerance]
        key = ((int(root_ids[j]) + 1) * _HASH_PRIME) & _MASK
        for feature in changed.tolist():
            key = ((key ^ (feature + 1)) * _HASH_PRIME) & _MASK
        return j, key

    def _residuals(self, roots: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``|roots - z|`` and the squared deviation left once the ``max_changed`` largest
        are forgiven, per root; ``roots`` (..., n, d) against ``z`` (..., d)."""
        deviation = np.abs(roots - z[..., None, :])
        total = np.einsum("...k,...k->...", deviation, deviation)
        negated = -deviation
        negated.partition(self.max_changed - 1, axis=-1)  # in place: the largest first
        top = negated[..., :self.max_changed]  # negated: the same squares
        return deviation, total - np.einsum("...k,...k->...", top, top)


class _Pass:
    """One :meth:`UnitTracker.assign` call's working state: the stored leaders and roots, and
    what the call adds to them (buffers with counts, so nothing is copied per query)."""

    def __init__(self, tracker: UnitTracker, Z: np.ndarray, score: list[float],
                 state: dict[str, np.ndarray]) -> None:
        m = len(Z)
        self.tracker, self.Z, self.score = tracker, Z, score
        self.new = np.zeros(m, dtype=bool)
        self.nearest2 = np.empty(m)
        self.old = state["leaders"].astype(np.float64)
        self.n_old = len(self.old)
        self.leader_scores = state["leader_scores"].tolist()
        self.to_old = _squared_distances(Z, self.old)  # (m, n_old), oldest leader first
        if self.n_old:
            old_arg = self.to_old.argmin(axis=1)
            self.old_best = self.to_old[np.arange(m), old_arg].tolist()
            self.old_arg = old_arg.tolist()
        self.created = np.empty_like(Z)  # the queries that became leaders, in order
        self.n_created = 0
        stored_roots = state["roots"].astype(np.float64)
        self.root_rows = np.concatenate([stored_roots, np.empty_like(Z)])  # stored, then new
        self.n_root_rows = len(stored_roots)
        self.root_ids = state["root_ids"].tolist()
        self.root_variants = state["root_variants"].tolist()
        self.variants = state["variants"].tolist()
        self.counter = int(state["counter"][0])

    def step(self, i: int) -> None:
        """Assign query ``i`` alone."""
        t, z = self.tracker, self.Z[i]
        n_old, n_created = self.n_old, self.n_created
        evicted = max(0, n_old + n_created - t.n_leaders)  # oldest leaders dropped
        if evicted == 0 and n_old:
            best, owner = self.old_best[i], self.old_arg[i]
        elif evicted < n_old:
            j = int(self.to_old[i, evicted:].argmin())
            best, owner = float(self.to_old[i, evicted + j]), evicted + j
        else:
            best, owner = np.inf, -1
        if n_created:
            n_recent = min(n_created, t.n_leaders)
            d2 = _squared_distances(z[None], self.created[n_created - n_recent:n_created])[0]
            j = int(d2.argmin())
            if d2[j] < best:
                best, owner = float(d2[j]), n_old + n_created - n_recent + j
        self.nearest2[i] = best
        score, leader_scores = self.score[i], self.leader_scores
        if best <= t.radius ** 2:
            if score <= leader_scores[owner] + _ESCALATE:
                leader_scores[owner] = max(leader_scores[owner], score)
                return
            # far more extreme than its unit so far: a unit of its own (no variant rule);
            # the unit's record rises too, so its ball escalates at most 3 times in all
            leader_scores[owner] = score
            self._created(i, 1)
            return
        roots = self.root_rows[max(0, self.n_root_rows - t.n_roots):self.n_root_rows]
        variant = t._variant_of(z, roots, self.root_ids)
        if variant is None:
            self._rooted(i, 1)
            return
        root, key = variant
        if key in self.variants or self.root_variants[root] >= MAX_VARIANTS_PER_ROOT:
            return
        self.variants = (self.variants + [key])[-t.n_variants:]
        self.root_variants[root] += 1
        self._created(i, 1)

    def new_roots(self, start: int, stop: int) -> int:
        """Guess that queries ``start:stop`` all start root units; keep the longest prefix for
        which the guess holds and return its length.

        Query ``start + k`` is then compared with the leaders and roots that the state holds
        plus queries ``start:start + k`` (the most recent ``n_leaders`` and ``n_roots``), with
        the same per-pair arithmetic as :meth:`step`."""
        t = self.tracker
        Zb = self.Z[start:stop]
        k = np.arange(len(Zb))
        # leaders: the window of the last n_leaders before the block, then the block
        base = self.n_old + self.n_created
        lo = max(0, base - t.n_leaders)
        leaders = np.concatenate([self.old[min(lo, self.n_old):],
                                  self.created[max(0, lo - self.n_old):self.n_created], Zb[:-1]])
        best = _windowed_min(leaders, base - lo + k, t.n_leaders, Zb, _squared_rows)
        holds = best > t.radius ** 2
        if t.max_changed >= 1:
            base = self.n_root_rows
            lo = max(0, base - t.n_roots)
            roots = np.concatenate([self.root_rows[lo:base], Zb[:-1]])
            residual = _windowed_min(roots, base - lo + k, t.n_roots, Zb,
                                     lambda rows, Z: t._residuals(rows, Z)[1])
            holds &= residual > (VARIANT_TOLERANCE * t.radius) ** 2
        n = len(Zb) if holds.all() else int(holds.argmin())
        self.nearest2[start:start + n] = best[:n]
        self._rooted(start, n)
        return n

    def _created(self, start: int, n: int) -> None:
        """Queries ``start:start + n`` start units: they become leaders."""
        self.new[start:start + n] = True
        self.created[self.n_created:self.n_created + n] = self.Z[start:start + n]
        self.n_created += n
        self.leader_scores.extend(self.score[start:start + n])
        self.counter += n

    def _rooted(self, start: int, n: int) -> None:
        """Queries ``start:start + n`` start root units: leaders and roots."""
        t = self.tracker
        self.root_rows[self.n_root_rows:self.n_root_rows + n] = self.Z[start:start + n]
        self.n_root_rows += n
        self.root_ids = (self.root_ids + list(range(self.counter, self.counter + n)))[-t.n_roots:]
        self.root_variants = (self.root_variants + [0] * n)[-t.n_roots:]
        self._created(start, n)

    def finish(self, state: dict[str, np.ndarray]) -> UnitAssignment:
        """Write the pass back into ``state`` (bounded) and return the assignment."""
        t = self.tracker
        if self.n_created:
            # in half precision already (assign rounded the queries): only the new rows are
            # converted back, not every kept one
            kept = max(0, self.n_old + self.n_created - t.n_leaders)
            state["leaders"] = np.concatenate([
                np.asarray(state["leaders"][min(kept, self.n_old):], dtype=np.float16),
                self.created[max(0, kept - self.n_old):self.n_created].astype(np.float16)])
            n_stored = len(state["roots"])
            kept = max(0, self.n_root_rows - t.n_roots)
            state["roots"] = np.concatenate([
                np.asarray(state["roots"][min(kept, n_stored):], dtype=np.float16),
                self.root_rows[max(kept, n_stored):self.n_root_rows].astype(np.float16)])
        state["leader_scores"] = np.array(self.leader_scores[-t.n_leaders:], dtype=np.float16)
        state["root_ids"] = np.array(self.root_ids, dtype=np.int64)
        state["root_variants"] = np.array(self.root_variants, dtype=np.int16)
        state["variants"] = np.array(self.variants, dtype=np.uint64)
        state["counter"] = np.array([self.counter], dtype=np.int64)
        return UnitAssignment(new_unit=self.new, nearest_leader=np.sqrt(self.nearest2))


def _windowed_min(rows: np.ndarray, ends: np.ndarray, width: int, Z: np.ndarray,
                  measure) -> np.ndarray:
    """Per query ``Z[k]``: the smallest ``measure`` over ``rows[ends[k] - width:ends[k]]``
    (the part of that window at or after row 0), ``inf`` over an empty window."""
    window = ends[:, None] - width + np.arange(width)[None, :]  # (len(Z), width) row numbers
    if not len(rows):
        return np.full(len(Z), np.inf)
    values = measure(rows[np.maximum(window, 0)], Z)
    values[window < 0] = np.inf
    return values.min(axis=1)


def _squared_rows(rows: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``rows[k, j]``'s squared distance to ``Z[k]``: the sums :func:`_squared_distances`
    makes (the same pairs, the same order of addition)."""
    diff = rows - Z[:, None, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


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
