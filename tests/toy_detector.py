"""A toy detector, written the way a new detector is added: this one module, plus one
``register_detector(MaxCoordinateDetector)`` line (tests/unit/test_detector_protocol.py does it
inside a fixture so the toy never leaks into other tests).

Its statistic is the largest absolute scaled coordinate of a query; it keeps, per client, the
largest statistic it has seen (one declared state array), to exercise stored detector state.
"""

from __future__ import annotations

import numpy as np

from monitor.conformal import conformal_pvalues


class MaxCoordinateDetector:
    name = "max-coordinate"
    stateful = True
    state_keys = ("largest",)

    def __init__(self, profile, config=None) -> None:
        self.calibration = profile.calibration_[self.name]["statistic"]

    @classmethod
    def calibrate(cls, data):
        stats = np.concatenate([np.abs(split.Z).max(axis=1) for split in data.splits])
        return {"statistic": np.sort(stats)}

    def initial_state(self):
        return {"largest": np.zeros(1)}

    def pvalues(self, batch, state=None):
        stats = np.abs(batch.Z).max(axis=1)
        if state is not None and len(stats):
            state["largest"] = np.maximum(state["largest"], stats.max(keepdims=True))
        return conformal_pvalues(stats, self.calibration)

    def phrase(self, level):
        return f"have a coordinate more extreme than {100 * (1 - level):g}% of real inputs"
