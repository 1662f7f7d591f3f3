"""The :class:`StateStore` interface and the record format (stores by URI: :mod:`monitor.stores.uri`).

A store keeps each client's :class:`~monitor.state.ClientState` (as the small dict of
numpy arrays from ``ClientState.to_arrays()``) outside the :class:`~monitor.Monitor`,
so several worker processes (SQLite) or hosts (Redis) share one verdict per client
and state survives restarts. The Monitor uses it as::

    with store.transaction(client_id) as tx:   # exclusive per client
        arrays = tx.load()                     # dict of arrays, or None for a new client
        ...                                    # update
        tx.save(new_arrays)

Records are serialised without pickle (:func:`encode_state`): an 8-byte magic with a
format version, a JSON header naming each array's dtype and shape, then the raw
little-endian array bytes. Only bool, integer, float and unicode dtypes are accepted
on decoding. :func:`state_size_bound` gives the per-client size bound (about 3 KiB with
the default config and the chain detector off).

>>> import numpy as np
>>> blob = encode_state({"counters": np.array([3, 2, -1]), "hashes": np.zeros(2, np.uint64)})
>>> len(blob), decode_state(blob)["counters"].tolist()
(108, [3, 2, -1])
>>> decode_state(b"garbage")
Traceback (most recent call last):
...
ValueError: stored client state is corrupt: not an extraction-monitor state record
"""

from __future__ import annotations

import json
import math
import struct
import sys
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAGIC = b"EMSTATE"
RECORD_FORMAT_VERSION = 1
"""Version of the record layout written by :func:`encode_state` (one byte after MAGIC)."""
MAX_RECORD_BYTES = 16 * 2**20
"""Records larger than this are refused (on save and on load) as a sign of misuse."""
MAX_CLIENT_ID_LENGTH = 512
_HEADER = struct.Struct("<7sBI")  # magic, format version, JSON header length
_SAFE_KINDS = set("biufU")
_NATIVE_LITTLE = sys.byteorder == "little"
_LAYOUTS_CACHED = 256
"""Record headers kept parsed (a client's record changes layout only while its bounded
buffers fill, so a deployment sees a few hundred layouts at most)."""


class StoreUnavailable(RuntimeError):
    """The state store cannot be reached (and the store is configured to fail closed)."""


class StoreWriteError(RuntimeError):
    """A write to the state store failed (disk full, I/O error, read-only file): the update
    is lost; serving raises an alarm and answers per its ``fail_mode``."""


