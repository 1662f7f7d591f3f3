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
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np

MAGIC = b"EMSTATE"
RECORD_FORMAT_VERSION = 1
"""Version of the record layout written by :func:`encode_state` (one byte after MAGIC)."""
MAX_RECORD_BYTES = 16 * 2**20
"""Records larger than this are refused (on save and on load) as a sign of misuse."""
MAX_CLIENT_ID_LENGTH = 512
_HEADER = struct.Struct("<7sBI")  # magic, format version, JSON header length
_SAFE_KINDS = set("biufU")


class StoreUnavailable(RuntimeError):
    """The state store cannot be reached (and the store is configured to fail closed)."""


# --------------------------------------------------------------------------- records
def encode_state(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named numpy arrays (no pickle): magic + version + JSON header + raw bytes."""
    specs, chunks = [], []
    for name, value in arrays.items():
        arr = np.ascontiguousarray(value)
        if arr.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"state array {name!r} has unsupported dtype {arr.dtype}")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        specs.append([str(name), arr.dtype.str, list(arr.shape)])
        chunks.append(arr.tobytes())
    header = json.dumps({"arrays": specs}, separators=(",", ":")).encode()
    blob = _HEADER.pack(MAGIC, RECORD_FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    if len(blob) > MAX_RECORD_BYTES:
        raise ValueError(f"client state record of {len(blob)} bytes exceeds "
                         f"{MAX_RECORD_BYTES} bytes")
    return blob


def decode_state(blob: bytes) -> dict[str, np.ndarray]:
    """Arrays from :func:`encode_state`; ``ValueError`` with a one-line reason on bad input."""
    def corrupt(why: str) -> ValueError:
        return ValueError(f"stored client state is corrupt: {why}")

    blob = bytes(blob)
    if len(blob) < _HEADER.size or not blob.startswith(MAGIC):
        raise corrupt("not an extraction-monitor state record")
    if len(blob) > MAX_RECORD_BYTES:
        raise corrupt(f"record of {len(blob)} bytes exceeds {MAX_RECORD_BYTES} bytes")
    _, version, header_len = _HEADER.unpack_from(blob)
    if version != RECORD_FORMAT_VERSION:
        raise ValueError(f"stored client state has record format version {version}; this "
                         f"release reads version {RECORD_FORMAT_VERSION} (the client will be reset)")
    start = _HEADER.size + header_len
    try:
        specs = json.loads(blob[_HEADER.size:start])["arrays"]
    except (ValueError, KeyError, TypeError):
        raise corrupt("unreadable header") from None
    out: dict[str, np.ndarray] = {}
    offset = start
    try:
        for name, dtype_str, shape in specs:
            dtype = np.dtype(dtype_str)
            if dtype.kind not in _SAFE_KINDS or dtype.hasobject:
                raise corrupt(f"array {name!r} has unsupported dtype {dtype_str}")
            shape = tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise corrupt(f"array {name!r} has a negative dimension")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if offset + size > len(blob):
                raise corrupt("record is truncated")
            out[str(name)] = np.frombuffer(blob, dtype, count=size // max(dtype.itemsize, 1),
                                           offset=offset).reshape(shape).copy()
            offset += size
    except ValueError:
        raise
    except (TypeError, OverflowError):
        raise corrupt("malformed array description") from None
    if offset != len(blob):
        raise corrupt(f"{len(blob) - offset} unexpected trailing bytes")
    return out


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


# --------------------------------------------------------------------------- interface
class Transaction:
    """One exclusive read-modify-write of one client's record (see :meth:`StateStore.transaction`)."""

    def __init__(self, client_id: str, blob: bytes | None) -> None:
        self.client_id = client_id
        self.blob = blob
        self.saved: bytes | None = None

    def load(self):
        """The stored arrays, ``None`` for a new client, or a :class:`CorruptRecord`."""
        return read_record(self.blob)

    def save(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Stage the new state; it is written when the ``with`` block exits without error."""
        self.saved = encode_state(arrays)


class StateStore(ABC):
    """Per-client state outside the Monitor: exclusive read-modify-write, listing, TTL.

    ``ttl_seconds``: a client not updated for that long is treated as gone (and its record
    is purged); ``None`` keeps records forever. Stores are thread-safe.
    """

    scheme = ""

    def __init__(self, ttl_seconds: float | None = None) -> None:
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be > 0 (or None for no expiry)")
        self.ttl_seconds = None if ttl_seconds is None else float(ttl_seconds)

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


class StripedLocks:
    """A fixed pool of locks; a client always maps to the same one (bounded memory)."""

    def __init__(self, n: int = 64) -> None:
        self.locks = [threading.Lock() for _ in range(n)]

    @contextmanager
    def hold(self, client_id: str) -> Iterator[None]:
        lock = self.locks[zlib.crc32(client_id.encode()) % len(self.locks)]
        with lock:
            yield
