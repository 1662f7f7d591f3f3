"""Safety state a worker keeps for itself: flagged clients it must keep refusing through a
store outage, the store's health (an alarm, never silence), and the silence and evidence
warnings.

* :class:`FlagCache` — the flagged clients this worker knows of (refreshed from the store's
  index every ``flag_refresh_seconds``, and from every flag it reads or raises), consulted
  whenever the store cannot answer, so a blocked client stays blocked while Redis is down;
* :class:`StoreHealth` — a store write failure or outage under fail-open is logged once
  per outage, sets ``extraction_monitor_store_degraded`` to 1 and makes
  ``GET /monitor/health`` answer 503 ``degraded`` until a write succeeds again;
* :class:`Silence` — requests flow but none has been observed for ``silence_seconds``: a
  log line and ``extraction_monitor_silence_warnings_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

logger = logging.getLogger("extraction_monitor.serving")


class FlagCache:
    """A bounded LRU of ``client_id -> FlagStatus`` for flagged clients only.

    >>> from monitor.verdict import FlagStatus
    >>> cache = FlagCache(size=2)
    >>> cache.put("a", FlagStatus(True, 5.0, 3, "why")); cache.get("a").peak_score
    5.0
    >>> cache.put("b", FlagStatus(False, 0.0, None, None)); cache.get("b") is None
    True
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._flags: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self.next_refresh = 0.0
        self.refreshing = False

    def put(self, client_id: str, status) -> None:
        """Remember ``status`` if it is flagged (or over-exposed); forget the client if not."""
        with self._lock:
            if status is not None and (status.flagged or status.exposure_exceeded):
                self._flags[client_id] = status
                self._flags.move_to_end(client_id)
                while len(self._flags) > self.size:
                    self._flags.popitem(last=False)
            else:
                self._flags.pop(client_id, None)

    def get(self, client_id: str):
        with self._lock:
            return self._flags.get(client_id)

    def drop(self, client_id: str) -> None:
        with self._lock:
            self._flags.pop(client_id, None)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._flags)

    def __len__(self) -> int:
        return len(self._flags)


class StoreHealth:
    """Whether the state store takes this worker's writes; an alarm when it does not.

    An outage ends only after ``settle_seconds`` without a failure, so a store that fails
    every other write (a nearly full disk) is one outage, logged once.
    """

    def __init__(self, metrics=None, settle_seconds: float = 5.0) -> None:
        self.metrics = metrics
        self.settle_seconds = settle_seconds
        self.last_failure = 0.0
        self.since: float | None = None
        self.reason: str | None = None
        self.lost = 0
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self.since is not None

    def failed(self, reason: str, lost: int = 0) -> None:
        """Record a failure (``lost`` updates not written); logs once per outage."""
        with self._lock:
            self.last_failure = time.monotonic()
            first = self.since is None
            if first:
                self.since, self.reason = time.monotonic(), reason
            self.lost += lost
        if lost and self.metrics is not None:
            self.metrics.store_lost_updates.inc(lost)
        if first:
            if self.metrics is not None:
                self.metrics.store_degraded.set(1)
            logger.error("ALARM state store degraded: %s; answering per fail_mode until it "
                         "recovers (see GET /monitor/health)", reason)

    def ok(self) -> None:
        """A write went through: end the outage (logged once)."""
        if self.since is None or time.monotonic() - self.last_failure < self.settle_seconds:
            return
        with self._lock:
            since, self.since = self.since, None
            lost, self.lost = self.lost, 0
        if since is None:
            return
        if self.metrics is not None:
            self.metrics.store_degraded.set(0)
        logger.warning("state store recovered after %.1f s (%d updates could not be written "
                       "and are lost)", time.monotonic() - since, lost)

    def report(self) -> dict:
        """What ``GET /monitor/health`` says (no host names, no client ids)."""
        if self.since is None:
            return {"status": "ok"}
        return {"status": "degraded", "reason": self.reason,
                "seconds": round(time.monotonic() - self.since, 1), "lost_updates": self.lost}


class Silence:
    """Warn when requests flow but none has been observed for ``seconds``."""

    MIN_REQUESTS = 10

    def __init__(self, seconds: float, metrics=None) -> None:
        self.seconds = seconds
        self.metrics = metrics
        self.last_observed = time.monotonic()
        self.requests = 0
        self.warned_at: float | None = None

    def observed(self) -> None:
        self.last_observed = time.monotonic()
        self.requests = 0
        self.warned_at = None

    def request(self) -> None:
        if not self.seconds:
            return
        self.requests += 1
        now = time.monotonic()
        if (self.requests >= self.MIN_REQUESTS and now - self.last_observed > self.seconds
                and (self.warned_at is None or now - self.warned_at > self.seconds)):
            self.warned_at = now
            if self.metrics is not None:
                self.metrics.silences.inc()
            logger.warning("%d requests in the last %.0f s and none observed: no request "
                           "reached a watched route in a format the monitor reads (check "
                           "--route and the startup banner)", self.requests,
                           now - self.last_observed)


__all__ = ["FlagCache", "Silence", "StoreHealth"]
