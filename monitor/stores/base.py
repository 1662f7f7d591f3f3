"""The :class:`StateStore` interface (stores by URI: :mod:`monitor.stores.uri`).

A store keeps each client's state record outside the :class:`~monitor.Monitor`, so several
worker processes (SQLite) or hosts (Redis) share one verdict per client and state survives
restarts. A record is opaque bytes to a store; beside it the store indexes the small
:class:`~monitor.state_record.RecordSummary` the core hands it with the bytes (a
:class:`~monitor.state_record.StateRecord`). The Monitor uses a store as::

    def compute(blob):            # the stored bytes, or None for a new client
        ...                       # decode, update, encode
        return StateRecord(new_blob, summary)

    store.update(client_id, compute)           # exclusive per client

or, for an exclusive read-modify-write written by hand::

    with store.transaction(client_id) as tx:   # exclusive per client
        tx.blob                                # the stored bytes, or None
        tx.save(StateRecord(new_blob, summary))

>>> from monitor.stores import MemoryStore
>>> store = MemoryStore()
>>> store.update("alice", lambda blob: StateRecord(b"opaque", RecordSummary(n_queries=3)))
b'opaque'
>>> store.get_blob("alice"), store.summary("alice").n_queries
(b'opaque', 3)
"""

from __future__ import annotations

import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from monitor.state_record import RecordSummary, StateRecord, record_summary

MAX_CLIENT_ID_LENGTH = 512


class StoreUnavailable(RuntimeError):
    """The state store cannot be reached (and the store is configured to fail closed)."""


class StoreWriteError(RuntimeError):
    """A write to the state store failed (disk full, I/O error, read-only file): the update
    is lost; serving raises an alarm and answers per its ``fail_mode``."""


# --------------------------------------------------------------------------- ids
SORTS = ("score", "-score", "n_queries", "-n_queries", "client_id")
"""Orders of :meth:`StateStore.page` (``-`` first: descending)."""


def check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("client_id must be a non-empty string")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValueError(f"client_id is longer than {MAX_CLIENT_ID_LENGTH} characters")
    return client_id


# --------------------------------------------------------------------------- summaries
# --------------------------------------------------------------------------- interface
class Transaction:
    """One exclusive read-modify-write of one client's record (see :meth:`StateStore.transaction`)."""

    def __init__(self, client_id: str, blob: bytes | None) -> None:
        self.client_id = client_id
        self.blob = blob
        """The stored record's bytes, ``None`` for a new client."""
        self.saved: bytes | None = None
        self.summary = RecordSummary()

    def save(self, record: StateRecord) -> None:
        """Stage the new record; it is written when the ``with`` block exits without error."""
        self.saved = record.blob
        self.summary = record.summary


