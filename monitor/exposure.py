"""Exposure: how much of the victim's decision function a client's answers already reveal.

Anomaly scores cannot tell a thief whose queries are real records from a benign batch scorer;
what separates them is how much of the model they have been shown (Kesarwani et al.,
"Extraction Monitor", ACSAC 2018). The profile keeps a fixed reference subset of held-out rows
and the victim's own labels on them. Per client, for each reference point, the tracker keeps the
distance to the nearest distinct query seen so far and the answer that query received: a 1-NN
"shadow copy" built from the client's answers. Its agreement with the victim on the subset
estimates the fidelity a copy built from those answers would reach.

For a regressor the answers are real values: the shadow copy answers each reference point with
the value of its nearest query, and exposure is its R² against the victim's predictions on the
subset (``1 - mean squared error / variance``, clipped at 0: a constant copy reveals nothing).

State per client: one float16 distance and one int16 answer (a float32 value for a regressor)
per reference point (about 1 KiB for 256 points); cost per query: one distance to each
reference point.

>>> import numpy as np
>>> points = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
>>> tracker = ExposureTracker(points, labels=np.array([0, 1, 1]))
>>> state = tracker.initial_state()
>>> tracker.exposure(state) is None
True
>>> tracker.update(np.array([[0.1, 0.0]]), np.array([0]), state)
>>> round(tracker.exposure(state), 3)   # one answer: a constant copy, right on 1 of 3
0.333
>>> tracker.update(np.array([[3.9, 0.2], [0.2, 3.8]]), np.array([1, 1]), state)
>>> tracker.exposure(state)
1.0
>>> values = ExposureTracker(points, values=np.array([0.0, 4.0, 4.0]))
>>> state = values.initial_state()
>>> values.update(np.array([[0.0, 0.1], [3.0, 0.5]]), np.array([0.0, 4.0]), state)
>>> round(values.exposure(state), 3)   # the point at (0, 4) is answered 0.0, not 4.0
0.0
>>> values.update(np.array([[0.0, 3.5]]), np.array([3.5]), state)
>>> round(values.exposure(state), 3)
0.977
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

F16_MAX = float(np.finfo(np.float16).max)

DEFAULT_POINTS = 256
"""Reference points the profile keeps for exposure accounting."""
UNANSWERED = -1
"""Answer code of a reference point no query has reached yet, or of an unknown answer."""
BLOCK_ROWS = 64
"""Queries compared with the reference subset at a time (bounds memory)."""


class ExposureTracker:
    """The 1-NN shadow copy of one client's answers on the profile's reference subset.

    ``points`` are the subset in the profile's scaled space, ``labels`` the victim's class
    index on each (its own predictions) — or, for a regressor, ``values``: its predicted
    values there.
    """

    name: ClassVar[str] = "exposure"
    state_keys: ClassVar[tuple[str, ...]] = ("nearest", "answer")
    fixed_shape: ClassVar[bool] = True
    """Its arrays never change shape (one entry per reference point): a stored state of
    another shape was written against another profile (:mod:`monitor.state_layout`)."""

    def __init__(self, points: np.ndarray, labels: np.ndarray | None = None,
                 values: np.ndarray | None = None) -> None:
        if (labels is None) == (values is None):
            raise ValueError("give the victim's labels (a classifier) or values (a regressor)")
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self.regression = values is not None
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int16)
        self.values = None if values is None else np.asarray(values, dtype=np.float64)

    @classmethod
    def from_profile(cls, profile) -> ExposureTracker | None:
        """The tracker of a fitted profile (``None`` for a profile without a subset)."""
        subset = getattr(profile, "exposure_", None)
        if not subset or len(subset.get("points", ())) == 0:
            return None
        if "values" in subset:
            return cls(subset["points"], values=subset["values"])
        return cls(subset["points"], subset["labels"])

    @staticmethod
    def calibrate(Z: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  n_points: int = DEFAULT_POINTS, values: bool = False
                  ) -> dict[str, np.ndarray]:
        """A seeded subset of held-out rows ``Z`` (scaled) and the victim's labels on them
        (``values=True``: ``labels`` are a regressor's predicted values)."""
        keep = np.sort(rng.permutation(len(Z))[:n_points])
        answers = {"values": np.asarray(labels[keep], dtype=np.float64)} if values else \
            {"labels": np.asarray(labels[keep], dtype=np.int16)}
        return {"points": np.asarray(Z[keep], dtype=np.float32), **answers}

    def initial_state(self) -> dict[str, np.ndarray]:
        n = len(self.points)
        answer = np.full(n, np.nan, dtype=np.float32) if self.regression else \
            np.full(n, UNANSWERED, dtype=np.int16)
        return {"nearest": np.full(n, np.inf, dtype=np.float16), "answer": answer}

    def update(self, Z: np.ndarray, answers: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Fold distinct queries ``Z`` (scaled) and their answers (class indices, -1 unknown;
        a regressor's values, NaN unknown) into the client's shadow copy."""
        answers = np.asarray(answers)
        known = np.isfinite(answers) if self.regression else answers >= 0
        kind = np.float32 if self.regression else np.int16
        if len(answers) == 1:  # the online path: one query, no blocks
            if not known[0]:
                return
            diff = self.points - np.asarray(Z, dtype=np.float32)[0]  # the blocks' sums exactly
            nearest = np.minimum(np.sqrt(np.einsum("ij,ij->i", diff, diff)),
                                 F16_MAX).astype(np.float16)
            closer = nearest < state["nearest"]
            if closer.any():
                state["nearest"] = np.where(closer, nearest, state["nearest"])
                state["answer"] = np.where(closer, answers.astype(kind), state["answer"])
            return
        if not known.any():
            return
        Z, answers = np.asarray(Z, dtype=np.float32)[known], answers[known]
        for start in range(0, len(Z), BLOCK_ROWS):
            block = Z[start:start + BLOCK_ROWS]
            # exact per-pair differences, rounded to the stored precision: the first query
            # reaching the smallest stored distance wins, in a batch as row by row
            diff = self.points[:, None, :] - block[None, :, :]
            d = np.minimum(np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)),
                           F16_MAX).astype(np.float16)  # saturate: no overflow to inf
            best = d.argmin(axis=1)
            nearest = d[np.arange(len(best)), best]
            closer = nearest < state["nearest"]
            state["nearest"] = np.where(closer, nearest, state["nearest"])
            state["answer"] = np.where(closer, answers[start + best].astype(kind),
                                       state["answer"])

    def exposure(self, state: dict[str, np.ndarray]) -> float | None:
        """Agreement of the shadow copy with the victim on the subset — for a regressor its
        R² there, clipped at 0 (``None``: no answers seen yet)."""
        answer = state["answer"]
        if self.regression:
            answered = np.isfinite(answer)
            if not answered.any():
                return None
            copy = np.where(answered, answer.astype(np.float64), self.values.mean())
            variance = float(np.mean((self.values - self.values.mean()) ** 2))
            error = float(np.mean((copy - self.values) ** 2))
            if variance == 0.0:
                return 1.0 if error == 0.0 else 0.0
            return max(0.0, 1.0 - error / variance)
        if not (answer != UNANSWERED).any():
            return None
        return int(np.count_nonzero(answer == self.labels)) / len(answer)  # the mean, exactly


__all__ = ["DEFAULT_POINTS", "UNANSWERED", "ExposureTracker"]
