"""PRADA (Juuti et al., EuroS&P 2019), faithfully and per client: the baseline.

For each predicted class the client has a *growing set*. Each query's minimum
L2 distance to its class's set is recorded; the query joins the set when that
distance exceeds the class threshold, which then becomes
``max(threshold, mean - std)`` of the distances of the set's members. Every 10
queries, once more than 100 distances remain after dropping those beyond 3
standard deviations, a Shapiro-Wilk test runs; the alarm is ``W < delta``.

Its state grows with the client's history (capped here by ``max_stored`` so a
long-lived client cannot exhaust memory) and it is not calibrated to a
false-alarm rate: it is the baseline our detectors are compared against.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> prada = PradaState()
>>> prada.update(rng.normal(size=(300, 4)), rng.integers(0, 3, 300), delta=0.95)
>>> prada.n_seen, 0.0 <= prada.score <= 1.0
(300, True)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import shapiro


class PradaState:
    """PRADA's per-client growing sets and distance record."""

    def __init__(self, max_stored: int = 5000) -> None:
        self.max_stored = max_stored
        self.sets: dict[int, list[np.ndarray]] = {}
        self.set_distances: dict[int, list[float]] = {}
        self.thresholds: dict[int, float] = {}
        self.distances: list[float] = []
        self.n_seen = 0
        self.last_w: float | None = None
        self.flag_at: int | None = None

    def nbytes(self) -> int:
        rows = sum(len(s) for s in self.sets.values())
        width = next((s[0].nbytes for s in self.sets.values() if s), 0)
        return rows * width + 8 * len(self.distances)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (exact: the growing sets, their distances and
        thresholds, the distance record, the counters), for the client's state record."""
        keys = list(self.sets)
        out = {"keys": np.array(keys) if keys else np.zeros(0, dtype=np.int64),
               "thresholds": np.array([self.thresholds[k] for k in keys], dtype=np.float64),
               "distances": np.array(self.distances, dtype=np.float64),
               "counters": np.array([self.max_stored, self.n_seen,
                                     -1 if self.flag_at is None else self.flag_at]),
               "last_w": np.array([np.nan if self.last_w is None else self.last_w])}
        for i, key in enumerate(keys):
            out[f"set{i}"] = np.asarray(self.sets[key])
            out[f"set_distances{i}"] = np.array(self.set_distances[key], dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> PradaState:
        """Read :meth:`to_arrays` output.

        >>> state = PradaState(50)
        >>> state.update(np.eye(3), np.array([0, 1, 0]), delta=0.95)
        >>> back = PradaState.from_arrays(state.to_arrays())
        >>> back.n_seen, sorted(back.sets), back.distances == state.distances
        (3, [0, 1], True)
        """
        max_stored, n_seen, flag_at = (int(v) for v in arrays["counters"])
        state = cls(max_stored)
        state.n_seen, state.flag_at = n_seen, None if flag_at < 0 else flag_at
        last_w = float(arrays["last_w"][0])
        state.last_w = None if np.isnan(last_w) else last_w
        state.distances = [float(d) for d in arrays["distances"]]
        for i, key in enumerate(np.asarray(arrays["keys"]).tolist()):
            state.sets[key] = list(np.asarray(arrays[f"set{i}"]))
            state.set_distances[key] = [float(d) for d in arrays[f"set_distances{i}"]]
            state.thresholds[key] = float(arrays["thresholds"][i])
        return state

    def update(self, Z: np.ndarray, classes: np.ndarray, delta: float,
               query_index: np.ndarray | None = None) -> None:
        """Feed distinct queries ``Z`` (scaled) with their predicted ``classes``."""
        if query_index is None:
            query_index = np.arange(self.n_seen, self.n_seen + len(Z))
        for z, c, q in zip(Z, classes.tolist(), query_index.tolist(), strict=True):
            self.n_seen += 1
            members = self.sets.setdefault(c, [])
            if not members:
                members.append(z)
                self.set_distances[c] = []
                self.thresholds[c] = 0.0
            else:
                d = float(np.sqrt(((np.asarray(members) - z) ** 2).sum(axis=1).min()))
                if len(self.distances) < self.max_stored:
                    self.distances.append(d)
                if d > self.thresholds[c] and len(members) < self.max_stored:
                    members.append(z)
                    dist = self.set_distances[c]
                    dist.append(d)
                    self.thresholds[c] = max(self.thresholds[c],
                                             float(np.mean(dist) - np.std(dist)))
            if self.n_seen % 10 == 0:
                self._test(delta, q)

    def _test(self, delta: float, query_index: int) -> None:
        D = np.asarray(self.distances)
        if len(D) <= 100:
            return
        mean, std = D.mean(), D.std()
        kept = D[np.abs(D - mean) <= 3 * std] if std > 0 else D
        if len(kept) <= 100:
            return
        w = float(shapiro(kept).statistic) if np.ptp(kept) > 0 else 0.0
        self.last_w = w
        if w < delta and self.flag_at is None:
            self.flag_at = query_index

    @property
    def score(self) -> float:
        """``1 - W`` of the latest test (higher = more suspicious), 0 before any test."""
        return 0.0 if self.last_w is None else 1.0 - self.last_w