class StateStore(ABC):
    """Per-client state outside the Monitor: exclusive read-modify-write, listing, TTL.

    ``ttl_seconds``: the evidence of a client not updated for that long is forgotten (its
    record purged); ``None`` keeps records forever. A *flagged* client's record is kept
    for ``flag_ttl_seconds`` instead (``None``, the default: forever), so a flag outlives
    the evidence TTL. Stores are thread-safe.

    Besides the record itself a store keeps an index (:class:`RecordSummary` per client)
    from which :meth:`counts` (O(1)) and :meth:`page` (sorted, paginated) answer without
    decoding records, and a shared rate limiter (:meth:`take`) so that every worker on the
    store enforces one throttle rate.
    """

    scheme = ""
    quick_calls = False
    """Whether every call is local and short (no network round trip), so that serving may
    make it on the event loop for a small request (``[serving] inline_rows``)."""

    def __init__(self, ttl_seconds: float | None = None,
                 flag_ttl_seconds: float | None = None) -> None:
        for name, value in (("ttl_seconds", ttl_seconds), ("flag_ttl_seconds", flag_ttl_seconds)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 (or None for no expiry)")
        self.ttl_seconds = None if ttl_seconds is None else float(ttl_seconds)
        self.flag_ttl_seconds = None if flag_ttl_seconds is None else float(flag_ttl_seconds)
        self._buckets: dict[str, float] = {}
        self._buckets_lock = threading.Lock()

    def update(self, client_id: str,
               compute: Callable[[bytes | None], StateRecord | None]) -> bytes | None:
        """Read-modify-write one client: ``compute(blob)`` gets the stored record's bytes
        (``None`` for a new client) and returns the new :class:`StateRecord` (``None``: write
        nothing). It may be called more than once (optimistic stores retry it when another
        writer won), so it must not have effects outside the record it returns. Returns the
        bytes written (``None`` if nothing was)."""
        with self.transaction(client_id) as tx:
            new = compute(tx.blob)
            if new is not None:
                tx.save(new)
        return tx.saved

    # ------------------------------------------------------------------ the index
    def summary(self, client_id: str) -> RecordSummary | None:
        """The indexed summary of a live client, or ``None`` (this fallback asks the core to
        summarise the stored bytes; stores that keep an index answer from it)."""
        blob = self.get_blob(check_client_id(client_id))
        return None if blob is None else record_summary(blob)

    def counts(self) -> dict[str, int]:
        """``{"clients": live clients, "flagged": flagged clients}`` (O(1) in the stores
        that keep an index; this fallback scans)."""
        ids = self.clients()
        flagged = sum(bool(s and s.flagged) for s in map(self.summary, ids))
        return {"clients": len(ids), "flagged": flagged}

    def flagged(self, limit: int = 100_000) -> list[str]:
        """Ids of flagged clients (at most ``limit``)."""
        return [c for c in self.clients() if (s := self.summary(c)) and s.flagged][:limit]

    def page(self, offset: int = 0, limit: int = 50, sort: str = "-score",
             flagged: bool | None = None) -> tuple[int, list[str]]:
        """``(total, ids)``: one page of live clients in ``sort`` order (see :data:`SORTS`),
        optionally only flagged or only unflagged ones."""
        check_sort(sort)
        rows = [(c, s) for c in self.clients() if (s := self.summary(c)) is not None
                and (flagged is None or s.flagged == flagged)]
        rows.sort(key=_sort_key(sort))
        return len(rows), [c for c, _ in rows[offset:offset + limit]]

    # ------------------------------------------------------------------ shared throttle
    def take(self, client_id: str, cost: float, rate: float, burst: float,
             start: bool = False) -> float:
        """Take ``cost`` tokens from the client's bucket (``rate`` per second, ``burst`` at
        most); 0.0 if allowed, else the seconds to wait. ``start`` first empties the bucket
        (a client that was just flagged). A generic cell rate algorithm: one "theoretical
        arrival time" per client; this default is per process, the shared stores keep it
        in the store so N workers enforce one rate."""
        with self._buckets_lock:
            now = time.time()
            tat = self._buckets.get(client_id, now)
            tat, wait = gcra(tat, now, cost, rate, burst, start)
            self._buckets[client_id] = tat
            return wait

    def forget_throttle(self, client_id: str) -> None:
        """Drop a client's bucket (after an operator reset)."""
        with self._buckets_lock:
            self._buckets.pop(client_id, None)

    @abstractmethod
    def transaction(self, client_id: str):
        """Context manager yielding a :class:`Transaction`, exclusive for ``client_id``
        across threads (and processes / hosts for shared stores). The staged state is
        written on normal exit and discarded on an exception."""

    @abstractmethod
    def get_blob(self, client_id: str) -> bytes | None:
        """The raw encoded record of a live client, or ``None``."""

    @abstractmethod
    def clients(self) -> list[str]:
        """Ids of all live (unexpired) clients, sorted."""

    @abstractmethod
    def delete(self, client_id: str) -> None:
        """Forget a client (no error if unknown)."""

    def export(self, client_id: str) -> bytes:
        """The client's record as bytes (:func:`monitor.state_record.decode_state` reads
        it); KeyError if unknown."""
        blob = self.get_blob(check_client_id(client_id))
        if blob is None:
            raise KeyError(f"no stored state for client {client_id!r}")
        return blob

    def expire(self) -> int:
        """Purge records idle for longer than ``ttl_seconds``; return how many went."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for metrics (store specific; empty by default)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gcra(tat: float, now: float, cost: float, rate: float, burst: float,
         start: bool = False) -> tuple[float, float]:
    """One step of the generic cell rate algorithm: ``(new tat, wait)``.

    A bucket of ``burst`` tokens refilled at ``rate`` per second is one number, the
    theoretical arrival time ``tat``; a request of ``cost`` tokens passes when
    ``max(tat, now) + cost / rate - now <= burst / rate``. ``start`` empties the bucket.

    >>> tat, wait = gcra(0.0, 100.0, 1, rate=1.0, burst=1, start=True)
    >>> wait, gcra(tat, 101.0, 1, 1.0, 1)[1]
    (1.0, 0.0)
    """
    interval, tolerance = 1.0 / rate, burst / rate
    tat = now + tolerance if start else max(tat, now)
    new = tat + cost * interval
    if new - now > tolerance + 1e-9:
        return tat, new - now - tolerance
    return new, 0.0


def check_sort(sort: str) -> str:
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    return sort


def _sort_key(sort: str):
    field = sort.lstrip("-")
    sign = -1 if sort.startswith("-") else 1
    if field == "client_id":
        return lambda row: row[0]
    return lambda row: (sign * getattr(row[1], field), row[0])


class StripedLocks:
    """A fixed pool of locks; a client always maps to the same one (bounded memory)."""

    def __init__(self, n: int = 64) -> None:
        self.locks = [threading.Lock() for _ in range(n)]

    def lock_of(self, client_id: str) -> threading.Lock:
        """The lock of ``client_id``."""
        return self.locks[zlib.crc32(client_id.encode()) % len(self.locks)]

    @contextmanager
    def hold(self, client_id: str) -> Iterator[None]:
        with self.lock_of(client_id):
            yield
