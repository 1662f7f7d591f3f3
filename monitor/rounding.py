"""Rounded queries: a query whose values all sit on a coarse decimal grid is judged against
held-out data rounded to that grid (the rounding part of the benign drift model).

A benign client whose records went through a spreadsheet's number format or an integer column
sends every value rounded to ``r`` decimals. To the density detectors such records look a
little off everywhere, and a window of them adds up to a false alarm. Widening the window
tests' benign null for everyone would cost every client power; but a rounded query says so
itself: all its values are multiples of ``10**-r``. So the null is chosen per query:

* at fit time, for each grid ``r`` in :data:`DECIMALS` on which a real held-out row lands by
  chance with probability at most ``10**-MIN_GRID_DIGITS`` (the grid drops at least that many
  digits the data really has) and whose step is no wider than the spread of any column it
  changes (:func:`kept_grids`; rounding 0.28 to 0 is not drift), the profile measures each detector's p-values on the held-out
  rows rounded to ``r``, and on :data:`ROUNDED_DRAWS` drifted copies (scale and noise, as in
  the drift model) rounded to ``r`` — one *member* each, stored as sorted surprises
  ``-ln p`` (``calibration_[detector]["rounded_surprise"]``, ``["rounded_decimals"]``);
* at query time a row on grid ``r`` (its coarsest kept grid) gets
  ``p' = max(p, max_m P_m[-ln p_m >= -ln p])`` over the members rounded to ``r`` or finer
  — tail-aware ranks (:mod:`monitor.tails`), so ``p'`` is a valid p-value under every member
  that could have produced the row, and under the plain null (it is never below ``p``).

**Grids that wipe a column out.** A grid may be coarser than a column's spread (breast-cancer
smoothness, 0.10 +- 0.014, stored with one decimal is 0.1 for nearly every record): such
rounded records are not the data drifted a little but other data, far off the training rows in
that column, and the members above would widen the null until rounded *uniform* queries pass
too. A row on such a grid (:func:`wiping_grids`) is instead judged by the density-type
detectors refitted on the profile's reference rows rounded to the same grid and calibrated on
held-out rows rounded to it (``Profile.wiped_calibration_``, :class:`WipedGridNull`): under
the null "a benign record, rounded", its p-value is exact, and the wiped column still counts
(a rounded query whose value there is one the rounded data rarely has is still far off).
Records *truncated* to the grid (``int(x)``) land on it too, half a step lower: each mode of
:data:`GRID_MODES` has its own refit and calibration, and a row keeps the larger p-value.

Rows off every grid (continuous data, synthetic queries, most natural records) are untouched
and cost one vectorised check. What this gives up: a client that rounds its queries to a
kept grid gets the rounded null's weaker evidence; rounding also costs it the detail it
would steal. The model is not asked about rounded copies: detectors that read the model's
answers (``reads_answers``, the boundary detector) keep the drift model's composite null.

>>> import numpy as np
>>> X = np.array([[1.25, 3.0], [2.0, 7.0], [0.123, 4.5]])
>>> coarsest_grid(X, np.array([True, True]), [0, 1])
array([-1,  0, -1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.tails import MIN_PVALUE, Tail, fit_tail, tail_pvalues

DECIMALS = (0, 1, 2, 3)
"""Decimal places a benign client may round its records to."""
MIN_GRID_DIGITS = 3
"""A grid is kept only where a real row lands on it by chance with probability at most
``10**-MIN_GRID_DIGITS`` (its dropped digits, summed over the features), so the rounded null
is used on rounded queries, not on a tenth of natural ones."""
ROUNDED_DRAWS = 2
"""Drifted copies (the drift model's scale and noise) rounded per grid, besides the plain
rounded copy: scaled-then-rounded clients are covered too."""
MAX_STEP_SPREAD = 1.0
"""Widest grid step kept, in standard deviations of the columns the rounding changes."""
MAX_DECIMALS = 6
"""Finest resolution (decimal places) read from data; finer values count as continuous."""
GRID_MODES = ("round", "trunc")
"""How a benign client may have put its records on a wiping grid: rounded to the nearest step
or truncated toward zero (``int(x)``, a cut string). Both land on the same grid, so a row on it
is judged under each and keeps the larger p-value (valid under either)."""


def feature_decimals(X: np.ndarray) -> np.ndarray:
    """Decimal places of each column's finite values: the fewest ``d <= MAX_DECIMALS`` such
    that every value is a multiple of ``10**-d`` (to float precision).

    >>> feature_decimals(np.array([[1.25, 10.0], [3.5, 20.0]]))
    array([2, 0])
    """
    decimals = np.full(X.shape[1], MAX_DECIMALS)
    for d in range(MAX_DECIMALS, -1, -1):
        on = _on_grid(X, d).all(axis=0)
        decimals[on] = d
    return decimals


def kept_grids(X: np.ndarray, numeric: np.ndarray) -> list[int]:
    """The grids of :data:`DECIMALS` a benign client may round held-out rows ``X`` to,
    coarsest first: those that drop at least :data:`MIN_GRID_DIGITS` of the digits the
    numeric columns really have, with a step no wider than the standard deviation of any
    column they change (a coarser step wipes out that column: not drift, other data).

    >>> rng = np.random.default_rng(0)
    >>> kept_grids(rng.normal(0, [2.0, 50.0], size=(100, 2)), np.array([True, True]))
    [0, 1, 2, 3]
    >>> kept_grids(np.round(rng.normal(0, [0.3, 50.0], size=(100, 2)), 3), np.array([True, True]))
    [1]
    """
    return [r for r, wipes in _coarse_grids(X, numeric).items() if not wipes]


def _coarse_grids(X: np.ndarray, numeric: np.ndarray) -> dict[int, bool]:
    """Each grid of :data:`DECIMALS` that drops at least :data:`MIN_GRID_DIGITS` of the
    digits the numeric columns of ``X`` have (coarsest first), and whether its step is wider
    than :data:`MAX_STEP_SPREAD` standard deviations of a column it changes."""
    if not numeric.any():
        return {}
    values = X[:, numeric]
    decimals = feature_decimals(values)
    with np.errstate(invalid="ignore"):
        spread = np.nanstd(values, axis=0)
    return {r: bool(np.any(10.0**-r > MAX_STEP_SPREAD * spread[decimals > r]))
            for r in DECIMALS if np.maximum(decimals - r, 0).sum() >= MIN_GRID_DIGITS}


def wiping_grids(X: np.ndarray, numeric: np.ndarray) -> list[int]:
    """The grids of :data:`DECIMALS` that drop at least :data:`MIN_GRID_DIGITS` digits of
    held-out rows ``X`` but whose step is wider than :data:`MAX_STEP_SPREAD` standard
    deviations of a column they change (so :func:`kept_grids` leaves them out): a benign
    client's records rounded to one of them are judged by :class:`WipedGridNull`.

    >>> rng = np.random.default_rng(0)
    >>> wiping_grids(np.round(rng.normal(0, [0.3, 50.0], size=(100, 2)), 3), np.array([True, True]))
    [0]
    """
    return [r for r, wipes in _coarse_grids(X, numeric).items() if wipes]


def put_on_grid(X: np.ndarray, decimals: int, mode: str = "round") -> np.ndarray:
    """``X`` on the grid of ``decimals`` places, by ``mode``: ``"round"`` to the nearest
    multiple of ``10**-decimals`` or ``"trunc"`` toward zero (what ``int()`` and cutting a
    number's string do); float noise of values already on the grid is ignored. (Not
    :func:`monitor.evidence.quantise`, which turns p-values into evidence levels.)

    >>> put_on_grid(np.array([0.29, -1.77, 0.3]), 1, "trunc")
    array([ 0.2, -1.7,  0.3])
    >>> put_on_grid(np.array([0.29, -1.77, 0.3]), 1)
    array([ 0.3, -1.8,  0.3])
    """
    if mode == "round":
        return np.round(X, decimals)
    if mode == "trunc":
        step = 10.0**decimals
        return np.trunc(np.round(np.asarray(X, np.float64) * step, MAX_DECIMALS)) / step
    raise ValueError(f"unknown quantisation mode {mode!r}; expected one of {GRID_MODES}")


def round_scaled(Z: np.ndarray, space, decimals: int, mode: str = "round") -> np.ndarray:
    """Scaled rows ``Z`` (of :class:`~monitor.features.FeatureSpace` ``space``) with their
    numeric coordinates put on the grid of ``decimals`` places in the data's own units, by
    ``mode`` (:func:`put_on_grid`).

    >>> from monitor.features import FeatureSchema, FeatureSpace
    >>> X = np.array([[0.12, 10.0], [0.31, 30.0]])
    >>> schema = FeatureSchema.numeric(["a", "b"])
    >>> space = FeatureSpace.fit(schema, X)
    >>> bool(np.allclose(round_scaled(space.transform(X), space, 1), space.transform(np.round(X, 1))))
    True
    """
    Z = np.array(Z, dtype=np.float64)
    columns = np.arange(Z.shape[1]) if space.plain else space.numeric  # first in Z, in order
    n = len(columns)
    center, scale = space.center[columns], space.scale[columns]
    X = put_on_grid(Z[:, :n] * scale + center, decimals, mode)
    Z[:, :n] = (X - center) / scale
    return Z


def _on_grid(X: np.ndarray, decimals: int) -> np.ndarray:
    """Elementwise: the value is a multiple of ``10**-decimals`` (missing values are)."""
    scaled = X * 10.0**decimals
    with np.errstate(invalid="ignore"):
        close = np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(np.abs(scaled), 1.0)
    return close | np.isnan(X)


def coarsest_grid(X: np.ndarray, numeric: np.ndarray, grids: Sequence[int]) -> np.ndarray:
    """For each row of ``X``, the coarsest of ``grids`` (ascending decimals) that all its
    numeric values lie on, or -1 if none."""
    found = np.full(len(X), -1)
    if not len(grids) or not numeric.any() or not len(X):
        return found
    values = X[:, numeric]
    candidates = np.flatnonzero(_on_grid(values, grids[-1]).all(axis=1))  # finest grid first
    if not len(candidates):
        return found
    found[candidates] = grids[-1]
    for r in reversed(grids[:-1]):
        on = _on_grid(values[candidates], r).all(axis=1)
        found[candidates[on]] = r
    return found


@dataclass(frozen=True)
class RoundedMembers:
    """One detector's rounded null members: each member's grid and sorted surprises."""

    decimals: np.ndarray
    surprises: list[np.ndarray]
    tails: list[Tail | None]

    @classmethod
    def from_calibration(cls, calibration: Mapping[str, np.ndarray]) -> RoundedMembers | None:
        if "rounded_surprise" not in calibration:
            return None
        surprises = [np.asarray(s, np.float64) for s in calibration["rounded_surprise"]]
        return cls(np.asarray(calibration["rounded_decimals"], int), surprises,
                   [fit_tail(s) for s in surprises])

    def adjust(self, pvalues: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """``pvalues`` of rows on ``grid`` (their coarsest grid), made valid under every
        member rounded to that grid or a finer one."""
        surprise = -np.log(np.maximum(pvalues, MIN_PVALUE))
        adjusted = np.asarray(pvalues, np.float64).copy()
        members = zip(self.decimals, self.surprises, self.tails, strict=True)
        for decimals, sorted_surprise, tail in members:
            covers = grid <= decimals
            if covers.any():
                member = tail_pvalues(surprise[covers], sorted_surprise, tail)
                adjusted[covers] = np.maximum(adjusted[covers], member)
        return adjusted


class WipedGridNull:
    """Per wiping grid (:func:`wiping_grids`) and per way of getting there
    (:data:`GRID_MODES`), the per-query detectors bound to the profile's reference rows put on
    that grid the same way, with the calibration the profile measured on held-out rows put on
    it that way (``Profile.wiped_calibration_[grid][mode]``; the boundary detector's from the
    answers of the models that did not train on them). A row's p-value is the largest over the
    modes: valid whether the client rounded or truncated."""

    def __init__(self, profile, detectors: Sequence[str]) -> None:
        import copy

        from monitor.detectors import REGISTRY

        self.detectors: dict[int, dict[str, list]] = {}
        for grid, modes in getattr(profile, "wiped_calibration_", {}).items():
            for mode, calibration in modes.items():
                view = copy.copy(profile)  # the profile, as rows put on ``grid`` are measured
                view.reference_ = round_scaled(profile.reference_, profile.space_,
                                               grid, mode).astype(np.float32)
                view.calibration_ = calibration
                bound = [REGISTRY[name](view) for name in detectors if name in calibration]
                if bound:
                    self.detectors.setdefault(int(grid), {})[mode] = bound

    @property
    def grids(self) -> list[int]:
        return sorted(self.detectors)

    def pvalues(self, grid: int, queries) -> dict[str, np.ndarray]:
        """Each bound detector's p-values for the rows of Batch ``queries``, all on ``grid``:
        the largest over the modes that calibrated the detector."""
        found: dict[str, np.ndarray] = {}
        for detectors in self.detectors[grid].values():
            for detector in detectors:
                p = np.asarray(detector.pvalues(queries), np.float64)
                found[detector.name] = (np.maximum(found[detector.name], p)
                                        if detector.name in found else p)
        return found


class RoundingNull:
    """Per-query null for rounded queries (module docstring), for the detectors a profile
    calibrated on rounded held-out data.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor.profile import Profile
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int)
    >>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
    >>> null = RoundingNull(profile, ["density"])
    >>> null.grids, null.wiped.grids  # integers wipe out features of spread 1: own null
    ([0, 1, 2, 3], [0])
    >>> p = {"density": np.array([1e-6, 1e-6])}
    >>> adjusted = null.adjust(p, np.array([[1.0, 2.0, 0.0, -1.0], [0.1234567, 1, 2, 3]]))
    >>> bool(adjusted["density"][0] > 1e-6), float(adjusted["density"][1])
    (True, 1e-06)
    """

    def __init__(self, profile, detectors: Sequence[str]) -> None:
        calibration = getattr(profile, "calibration_", {})
        self.members = {name: members for name in detectors
                        if (members := RoundedMembers.from_calibration(
                            calibration.get(name, {}))) is not None}
        self.wiped = WipedGridNull(profile, detectors)
        self.grids = sorted({int(d) for m in self.members.values() for d in m.decimals}
                            | set(self.wiped.grids))
        self.numeric = np.asarray(profile.schema_.numeric_mask, bool)

    def adjust(self, pvalues: dict[str, np.ndarray], X: np.ndarray,
               queries=None) -> dict[str, np.ndarray]:
        """``pvalues`` (detector name → one per row of ``X``) with the rows that lie on a
        kept grid judged against the rounded members, and those whose coarsest grid wipes a
        column out measured again by :class:`WipedGridNull` (from ``queries``, the rows'
        :class:`~monitor.detectors.base.Batch`); the same dict when no row is on a grid."""
        if not self.grids:
            return pvalues
        grid = coarsest_grid(X, self.numeric, self.grids)
        wiped = (np.isin(grid, self.wiped.grids) if queries is not None and self.wiped.grids
                 else np.zeros(len(X), bool))
        rows = np.flatnonzero((grid >= 0) & ~wiped)
        if not len(rows) and not wiped.any():
            return pvalues
        adjusted = {name: np.array(p, dtype=np.float64) for name, p in pvalues.items()}
        for name, members in self.members.items():
            if name in adjusted and len(rows):
                adjusted[name][rows] = members.adjust(adjusted[name][rows], grid[rows])
        for r in self.wiped.grids:
            on = np.flatnonzero(wiped & (grid == r))
            if len(on):
                for name, p in self.wiped.pvalues(r, queries.take(on)).items():
                    if name in adjusted:
                        adjusted[name][on] = p
        return adjusted


__all__ = ["DECIMALS", "GRID_MODES", "MAX_STEP_SPREAD", "MIN_GRID_DIGITS", "ROUNDED_DRAWS", "RoundedMembers", "RoundingNull",
           "WipedGridNull", "put_on_grid", "round_scaled", "wiping_grids",
           "coarsest_grid", "feature_decimals", "kept_grids"]
