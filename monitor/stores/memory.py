"""In-process state store (``memory://``): for tests and single-worker serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from monitor.stores.base import StateStore, StripedLocks, Transaction, check_client_id


class MemoryStore(StateStore):
    """Encoded client records in a dict of this process, with per-client locking and TTL.

    Records are stored encoded, exactly as the shared stores keep them, so a test on
    ``memory://`` exercises the same serialisation.

    >>> import numpy as np
    >>> store = MemoryStore(ttl_seconds=3600)
    >>> with store.transaction("alice") as tx:
    ...     print(tx.load())
    ...     tx.save({"counters": np.array([1, 1, -1])})
    None
    >>> store.clients(), store.get("alice")["counters"].tolist()
    (['alice'], [1, 1, -1])
    """

    scheme = "memory"

    def __init__(self, ttl_seconds: float | None = None, clock=time.monotonic) -> None:
        super().__init__(ttl_seconds)
        self._clock = clock
        self._records: dict[str, tuple[bytes, float]] = {}
        self._guard = threading.Lock()
        self._locks = StripedLocks()

    def _live(self, client_id: str) -> bytes | None:
        with self._guard:
            record = self._records.get(client_id)
            if record is None:
                return None
            if self.ttl_seconds is not None and self._clock() - record[1] > self.ttl_seconds:
                del self._records[client_id]
                return None
            return record[0]

    @contextmanager
    def transaction(self, client_id: str) -> Iterator[Transaction]:
        check_client_id(client_id)
        with self._locks.hold(client_id):
            tx = Transaction(client_id, self._live(client_id))
            yield tx
            if tx.saved is not None:
                with self._guard:
                    self._records[client_id] = (tx.saved, self._clock())

    def get_blob(self, client_id: str) -> bytes | None:
        return self._live(client_id)

    def clients(self) -> list[str]:
        self.expire()
        with self._guard:
            return sorted(self._records)

    def delete(self, client_id: str) -> None:
        with self._guard:
            self._records.pop(client_id, None)

    def expire(self) -> int:
        if self.ttl_seconds is None:
            return 0
        cutoff = self._clock() - self.ttl_seconds
        with self._guard:
            stale = [c for c, (_, at) in self._records.items() if at < cutoff]
            for client_id in stale:
                del self._records[client_id]
        return len(stale)

    def __repr__(self) -> str:
        return f"MemoryStore(ttl_seconds={self.ttl_seconds})"
