"""A client's state record: the bytes a store keeps, and the summary it indexes.

The core (:class:`~monitor.state.ClientState`) turns its state into a :class:`StateRecord`:
the record's bytes, opaque to every store, and a :class:`RecordSummary` (queries, score,
flag) that stores index to list, count and sort clients without decoding records. A store
never reads a record's insides; the two functions of this module a store may call on bytes it
holds are :func:`record_summary` (to rebuild an index) and :func:`merge_records` (the Redis
store's three-way merge after an outage).

Records are serialised without pickle (:func:`encode_state`): an 8-byte magic with a format
version, a JSON header naming each array's dtype and shape, then the raw little-endian array
bytes. Only bool, integer, float and unicode dtypes are accepted on decoding.
:func:`state_size_bound` gives the per-client size bound.

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAGIC = b"EMSTATE"
RECORD_FORMAT_VERSION = 1
"""Version of the record layout written by :func:`encode_state` (one byte after MAGIC)."""
MAX_RECORD_BYTES = 16 * 2**20
"""Records larger than this are refused (on save and on load) as a sign of misuse."""
_HEADER = struct.Struct("<7sBI")  # magic, format version, JSON header length
_SAFE_KINDS = set("biufU")
_NATIVE_LITTLE = sys.byteorder == "little"
_LAYOUTS_CACHED = 256
"""Record headers kept parsed (a client's record changes layout only while its bounded
buffers fill, so a deployment sees a few hundred layouts at most)."""


def encode_state(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named numpy arrays (no pickle): magic + version + JSON header + raw bytes."""
    layout, chunks = [], []
    for name, value in arrays.items():
        arr = value if type(value) is np.ndarray and value.flags.c_contiguous \
            else np.ascontiguousarray(value)
        known = _dtype_code(arr.dtype)
        if known is None:
            raise TypeError(f"state array {name!r} has unsupported dtype {arr.dtype}")
        little, code = known
        if little is not None:
            arr = arr.astype(little)
        layout.append((name if type(name) is str else str(name), code, arr.shape))
        chunks.append(arr.data)  # contiguous: joined below without a copy per array
    header = _encoded_header(tuple(layout))
    blob = b"".join([_HEADER.pack(MAGIC, RECORD_FORMAT_VERSION, len(header)), header, *chunks])
    if len(blob) > MAX_RECORD_BYTES:
        raise ValueError(f"client state record of {len(blob)} bytes exceeds "
                         f"{MAX_RECORD_BYTES} bytes")
    return blob


_DTYPE_CODES: dict[np.dtype, tuple[np.dtype | None, str]] = {}


def _dtype_code(dtype: np.dtype) -> tuple[np.dtype | None, str] | None:
    """``(the little-endian dtype to convert to, None when it is one; its header code)``, or
    ``None`` for a dtype records do not hold (worked out once per dtype)."""
    code = _DTYPE_CODES.get(dtype)
    if code is None:
        if dtype.kind not in _SAFE_KINDS:
            return None
        swap = dtype.byteorder == ">" or (dtype.byteorder == "=" and not _NATIVE_LITTLE)
        little = dtype.newbyteorder("<") if swap else None
        code = _DTYPE_CODES[dtype] = (little, (little or dtype).str)
    return code


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
                     exposure_points: int = 256, group_chars: int | None = None) -> int:
    """Upper bound in bytes of one client's encoded record for ``config`` (PRADA excluded).

    ``8*dedup_memory + 4*history + sum(windows)*len(detectors)`` (one byte per unit per
    test), the unit tracker's leaders and roots (``2*(48+16)*n_features`` plus their
    bookkeeping), the exposure tracker (4 bytes per reference point), ``label_change``'s
    label codes (2 bytes per leader), the ``block`` detector's counts (40 bytes; its sets
    are the tracker's leaders), plus a fixed 1.5 KiB for scalars and the JSON header, a
    flag reason of up to ``reason_chars`` characters and a group id of up to ``group_chars``
    (:data:`monitor.grouping.MAX_GROUP_CHARS`).

    >>> from monitor import MonitorConfig
    >>> state_size_bound(MonitorConfig(), n_features=30)
    11904
    >>> state_size_bound(MonitorConfig(detectors=["density", "block"]), n_features=64) <= 16384
    True
    """
    from monitor.grouping import MAX_GROUP_CHARS
    from monitor.settings import MonitorConfig
    from monitor.units import N_LEADERS, N_ROOTS, N_VARIANTS

    c = config or MonitorConfig()
    group_chars = MAX_GROUP_CHARS if group_chars is None else group_chars
    units = 2 * (N_LEADERS + N_ROOTS) * n_features + 2 * N_LEADERS + 10 * N_ROOTS \
        + 8 * N_VARIANTS + 8
    exposure = 4 * exposure_points if c.exposure else 0
    label_codes = 2 * N_LEADERS if "label_change" in c.detectors else 0
    block = 40 if "block" in c.detectors else 0
    return (8 * c.dedup_memory + 4 * c.history + sum(c.windows) * len(c.detectors) + units
            + exposure + label_codes + block + 1536 + 4 * reason_chars + 4 * group_chars)


@dataclass(frozen=True)
class RecordSummary:
    """What a store indexes of a record: enough to list, count and sort clients without
    decoding their records (the core hands it to the store with the record)."""

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


@dataclass(frozen=True)
class StateRecord:
    """What the core hands a store to write: the record's bytes and their summary."""

    blob: bytes
    summary: RecordSummary

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> StateRecord:
        """The record of named arrays (what tests and tools that write raw records use).

        >>> StateRecord.of({"counters": np.array([4, 4, -1])}).summary.n_queries
        4
        """
        return cls(encode_state(arrays), summarise(arrays))


def record_summary(blob: bytes) -> RecordSummary:
    """The summary of stored bytes (zeros for an unreadable record): for a store that
    rebuilds its index from the records it holds."""
    try:
        return summarise(decode_state(blob))
    except (ValueError, KeyError, IndexError, TypeError):
        return RecordSummary()


def merge_records(theirs: bytes, base: bytes | None, mine: bytes) -> StateRecord:
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
    t.group = t.group or m.group
    if t.exposure_at is None and m.exposure_at is not None:
        t.exposure_at = max(0, m.exposure_at + offset)
    return t.to_record()


__all__ = ["MAX_RECORD_BYTES", "RECORD_FORMAT_VERSION", "RecordSummary", "StateRecord",
           "decode_state", "encode_state", "merge_records", "record_summary",
           "state_size_bound", "summarise"]