# --------------------------------------------------------------------------- records
def encode_state(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named numpy arrays (no pickle): magic + version + JSON header + raw bytes."""
    layout, chunks = [], []
    for name, value in arrays.items():
        arr = np.ascontiguousarray(value)
        if arr.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"state array {name!r} has unsupported dtype {arr.dtype}")
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _NATIVE_LITTLE):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        layout.append((str(name), arr.dtype.str, arr.shape))
        chunks.append(arr.tobytes())
    header = _encoded_header(tuple(layout))
    blob = _HEADER.pack(MAGIC, RECORD_FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    if len(blob) > MAX_RECORD_BYTES:
        raise ValueError(f"client state record of {len(blob)} bytes exceeds "
                         f"{MAX_RECORD_BYTES} bytes")
    return blob


@lru_cache(maxsize=_LAYOUTS_CACHED)
def _encoded_header(layout: tuple[tuple[str, str, tuple[int, ...]], ...]) -> bytes:
    """The JSON header of a record layout (clients' records share a few layouts)."""
    specs = [[name, dtype, list(shape)] for name, dtype, shape in layout]
    return json.dumps({"arrays": specs}, separators=(",", ":")).encode()


def decode_state(blob: bytes, only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays from :func:`encode_state` (``only``: just those named, when present);
    ``ValueError`` with a one-line reason on bad input."""
    blob = bytes(blob)
    if len(blob) < _HEADER.size or not blob.startswith(MAGIC):
        raise _corrupt("not an extraction-monitor state record")
    if len(blob) > MAX_RECORD_BYTES:
        raise _corrupt(f"record of {len(blob)} bytes exceeds {MAX_RECORD_BYTES} bytes")
    _, version, header_len = _HEADER.unpack_from(blob)
    if version != RECORD_FORMAT_VERSION:
        raise ValueError(f"stored client state has record format version {version}; this "
                         f"release reads version {RECORD_FORMAT_VERSION} (the client will be reset)")
    start = _HEADER.size + header_len
    layout = _decoded_header(blob[_HEADER.size:start])
    end = start + layout.size
    if end > len(blob):
        raise _corrupt("record is truncated")
    if end != len(blob):
        raise _corrupt(f"{len(blob) - end} unexpected trailing bytes")
    if only is not None:  # a few arrays: a copy of each
        return {name: np.frombuffer(blob, dtype, count=count, offset=start + offset
                                    ).reshape(shape).copy()
                for name, dtype, shape, offset, count in layout.arrays if name in only}
    buffer = bytearray(blob)  # one writable copy; every array is a view of its own slice
    return {name: np.frombuffer(buffer, dtype, count=count, offset=start + offset
                                ).reshape(shape)
            for name, dtype, shape, offset, count in layout.arrays}


def _corrupt(why: str) -> ValueError:
    return ValueError(f"stored client state is corrupt: {why}")


@dataclass(frozen=True)
class _Layout:
    """A record header, read and checked: each array's name, dtype, shape, byte offset after
    the header and element count; ``size`` is the bytes they take."""

    arrays: tuple[tuple[str, np.dtype, tuple[int, ...], int, int], ...]
    size: int


@lru_cache(maxsize=_LAYOUTS_CACHED)
def _decoded_header(header: bytes) -> _Layout:
    """The checked layout of a record header (cached: clients' records share a few)."""
    try:
        specs = json.loads(header)["arrays"]
    except (ValueError, KeyError, TypeError):
        raise _corrupt("unreadable header") from None
    arrays, offset = [], 0
    try:
        for name, dtype_str, shape in specs:
            dtype = np.dtype(dtype_str)
            if dtype.kind not in _SAFE_KINDS or dtype.hasobject:
                raise _corrupt(f"array {name!r} has unsupported dtype {dtype_str}")
            shape = tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise _corrupt(f"array {name!r} has a negative dimension")
            count = math.prod(shape)
            if count * dtype.itemsize > MAX_RECORD_BYTES:
                raise _corrupt("record is truncated")
            arrays.append((str(name), dtype, shape, offset, count))
            offset += count * dtype.itemsize
    except ValueError:
        raise
    except (TypeError, OverflowError):
        raise _corrupt("malformed array description") from None
    return _Layout(tuple(arrays), offset)


def state_size_bound(config=None, n_features: int = 0, reason_chars: int = 256,
                     exposure_points: int = 256) -> int:
    """Upper bound in bytes of one client's encoded record for ``config`` (PRADA excluded).

    ``8*dedup_memory + 4*history + sum(windows)*len(detectors)`` (one byte per unit per
    test), the unit tracker's leaders and roots (``2*(48+16)*n_features`` plus their
    bookkeeping), the exposure tracker (4 bytes per reference point), plus a fixed 1.5 KiB for
    scalars and the JSON header, and a flag reason of up to ``reason_chars`` characters.

    >>> from monitor import MonitorConfig
    >>> state_size_bound(MonitorConfig(), n_features=30)
    11176
    """
    from monitor.settings import MonitorConfig
    from monitor.units import N_LEADERS, N_ROOTS, N_VARIANTS

    c = config or MonitorConfig()
    units = 2 * (N_LEADERS + N_ROOTS) * n_features + 2 * N_LEADERS + 10 * N_ROOTS \
        + 8 * N_VARIANTS + 8
    exposure = 4 * exposure_points if c.exposure else 0
    return (8 * c.dedup_memory + 4 * c.history + sum(c.windows) * len(c.detectors) + units
            + exposure + 1536 + 4 * reason_chars)


class CorruptRecord(Mapping):
    """Stands in for an unreadable record: any key access raises its ``ValueError``.

    Returned by ``load``/``get`` so the Monitor's usual handling of a bad record
    (count it, log it, reset that client only) applies to records that cannot even
    be decoded.
    """

    def __init__(self, error: ValueError) -> None:
        self.error = error

    def __getitem__(self, key):
        raise self.error

    def __iter__(self):
        raise self.error

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"CorruptRecord({self.error})"


class StoredRecord(Mapping):
    """A record as read for an update: its bytes (:attr:`blob`), decoded on first access.

    What :meth:`StateStore.update` hands to ``compute``: a mapping of the record's arrays, so
    a reader that only needs to know *which* record it got (the Monitor's
    :class:`~monitor.state_cache.DecodedStates` compares :attr:`blob` with what it wrote last)
    never decodes it. An unreadable record raises its ``ValueError`` on first access, as a
    :class:`CorruptRecord` does.

    >>> import numpy as np
    >>> record = StoredRecord(encode_state({"counters": np.array([3, 2, -1])}))
    >>> record["counters"].tolist(), len(record.blob)
    ([3, 2, -1], 71)
    """

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self._arrays: dict[str, np.ndarray] | None = None

    def _decoded(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = decode_state(self.blob)
        return self._arrays

    def __getitem__(self, key):
        return self._decoded()[key]

    def __iter__(self):
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"StoredRecord({len(self.blob)} bytes)"


def read_record(blob: bytes | None):
    """Decoded arrays, ``None`` for no record, or a :class:`CorruptRecord`."""
    if blob is None:
        return None
    try:
        return decode_state(blob)
    except ValueError as exc:
        return CorruptRecord(exc)


def check_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("client_id must be a non-empty string")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValueError(f"client_id is longer than {MAX_CLIENT_ID_LENGTH} characters")
    return client_id


# --------------------------------------------------------------------------- summaries
SORTS = ("score", "-score", "n_queries", "-n_queries", "client_id")
"""Orders of :meth:`StateStore.page` (``-`` first: descending)."""


@dataclass(frozen=True)
class RecordSummary:
    """What a store indexes of a record: enough to list, count and sort clients without
    decoding their records (read from :meth:`monitor.state.ClientState.to_arrays` output)."""

    n_queries: int = 0
    score: float = 0.0
    peak_score: float = 0.0
    flagged: bool = False


def summarise(arrays: Mapping[str, np.ndarray]) -> RecordSummary:
    """The :class:`RecordSummary` of a state record's arrays (zeros for missing entries).

    >>> summarise({"counters": np.array([7, 5, 3, -1]), "scores": np.array([1.5, 2.5])})
    RecordSummary(n_queries=7, score=1.5, peak_score=2.5, flagged=True)
    """
    counters = np.asarray(arrays.get("counters", np.zeros(0)), dtype=np.int64).ravel()
    scores = np.asarray(arrays.get("scores", np.zeros(0)), dtype=np.float64).ravel()
    score = float(scores[0]) if len(scores) else 0.0
    peak = float(scores[1]) if len(scores) > 1 else score
    return RecordSummary(n_queries=int(counters[0]) if len(counters) else 0,
                         score=score if np.isfinite(score) else 0.0,
                         peak_score=peak if np.isfinite(peak) else 0.0,
                         flagged=bool(len(counters) > 2 and counters[2] >= 0))


def merge_records(theirs: bytes, base: bytes | None, mine: bytes) -> bytes:
    """Three-way merge of a client record that two writers changed from ``base``.

    The store's copy (``theirs``) keeps its evidence; the counts ``mine`` added since
    ``base`` are added to it, and a flag (or exposure mark) that only ``mine`` raised is
    kept, so an outage on several workers loses no count and no flag.
    """
    from monitor.state import ClientState

    t = ClientState.from_arrays(decode_state(theirs))
    m = ClientState.from_arrays(decode_state(mine))
    b = ClientState.from_arrays(decode_state(base)) if base is not None else ClientState()
    offset = t.n_queries - b.n_queries  # where mine's new queries land in the merged order
    t.n_queries += max(0, m.n_queries - b.n_queries)
    t.n_distinct += max(0, m.n_distinct - b.n_distinct)
    t.peak_score = max(t.peak_score, m.peak_score)
    if t.flag_at is None and m.flag_at is not None:
        t.flag_at = max(0, m.flag_at + offset)
        t.flag_reason = m.flag_reason
    if t.exposure_at is None and m.exposure_at is not None:
        t.exposure_at = max(0, m.exposure_at + offset)
    return encode_state(t.to_arrays())


# --------------------------------------------------------------------------- interface
class Transaction:
    """One exclusive read-modify-write of one client's record (see :meth:`StateStore.transaction`)."""

    def __init__(self, client_id: str, blob: bytes | None) -> None:
        self.client_id = client_id
        self.blob = blob
        self.saved: bytes | None = None
        self.summary = RecordSummary()

    def load(self):
        """The stored arrays, ``None`` for a new client, or a :class:`CorruptRecord`."""
        return read_record(self.blob)

    def save(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Stage the new state; it is written when the ``with`` block exits without error."""
        self.saved = encode_state(arrays)
        self.summary = summarise(arrays)


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

    def update(self, client_id: str, compute) -> bytes | None:
        """Read-modify-write one client: ``compute(record)`` gets the stored record (a
        :class:`StoredRecord`, decoded when read; ``None`` for a new client) and returns the
        new arrays (``None``: write nothing). It may be called more than once (optimistic
        stores retry it when another writer won), so it must not have effects outside the
        state it returns. Returns the record written (``None`` if nothing was)."""
        with self.transaction(client_id) as tx:
            new = compute(None if tx.blob is None else StoredRecord(tx.blob))
            if new is not None:
                tx.save(new)
        return tx.saved

    # ------------------------------------------------------------------ the index
    def summary(self, client_id: str) -> RecordSummary | None:
        """The indexed summary of a live client, or ``None``."""
        arrays = self.get(client_id)
        if arrays is None or isinstance(arrays, CorruptRecord):
            return None
        return summarise(arrays)

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

    def get(self, client_id: str):
        """A client's arrays (``None`` if unknown; a :class:`CorruptRecord` if unreadable)."""
        return read_record(self.get_blob(check_client_id(client_id)))

    def export(self, client_id: str) -> bytes:
        """The client's record as bytes (:func:`decode_state` reads it); KeyError if unknown."""
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

    @contextmanager
    def hold(self, client_id: str) -> Iterator[None]:
        lock = self.locks[zlib.crc32(client_id.encode()) % len(self.locks)]
        with lock:
            yield
