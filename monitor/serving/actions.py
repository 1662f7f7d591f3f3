"""The mechanics of enforcement: degraded answers and per-client token buckets.

Which action applies when is decided by :class:`monitor.serving.policy.EnforcementPolicy`.

Degrade modes (``ServingConfig.degrade_mode``):

* ``label``   — the predicted label only (``classes[argmax]``) instead of probabilities;
* ``round``   — probabilities rounded to ``degrade_decimals`` decimals;
* ``flatten`` — ``p' = (1 - s) * p + s / k`` with ``s = degrade_strength``: mixed towards the
  uniform distribution; rows still sum to 1 and the argmax (the label) is unchanged, but the
  confidence information an extraction attack learns from is shrunk by a factor ``1 - s``.

A regressor's answers (``regression=True``) are degraded in every mode to ``degrade_decimals``
significant digits (at least one): equation-solving extraction of a regression model needs
its exact values. A label-only classifier's answers are already the least informative, and
pass unchanged.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np


def significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (at least one).

    >>> significant(np.array([123.456, -0.0123456, 0.0]), 2).tolist()
    [120.0, -0.012, 0.0]
    """
    values = np.asarray(values, dtype=np.float64)
    digits = max(1, int(digits))
    magnitude = np.floor(np.log10(np.where(values == 0, 1.0, np.abs(values))))
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.round(values * scale) / scale


def degrade(outputs: np.ndarray, mode: str, classes: np.ndarray | None = None,
            decimals: int = 1, strength: float = 0.5, regression: bool = False) -> np.ndarray:
    """Less informative outputs; labels (1-D) pass through unchanged, a regressor's values are
    rounded to ``decimals`` significant digits.

    >>> p = np.array([[0.7, 0.2, 0.1]])
    >>> degrade(p, "flatten", strength=0.5).round(3).tolist()
    [[0.517, 0.267, 0.217]]
    >>> degrade(p, "label", classes=np.array([3, 4, 5])).tolist()
    [3]
    >>> degrade(p, "round", decimals=0).tolist()
    [[1.0, 0.0, 0.0]]
    >>> degrade(np.array([1234.5678]), "flatten", decimals=2, regression=True).tolist()
    [1200.0]
    """
    if regression:
        return significant(outputs, decimals)
    if outputs.ndim != 2:
        return outputs
    if mode == "label":
        idx = outputs.argmax(axis=1)
        if classes is not None and len(classes) == outputs.shape[1]:
            return np.asarray(classes)[idx]
        return idx
    if mode == "round":
        return np.round(outputs, decimals)
    if mode == "flatten":
        k = outputs.shape[1]
        return (1.0 - strength) * outputs + strength / k
    raise ValueError(f"unknown degrade mode {mode!r}")


class Throttle:
    """Per-client token buckets in this process: ``rate`` rows per second, ``burst`` at most.

    A bucket starts empty when the client is flagged (the flagging request is refused). A
    request costs one token per row. This is the fallback; serving uses the state store's
    shared buckets (:meth:`monitor.stores.StateStore.take`) so that N workers enforce one
    rate. A request with more rows than ``burst`` never fits a bucket; the policy refuses
    it up front.

    >>> t = Throttle(rate=1.0, burst=1)
    >>> t.start("c", now=0.0); t.take("c", now=0.5), t.take("c", now=1.0), t.take("c", now=1.2)
    (1, 0, 1)
    >>> t.take("c", cost=1, now=10.0)
    0
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, client_id: str, now: float | None = None) -> None:
        """Begin throttling ``client_id`` with an empty bucket."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._tat[client_id] = now + self.burst / self.rate

    def take(self, client_id: str, cost: float = 1, now: float | None = None) -> int:
        """0 if a request of ``cost`` rows may pass, else the seconds to wait."""
        from monitor.stores.base import gcra

        now = time.monotonic() if now is None else now
        with self._lock:
            tat, wait = gcra(self._tat.get(client_id, now), now, cost, self.rate, self.burst)
            self._tat[client_id] = tat
        return 0 if wait == 0 else max(1, math.ceil(wait))

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._tat.pop(client_id, None)
