"""In-process state store (``memory://``): for tests and single-worker serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from monitor.state_record import StateRecord
from monitor.stores.base import (
    RecordSummary,
    StateStore,
    StripedLocks,
    Transaction,
    _sort_key,
    check_client_id,
    check_sort,
)


class MemoryStore(StateStore):
    """Encoded client records in a dict of this process, with per-client locking and TTL.

    Records are stored encoded, exactly as the shared stores keep them, so a test on
    ``memory://`` exercises the same serialisation. The index (summaries and the two
    counts) is kept beside the records and updated on every write; flagged clients
    outlive ``ttl_seconds`` (see :class:`~monitor.stores.base.StateStore`).

    >>> from monitor.state_record import RecordSummary, StateRecord
    >>> store = MemoryStore(ttl_seconds=3600)
    >>> with store.transaction("alice") as tx:
    ...     print(tx.blob)
    ...     tx.save(StateRecord(b"record", RecordSummary(n_queries=1)))
    None
    >>> store.clients(), store.get_blob("alice"), store.counts()
    (['alice'], b'record', {'clients': 1, 'flagged': 0})
    """

    scheme = "memory"
    quick_calls = True  # in-process

    def __init__(self, ttl_seconds: float | None = None, clock=time.monotonic,
                 flag_ttl_seconds: float | None = None) -> None:
        super().__init__(ttl_seconds, flag_ttl_seconds)
        self._clock = clock
        self._records: dict[str, tuple[bytes, float, RecordSummary]] = {}
        self._n_flagged = 0
        self._guard = threading.Lock()
        self._locks = StripedLocks()

    def _expired(self, at: float, summary: RecordSummary, now: float) -> bool:
        ttl = self.flag_ttl_seconds if summary.flagged else self.ttl_seconds
        return ttl is not None and now - at > ttl

    def _drop(self, client_id: str) -> None:  # with self._guard held
        record = self._records.pop(client_id, None)
        if record is not None and record[2].flagged:
            self._n_flagged -= 1

    def _live(self, client_id: str) -> tuple[bytes, float, RecordSummary] | None:
        with self._guard:
            record = self._records.get(client_id)
            if record is None:
                return None
            if self._expired(record[1], record[2], self._clock()):
                self._drop(client_id)
                return None
            return record

    @contextmanager
    def transaction(self, client_id: str) -> Iterator[Transaction]:
        check_client_id(client_id)
        with self._locks.hold(client_id):
            record = self._live(client_id)
            tx = Transaction(client_id, None if record is None else record[0])
            yield tx
            if tx.saved is not None:
                with self._guard:
                    self._drop(client_id)
                    self._records[client_id] = (tx.saved, self._clock(), tx.summary)
                    self._n_flagged += tx.summary.flagged

    def update(self, client_id: str,
               compute: Callable[[bytes | None], StateRecord | None]) -> bytes | None:
        """:meth:`StateStore.update` without the context managers of :meth:`transaction`
        (the per-request path; a subclass that wraps :meth:`transaction` is still used)."""
        if type(self).transaction is not MemoryStore.transaction:
            return super().update(client_id, compute)
        check_client_id(client_id)
        with self._locks.lock_of(client_id):
            record = self._live(client_id)
            new = compute(None if record is None else record[0])
            if new is None:
                return None
            with self._guard:
                self._drop(client_id)
                self._records[client_id] = (new.blob, self._clock(), new.summary)
                self._n_flagged += new.summary.flagged
            return new.blob

    def get_blob(self, client_id: str) -> bytes | None:
        record = self._live(client_id)
        return None if record is None else record[0]

    def summary(self, client_id: str) -> RecordSummary | None:
        record = self._live(client_id)
        return None if record is None else record[2]

    def clients(self) -> list[str]:
        self.expire()
        with self._guard:
            return sorted(self._records)

    def counts(self) -> dict[str, int]:
        with self._guard:
            return {"clients": len(self._records), "flagged": self._n_flagged}

    def flagged(self, limit: int = 100_000) -> list[str]:
        with self._guard:
            return [c for c, r in self._records.items() if r[2].flagged][:limit]

    def page(self, offset: int = 0, limit: int = 50, sort: str = "-score",
             flagged: bool | None = None) -> tuple[int, list[str]]:
        check_sort(sort)
        self.expire()
        with self._guard:  # the dict of summaries is this store's index
            rows = [(c, r[2]) for c, r in self._records.items()
                    if flagged is None or r[2].flagged == flagged]
        rows.sort(key=_sort_key(sort))
        return len(rows), [c for c, _ in rows[offset:offset + limit]]

    def delete(self, client_id: str) -> None:
        with self._guard:
            self._drop(client_id)
        self.forget_throttle(client_id)

    def expire(self) -> int:
        if self.ttl_seconds is None and self.flag_ttl_seconds is None:
            return 0
        now = self._clock()
        with self._guard:
            stale = [c for c, (_, at, s) in self._records.items() if self._expired(at, s, now)]
            for client_id in stale:
                self._drop(client_id)
        return len(stale)

    def __repr__(self) -> str:
        return f"MemoryStore(ttl_seconds={self.ttl_seconds})"
