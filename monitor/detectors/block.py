"""``block`` (set-level): a client's recent evidence units, as a set, off the data's shape.

Mixup, noisy copies of seed records and one-feature sweeps send queries that are each
plausible to the per-query detectors; as a stream they are not: isotropic noise and sweeps
break the correlations between features, mixtures of records of different classes leave the
data's manifold. Every :data:`BLOCK` new evidence units (:mod:`monitor.units`, whose last 48
leaders the unit tracker already keeps per client) this detector measures the block's last
:data:`BLOCK` leaders as one set, in the reference's whitened space (principal axes scaled to
unit variance, small axes floored at :data:`EIGEN_FLOOR` of the largest), by two statistics:

* ``scatter`` — the log of the set's median squared whitened distance to its own median, per
  coordinate: noise added independently to every record (seed-noise clouds) spreads the set
  along axes real records barely vary on. A shift or rescaling shared by all of a client's
  rows cancels, and a one-class, sorted or prototype set of real rows is *less* spread than
  random rows, so neither raises it;
* ``outlying`` — the mean over the set of each unit's whitened local ratio: its mean distance
  to its ``k`` nearest reference rows over those rows' own spacing (a sweep sets features to
  values that break their correlation with the rest).

The block's p-value is twice the smaller of the two (Bonferroni).

**Calibration** (held-out data only): each held-out row's ratio is measured against its own
split's reference (a reference that did not contain it); the null of a block's mean is the
distribution of the mean of :data:`BLOCK` held-out rows drawn, without replacement, from one
split. Benign clients are not random subsets, so the null is composite, one member per
selection the calibration tests know benign users make (each a sample of block means, sorted,
with a generalised Pareto tail):

* ``random`` — random rows;
* ``one_class`` — random rows of one predicted class (a one-class user's set is not like the
  whole reference; it is like other one-class sets);
* ``sorted`` — runs of consecutive rows in the order of one feature (a sorted batch job);
* ``drift`` — random rows of one drifted copy of the held-out data (the profile's drift model:
  :meth:`calibrate_drift`).

Each split is whitened on its own reference (the rows never shaped the axes they are measured
on, as at serving time). Per statistic the p-value is the largest of the members' tail-aware
p-values, so it is super-uniform under each member.

**Rounded sets.** A block whose every unit lies on one coarse decimal grid (dropping at
least 3 of the digits the held-out data has; :mod:`monitor.rounding`) gets ``p = 1``: rounding
to a spreadsheet's format moves rows off the correlation structure much as noise does, and
a constant p-value is trivially valid (a thief who rounds its queries loses this detector).
The current block's per-grid counts are kept (4 integers).

**Dependence.** Block means over overlapping windows would be strongly dependent, while the
window tests (:mod:`monitor.evidence`) assume independent p-values under the null. So a
p-value is emitted only by the unit that completes a block (the client's units
``BLOCK``, ``2 BLOCK``, ...), over the disjoint block of units it closes; every other unit
gets ``p = 1`` (no evidence, a constant). For a benign client whose units are independent
draws of one member, disjoint blocks are independent, each emitted p-value is super-uniform,
and the constants change nothing: the truncated products, the uniform benign null and the
union bound apply exactly as for the per-query detectors. The detector declares
:meth:`values_per_window`: a window of ``W`` consecutive units holds at most ``ceil(W /
BLOCK)`` emitted p-values, and its null table is built for that many draws (a table for ``W``
uniform draws would be valid too, but would bury the evidence under 15 absent draws per
block). State: the count of units seen and the current block's per-grid counts (40 bytes);
the block's members are the unit tracker's stored leaders (half precision), read back, not
copied.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Profile
>>> rng = np.random.default_rng(0)
>>> C = rng.normal(size=(4, 4)); X = rng.normal(size=(600, 4)) @ C
>>> y = (X[:, 0] > 0).astype(int)
>>> profile = Profile(seed=0, drift_draws=4).fit(LogisticRegression().fit(X, y), X, y)
>>> detector = BlockDetector(profile)
>>> def block_p(rows):  # one client's first BLOCK units, in one call
...     Z = profile.transform(rows)
...     batch = Batch(X=rows, Z=Z, proba=None, leaders=np.zeros((0, Z.shape[1]), np.float16))
...     return detector.pvalues(batch, detector.initial_state())
>>> real = rng.normal(size=(BLOCK, 4)) @ C
>>> noisy = real + 0.6 * X.std(axis=0) * rng.normal(size=real.shape)  # isotropic noise
>>> [bool(block_p(rows)[-1] < 1e-3) for rows in (real, noisy)], bool((block_p(real)[:-1] == 1).all())
([False, True], True)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import Batch, CalibrationData, DetectorState
from monitor.neighbors import knn
from monitor.rounding import DECIMALS, MIN_GRID_DIGITS, _on_grid, feature_decimals
from monitor.tails import NO_TAIL, Tail, fit_tail, tail_pvalues

BLOCK = 16
"""Units per block: one p-value per disjoint block of this many new units (at most the unit
tracker's 48 stored leaders)."""
EIGEN_FLOOR = 0.001
"""Whitening floors each principal axis' variance at this fraction of the largest."""
NULL_BLOCKS = 4000
"""Block means drawn per member of the null (fewer when the data has fewer distinct ones)."""
MEMBERS = ("random", "one_class", "sorted", "drift")
"""The benign null's members (see the module docstring)."""
STATISTICS = ("scatter", "outlying")
"""The two block statistics, each tested against every member (Bonferroni over the two)."""


def whitening(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(center, W)``: ``(z - center) @ W`` has unit variance along the reference's principal
    axes (each axis' variance floored at :data:`EIGEN_FLOOR` of the largest)."""
    ref = np.asarray(reference, dtype=np.float64)
    center = ref.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(ref - center, rowvar=False).reshape(
        ref.shape[1], ref.shape[1]))
    floor = EIGEN_FLOOR * max(float(values.max(initial=0.0)), 1e-12)
    return center, vectors / np.sqrt(np.maximum(values, floor))[None, :]


def _whitened(split) -> tuple[np.ndarray, np.ndarray]:
    """A held-out split's rows and its reference in the whitening of that reference alone:
    the rows never shaped the axes they are measured on, as at serving time."""
    center, W = whitening(split.reference)
    return (split.Z - center) @ W, (split.reference - center) @ W


def _own(white_ref: np.ndarray, k: int) -> np.ndarray:
    """Each reference row's mean distance to its ``k`` nearest other reference rows."""
    return knn(white_ref, white_ref, k, exclude_self=True)[0].mean(axis=1)


def _ratios(white: np.ndarray, white_ref: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Log of each row's mean distance to its ``k`` nearest reference rows over those rows'
    own spacing (a local-outlier ratio in the whitened space)."""
    distances, index = knn(white, white_ref, k)
    spacing = np.maximum(own[index].mean(axis=1), 1e-12)
    return np.log(np.maximum(distances.mean(axis=1), 1e-12) / spacing)


def _random_blocks(groups: list[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, BLOCK)`` row indices: each block drawn without replacement from one group of
    row indices (groups drawn in proportion to their size; groups smaller than a block are
    left out)."""
    groups = [g for g in groups if len(g) >= BLOCK]
    if not groups:
        return np.zeros((0, BLOCK), dtype=np.int64)
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    counts = rng.multinomial(n, sizes / sizes.sum())
    out = [g[np.argsort(rng.random((c, len(g))), axis=1)[:, :BLOCK]]
           for g, c in zip(groups, counts, strict=True) if c]  # a loop over groups
    return np.concatenate(out) if out else np.zeros((0, BLOCK), dtype=np.int64)


def _sorted_blocks(X: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, BLOCK)`` row indices: runs of :data:`BLOCK` consecutive rows in the order of one
    feature (random features and starts)."""
    if len(X) < BLOCK:
        return np.zeros((0, BLOCK), dtype=np.int64)
    order = np.argsort(np.nan_to_num(X), axis=0, kind="stable")  # (rows, features)
    feature = rng.integers(X.shape[1], size=n)
    start = rng.integers(len(X) - BLOCK + 1, size=n)
    return order[start[:, None] + np.arange(BLOCK)[None, :], feature[:, None]]


def block_statistics(white: np.ndarray, ratios: np.ndarray, blocks: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(scatter, outlying)`` of each block of rows (``blocks``: ``(n, BLOCK)`` indices):
    the log of the block's whitened scatter (its rows' mean squared whitened distance to
    their own mean, per coordinate) and its rows' mean whitened local ratio."""
    rows = white[blocks]  # (n, BLOCK, d)
    deviation = rows - np.median(rows, axis=1, keepdims=True)
    spread = np.median(np.einsum("nkd,nkd->nk", deviation, deviation), axis=1) / white.shape[1]
    return np.log(np.maximum(spread, 1e-12)), ratios[blocks].mean(axis=1)


def _member(name: str, *stats: np.ndarray) -> dict[str, np.ndarray]:
    """One null member's sorted block statistics and their tails, per statistic."""
    out = {}
    for statistic, values in zip(STATISTICS, stats, strict=True):
        values = np.sort(np.asarray(values, dtype=np.float64))
        tail = fit_tail(values) if len(values) else None
        out[f"{name}_{statistic}"] = values
        out[f"{name}_{statistic}_tail"] = NO_TAIL if tail is None else tail.to_array()
    return out


class BlockDetector:
    """A client's last :data:`BLOCK` units, as a set, off the data's correlation structure."""

    name: ClassVar[str] = "block"
    stateful: ClassVar[bool] = True
    needs_stream: ClassVar[bool] = True
    """Its evidence depends on the client's own stream (never precomputed for a log chunk)."""
    state_keys: ClassVar[tuple[str, ...]] = ("units_seen", "on_grid")

    def __init__(self, profile, config=None) -> None:
        self.profile = profile
        cal = profile.calibration_[self.name]
        self.center = np.asarray(cal["center"], dtype=np.float64)
        self.W = np.asarray(cal["whitening"], dtype=np.float64)
        self.k = int(profile.k_neighbors)
        self.white_ref = (np.asarray(profile.reference_, dtype=np.float64) - self.center) @ self.W
        self.own = np.asarray(cal["own"], dtype=np.float64)
        self.grids = [int(r) for r in cal.get("rounding_grids", np.zeros(0, np.int64))]
        self.members = {statistic: [] for statistic in STATISTICS}
        for m in MEMBERS:
            for statistic in STATISTICS:
                values = np.asarray(cal.get(f"{m}_{statistic}", np.zeros(0)), dtype=np.float64)
                if len(values):
                    self.members[statistic].append(
                        (values, Tail.from_array(cal[f"{m}_{statistic}_tail"])))

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]:
        k = data.k_neighbors
        center, W = whitening(data.reference)
        own = _own((data.reference - center) @ W, k)
        rng = np.random.default_rng(25)
        white, ratios, groups, classes, runs = [], [], [], [], []
        offset = 0
        for split in data.splits:  # a loop over splits
            white_ref = _whitened(split)
            white.append(white_ref[0])
            ratios.append(_ratios(white_ref[0], white_ref[1], _own(white_ref[1], k), k))
            index = offset + np.arange(len(split.Z))
            groups.append(index)
            predicted = split.labels  # the split's model's own labels (-1: unknown)
            if predicted is not None:
                classes.extend(index[predicted == c] for c in np.unique(predicted[predicted >= 0]))
            runs.append(offset + _sorted_blocks(split.X, rng, NULL_BLOCKS // len(data.splits)))
            offset += len(split.Z)
        white, ratios = np.concatenate(white), np.concatenate(ratios)
        pooled = np.concatenate([split.X for split in data.splits])
        decimals = feature_decimals(pooled)
        grids = [r for r in DECIMALS if np.maximum(decimals - r, 0).sum() >= MIN_GRID_DIGITS]
        out = {"center": center, "whitening": W, "own": own,
               "rounding_grids": np.asarray(grids, dtype=np.int64)}
        members = {"random": _random_blocks(groups, rng, NULL_BLOCKS),
                   "one_class": _random_blocks(classes, rng, NULL_BLOCKS),
                   "sorted": np.concatenate(runs)}
        for m, blocks in members.items():
            out.update(_member(m, *block_statistics(white, ratios, blocks)))
        return out

    @classmethod
    def calibrate_drift(cls, drifted: list[CalibrationData],
                        calibration: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The ``drift`` member: random blocks of one drifted copy of the held-out rows each
        (the profile's drift model; each copy is one drifted client)."""
        rng = np.random.default_rng(26)
        scatter, outlying = [], []
        references: dict[int, tuple] = {}  # drifted copies share their split's reference:
        # its whitening and own spacing are computed once, not once per draw
        for data in drifted:  # a loop over drift draws
            white, ratios, groups, offset = [], [], [], 0
            for split in data.splits:
                key = id(split.reference)
                if key not in references:
                    center, W = whitening(split.reference)
                    white_ref = (split.reference - center) @ W
                    references[key] = (center, W, white_ref,
                                       _own(white_ref, data.k_neighbors), split.reference)
                center, W, white_ref, own, _ = references[key]
                rows = (split.Z - center) @ W
                white.append(rows)
                ratios.append(_ratios(rows, white_ref, own, data.k_neighbors))
                groups.append(offset + np.arange(len(split.Z)))
                offset += len(split.Z)
            blocks = _random_blocks(groups, rng, max(1, NULL_BLOCKS // len(drifted)))
            a, b = block_statistics(np.concatenate(white), np.concatenate(ratios), blocks)
            scatter.append(a)
            outlying.append(b)
        if not drifted:
            return {}
        return _member("drift", np.concatenate(scatter), np.concatenate(outlying))

    @staticmethod
    def values_per_window(window: int) -> int:
        """P-values other than 1 a window of ``window`` consecutive units can hold: one per
        block it reaches into (the window tests' null tables are built for that many)."""
        return -(-window // BLOCK)

    def initial_state(self) -> DetectorState:
        return {"units_seen": np.zeros(1, dtype=np.int64),
                "on_grid": np.zeros(len(DECIMALS), dtype=np.int64)}

    def phrase(self, level: float) -> str:
        return (f"form sets of {BLOCK} units further off the data's correlation structure "
                f"than {100 * (1 - level):g}% of sets of real inputs")

    def has_evidence(self, batch: Batch) -> bool:
        return batch.leaders is not None

    def block_pvalues(self, scatter: np.ndarray, outlying: np.ndarray) -> np.ndarray:
        """P-values of blocks: per statistic the largest over the null's members, then twice
        the smaller of the two (Bonferroni), at most 1."""
        p = []
        for statistic, values in zip(STATISTICS, (scatter, outlying), strict=True):
            members = self.members[statistic]
            q = np.zeros(len(values)) if members else np.ones(len(values))
            for stats, tail in members:
                q = np.maximum(q, tail_pvalues(values, stats, tail))
            p.append(q)
        return np.minimum(1.0, len(STATISTICS) * np.minimum(*p))

    def _rounded_blocks(self, X: np.ndarray, closing: np.ndarray, state: DetectorState
                        ) -> np.ndarray:
        """For each closing unit, whether every unit of its block lies on one coarse decimal
        grid (one that drops at least :data:`~monitor.rounding.MIN_GRID_DIGITS` digits the
        held-out data has); ``state["on_grid"]`` carries the current block's per-grid counts
        across calls."""
        g = len(DECIMALS)
        if len(X) == 1:  # the online path: one unit, its block closing or not
            return self._rounded_unit(X, bool(len(closing)), state)
        on = np.zeros((len(X), g), dtype=np.int64)
        for i, r in enumerate(DECIMALS):  # a loop over grids
            if r in self.grids:
                on[:, i] = _on_grid(np.asarray(X, dtype=np.float64), r).all(axis=1)
        prefix = np.vstack([np.zeros((1, g), dtype=np.int64), np.cumsum(on, axis=0)])
        carry = np.asarray(state.get("on_grid", np.zeros(g, np.int64)), dtype=np.int64)
        starts = closing - BLOCK + 1
        counts = prefix[closing + 1] - prefix[np.maximum(starts, 0)]
        counts[starts < 0] += carry  # the block began in an earlier call
        last = int(closing[-1]) + 1 if len(closing) else None
        state["on_grid"] = (prefix[-1] - prefix[last]) if last is not None else carry + prefix[-1]
        return (counts == BLOCK).any(axis=1) if len(closing) else np.zeros(0, dtype=bool)

    def _rounded_unit(self, X: np.ndarray, closes: bool, state: DetectorState) -> np.ndarray:
        """:meth:`_rounded_blocks` of one unit (the same counts, without the prefix sums)."""
        carry = np.asarray(state.get("on_grid", np.zeros(len(DECIMALS), np.int64)),
                           dtype=np.int64)
        if self.grids:
            row = np.asarray(X, dtype=np.float64)
            on = np.array([r in self.grids and bool(_on_grid(row, r).all()) for r in DECIMALS],
                          dtype=np.int64)
            counts = carry + on
        else:  # no grid is kept: the unit is on none
            counts = carry.copy()
        if not closes:
            state["on_grid"] = counts
            return np.zeros(0, dtype=bool)
        state["on_grid"] = np.zeros(len(DECIMALS), dtype=np.int64)
        return np.array([bool((counts == BLOCK).any())])

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray:
        u = len(batch.Z)
        p = np.ones(u)
        if batch.leaders is None or state is None or not u:  # outside a client's stream
            return p
        seen = int(state["units_seen"][0])
        state["units_seen"] = np.array([seen + u], dtype=np.int64)
        closing = np.flatnonzero((seen + 1 + np.arange(u)) % BLOCK == 0)
        rounded = self._rounded_blocks(batch.X, closing, state)
        if not len(closing):
            return p  # no block closes
        before = np.asarray(batch.leaders, dtype=np.float64)[-(BLOCK - 1):]
        if len(before) + closing[0] + 1 < BLOCK:
            return p  # the leaders were reset mid-block
        # the units as the tracker stores them: half precision, then the block's rows
        new = np.asarray(batch.Z, dtype=np.float64).astype(np.float16).astype(np.float64)
        rows = np.concatenate([before, new])
        ends = len(before) + closing + 1
        first = int(ends[0]) - BLOCK
        white = (rows[first:] - self.center) @ self.W
        ratios = _ratios(white, self.white_ref, self.own, self.k)
        index = ends[:, None] - BLOCK - first + np.arange(BLOCK)[None, :]
        p[closing] = np.where(rounded, 1.0, self.block_pvalues(*block_statistics(white, ratios,
                                                                                  index)))
        return p
