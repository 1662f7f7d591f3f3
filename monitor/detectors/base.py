"""The detector protocol: what every per-query detector declares and does.

A detector turns each distinct query of a batch into a conformal p-value (small = unusual,
1.0 = nothing to say) against calibration values the profile stored for it. It declares:

* ``name`` — the key of its calibration in the profile, of its state in client records, and
  of its scores in verdicts;
* ``stateful`` and ``state_keys`` — whether it keeps per-client state, and the names of the
  arrays it keeps (:meth:`initial_state` makes them for a new client);
* :meth:`calibrate` — a classmethod computing what the profile stores for it from held-out
  data (:class:`CalibrationData`): a dict of named arrays;
* :meth:`pvalues` — the p-values of a :class:`Batch`, updating its state in place;
* :meth:`phrase` — what "p-value at most ``level``" means in words, for verdict reasons.

A detector instance is bound to one fitted profile and one config: ``Detector(profile,
config)``. Stateless detectors also get drift calibration for free: the profile runs them on
drifted held-out rows and stores the p-values under ``drift_pvalues``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from monitor.geometry import TreeGeometry
from monitor.neighbors import knn

DetectorState = dict[str, np.ndarray]
"""One detector's per-client state: its declared arrays by name."""


@dataclass(frozen=True)
class Batch:
    """The distinct queries of one ``observe`` call, as the detectors see them."""

    X: np.ndarray
    """Coded rows ``(m, d)`` (:mod:`monitor.features`: numbers, NaN when missing, category
    codes)."""
    Z: np.ndarray
    """The rows in the profile's scaled feature space."""
    proba: np.ndarray | None
    """Class probabilities ``(m, k)``, or ``None`` when unknown."""
    nearest_leader: np.ndarray | None = None
    """Each query's distance to the nearest of the client's recent evidence-unit leaders
    (:mod:`monitor.units`); ``None`` outside a client's stream (e.g. at fit time)."""
    decision: np.ndarray | None = None
    """``decision_function`` scores (``(m,)`` binary, ``(m, k)`` multiclass) of a classifier
    without ``predict_proba``, or ``None`` when unknown."""
    memo: dict = field(default_factory=dict, compare=False, repr=False)
    """Results detectors share within one batch (e.g. the reference neighbours)."""
    leaders: np.ndarray | None = None
    """The client's recent evidence-unit leaders before this batch (scaled, half precision,
    oldest first; :mod:`monitor.units`), or ``None`` outside a client's stream. The batch's
    own new units follow them, in order."""
    labels: np.ndarray | None = None
    """Class index (in ``profile.classes_`` order; -1 for a label the victim does not have) of
    each query's answer, or ``None`` when the answers carry no labels (a regressor, nothing
    answered)."""

    def take(self, rows: np.ndarray) -> Batch:
        """The sub-batch of ``rows``."""
        return Batch(self.X[rows], self.Z[rows], None if self.proba is None else self.proba[rows],
                     None if self.nearest_leader is None else self.nearest_leader[rows],
                     None if self.decision is None else self.decision[rows],
                     leaders=self.leaders,
                     labels=None if self.labels is None else self.labels[rows])


@dataclass(frozen=True)
class HeldOutSplit:
    """Rows a model did not train on, and what that model says about them.

    ``reference`` holds the scaled training rows distances are measured to (the profile's
    reference index for a calibration split, the other folds for a cross-fitting fold).
    """

    X: np.ndarray
    Z: np.ndarray
    reference: np.ndarray
    proba: np.ndarray | None
    tree: TreeGeometry | None
    source: str
    decision: np.ndarray | None = None
    """``decision_function`` scores of a classifier without ``predict_proba``."""
    model: Any = field(default=None, repr=False, compare=False)
    """The model that scored this split (only while the profile is fitted)."""
    labels: np.ndarray | None = None
    """Class index (in the victim's ``classes_`` order) of that model's answer for each row;
    ``None`` for a regressor."""


@dataclass
class CalibrationData:
    """Everything a detector may calibrate on: held-out splits and the profile's geometry.

    Nearest-neighbour distances of each split are computed once and shared by the detectors
    that need them (:meth:`neighbour_distances`).
    """

    splits: list[HeldOutSplit]
    k_neighbors: int
    scale: np.ndarray
    reference: np.ndarray
    """The profile's own reference index (scaled rows), which serving measures against."""
    _neighbours: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                  repr=False)
    _own: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def neighbours(self, split: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of split ``split``'s rows to their ``k_neighbors`` nearest
        reference rows."""
        if split not in self._neighbours:
            s = self.splits[split]
            self._neighbours[split] = knn(s.Z, s.reference, self.k_neighbors)
        return self._neighbours[split]

    def neighbour_distances(self, split: int) -> np.ndarray:
        """Distances of split ``split``'s rows to their ``k_neighbors`` nearest reference rows."""
        return self.neighbours(split)[0]

    def all_neighbour_distances(self) -> list[np.ndarray]:
        """:meth:`neighbour_distances` of every split, in split order."""
        return [self.neighbour_distances(i) for i in range(len(self.splits))]

    def with_splits(self, splits: list[HeldOutSplit]) -> CalibrationData:
        """The same calibration context for other rows on the same references (e.g. drifted
        copies), sharing the references' own-distance cache."""
        return CalibrationData(splits=splits, k_neighbors=self.k_neighbors, scale=self.scale,
                               reference=self.reference, _own=self._own)

    def profile_reference_own(self) -> np.ndarray:
        """:meth:`reference_own` for the profile's own reference index."""
        if -1 not in self._own:
            ref = np.asarray(self.reference, dtype=np.float64)
            self._own[-1] = knn(ref, ref, self.k_neighbors, exclude_self=True)[0].mean(axis=1)
        return self._own[-1]

    def reference_own(self, split: int) -> np.ndarray:
        """Each reference row's mean distance to its ``k_neighbors`` nearest *other* reference
        rows (the local scale of the data around it), for split ``split``'s reference."""
        if split not in self._own:
            ref = self.splits[split].reference
            self._own[split] = knn(ref, ref, self.k_neighbors, exclude_self=True)[0].mean(axis=1)
        return self._own[split]


class FittedProfile(Protocol):
    """What a detector may read from a fitted :class:`~monitor.Profile`."""

    n_features_: int
    boundary_kind_: str
    k_neighbors: int
    scale_: np.ndarray
    reference_: np.ndarray
    tree_: TreeGeometry | None
    calibration_: dict[str, dict[str, np.ndarray]]

    def transform(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Detector(Protocol):
    """The protocol every detector follows (see the module docstring).

    ``config`` is the :class:`~monitor.settings.MonitorConfig`; a detector reads its own
    parameters from it (``chain_memory`` for the chain detector).
    """

    name: ClassVar[str]
    stateful: ClassVar[bool]
    state_keys: ClassVar[tuple[str, ...]]

    def __init__(self, profile: FittedProfile, config: Any = None) -> None: ...

    @classmethod
    def calibrate(cls, data: CalibrationData) -> dict[str, np.ndarray]: ...

    def initial_state(self) -> DetectorState: ...

    def pvalues(self, batch: Batch, state: DetectorState | None = None) -> np.ndarray: ...

    def phrase(self, level: float) -> str: ...


class StatelessDetector:
    """Base for detectors that keep no per-client state.

    The profile measures how often drifted held-out data looks unusual to a stateless
    detector with :meth:`fit_time_pvalues` (by default :meth:`pvalues`; a detector whose
    serving path trades precision for speed computes them exactly here).
    """

    stateful: ClassVar[bool] = False
    state_keys: ClassVar[tuple[str, ...]] = ()

    def initial_state(self) -> DetectorState:
        return {}

    def fit_time_pvalues(self, batch: Batch) -> np.ndarray:
        """P-values as the profile computes them when it is fitted (drift calibration)."""
        return self.pvalues(batch)  # type: ignore[attr-defined]


__all__ = ["Batch", "CalibrationData", "Detector", "DetectorState", "FittedProfile",
           "HeldOutSplit", "StatelessDetector"]
