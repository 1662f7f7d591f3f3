"""Hash-partition a query log by client, streaming, into a folder of Parquet files.

A partition folder holds ``part-00000.parquet``, ``part-00001.parquet``, ... and a manifest
``_partitions.json``. Every row of a client lands in the same file, partition
``blake2b-64(utf-8 client_id) mod n_partitions`` (a stable hash: the same id goes to the same
partition on every machine and Python run, unlike the salted built-in ``hash``), and each
client's rows keep their order in the input. Empty partitions get no file. Rows with no
client id go to the partition of the empty id ``""`` (the analysis skips and counts them).

Columns are kept as they are (extra columns included) except that, for CSV and JSON lines
input, ``client_id`` is stored as a string, numeric columns as float64 and other columns as
strings, so that every chunk of the input has the same schema.

>>> import pandas as pd, tempfile
>>> from pathlib import Path
>>> tmp = Path(tempfile.mkdtemp())
>>> pd.DataFrame({"client_id": ["a", "b", "a", "c"], "seq": [0, 1, 2, 3],
...               "x_0": [0.1, 0.2, 0.3, 0.4]}).to_csv(tmp / "log.csv", index=False)
>>> result = partition_log(tmp / "log.csv", tmp / "parts", n_partitions=2)
>>> result.n_rows, [f.name for f in result.files]
(4, ['part-00000.parquet', 'part-00001.parquet'])
>>> pd.read_parquet(result.files[0])["client_id"].tolist()
['a', 'b', 'a']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from monitor.logs import CLIENT_COLUMN, LogError, is_json_array, log_format
from monitor.logs.formats import _read_json_array

PART_NAME = "part-{:05d}.parquet"
MANIFEST = "_partitions.json"
LAYOUT_VERSION = 1
DEFAULT_READ_ROWS = 131_072
DEFAULT_BUFFER_ROWS = 200_000
"""Rows buffered across all partitions before they are written out (bounds memory)."""
TARGET_PARTITION_ROWS = 125_000
"""Rows per partition aimed at by :func:`suggest_partitions`."""
_TEXT_BYTES_PER_PARTITION = 64 * 2**20
DEFAULT_COMPRESSION = "snappy"
"""Parquet codec of partition files that are kept (``extraction-monitor partition``)."""


@dataclass
class PartitionResult:
    """What :func:`partition_log` wrote."""

    out_dir: Path
    n_partitions: int
    n_rows: int
    files: list[Path] = field(default_factory=list)
    rows_per_file: list[int] = field(default_factory=list)


def client_partitions(client_ids, n_partitions: int) -> np.ndarray:
    """Partition index of each client id: ``blake2b-64(utf-8 id) mod n_partitions``.

    Hashes each distinct id once (the loop is over distinct clients, not rows); a missing id
    (None/NaN) is hashed as ``""``. ``client_ids`` is an array or an Arrow (chunked) array; an
    Arrow string column is dictionary-encoded in Arrow, so no Python string is made per row.

    >>> client_partitions(np.array(["alice", "bob", "alice"], dtype=object), 4).tolist()
    [1, 0, 1]
    >>> client_partitions(pa.array(["alice", None, "bob", "alice"]), 4).tolist()
    [1, 0, 0, 1]
    """
    if n_partitions < 1:
        raise LogError(f"n_partitions must be at least 1, got {n_partitions}")
    if isinstance(client_ids, pa.ChunkedArray | pa.Array):
        if _is_arrow_text(client_ids.type):
            return _arrow_partitions(client_ids, n_partitions)
        client_ids = client_ids.to_numpy(zero_copy_only=False)
    codes, uniques = pd.factorize(pd.Series(client_ids, dtype=object), use_na_sentinel=False)
    digests = _digests([_id_text(u) for u in uniques], n_partitions)
    return digests[codes] if len(codes) else np.zeros(0, dtype=np.int64)


def _is_arrow_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _arrow_partitions(ids: pa.ChunkedArray | pa.Array, n_partitions: int) -> np.ndarray:
    """:func:`client_partitions` of an Arrow string column: the same numbers, hashing the
    dictionary (distinct ids) and indexing it with the codes; a null hashes as ``""``."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(ids, null_encoding="encode")
    uniques = encoded.dictionary.to_pylist()
    digests = _digests(["" if u is None else u for u in uniques], n_partitions)
    return digests[encoded.indices.to_numpy(zero_copy_only=False)]


def _digests(texts, n_partitions: int) -> np.ndarray:
    return np.array([
        int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(),
                       "little") % n_partitions
        for t in texts
    ], dtype=np.int64)


def _id_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def suggest_partitions(path: str | Path) -> int:
    """A partition count giving roughly :data:`TARGET_PARTITION_ROWS` rows per partition.

    Parquet: from the row count in its metadata. Text logs: from the file size (about 64 MiB
    of text per partition, a compressed file counted as five times its size).
    """
    path = Path(path)
    fmt = log_format(path)
    if fmt == "parquet":
        rows = pq.ParquetFile(path).metadata.num_rows
        return max(1, math.ceil(rows / TARGET_PARTITION_ROWS))
    size = path.stat().st_size
    if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        size *= 5
    return max(1, math.ceil(size / _TEXT_BYTES_PER_PARTITION))


def _normalise_frame(frame: pd.DataFrame, client: str = CLIENT_COLUMN) -> pa.Table:
    """A text-log chunk as an Arrow table with a chunk-independent schema."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        if numeric and name != client:
            columns[name] = pa.array(col.to_numpy(dtype=np.float64, na_value=np.nan),
                                     type=pa.float64())
        else:  # as text, like read_log's ``astype(str)``; missing values stay missing
            columns[name] = pa.array(col.astype(str).to_numpy(dtype=object), type=pa.string(),
                                     mask=col.isna().to_numpy())
    return pa.table(columns)


def _no_client(client: str, columns) -> LogError:
    from monitor.logs.columns import _nearest_note

    return LogError(f"log has no '{client}' column{_nearest_note(client, list(columns), 'client')}"
                    "; name the column that says who sent each query with --client-column")


def _read_batches(path: Path, read_rows: int, client: str = CLIENT_COLUMN):
    """The input as Arrow tables of at most ``read_rows`` rows, in file order."""
    fmt = log_format(path)
    if fmt == "parquet":
        # no pre-buffering: reading whole row groups ahead costs several times their size
        pfile = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        if client not in pfile.schema_arrow.names:
            raise _no_client(client, pfile.schema_arrow.names)
        for batch in pfile.iter_batches(batch_size=read_rows, use_threads=False):
            yield pa.Table.from_batches([batch])
        return
    if fmt == "csv":
        reader = pd.read_csv(path, chunksize=read_rows, dtype={client: str})
    elif is_json_array(path):
        whole = _read_json_array(path)
        reader = contextlib.nullcontext(
            [whole.iloc[i:i + read_rows].reset_index(drop=True)
             for i in range(0, len(whole), read_rows)])
    else:
        reader = pd.read_json(path, lines=True, chunksize=read_rows, dtype=False)
    schema = None
    with reader as frames:
        for frame in frames:
            if client not in frame.columns and schema is None:
                raise _no_client(client, frame.columns)
            table = _normalise_frame(frame, client)
            if schema is None:
                schema = table.schema
            else:  # JSON lines: keys may come and go; keep the first chunk's columns
                table = _conform(table, schema)
            yield table


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for fld in schema:
        if fld.name in table.column_names:
            arrays.append(table[fld.name].cast(fld.type))
        else:
            arrays.append(pa.nulls(len(table), type=fld.type))
    return pa.table(arrays, schema=schema)


def partition_log(
    path: str | Path,
    out_dir: str | Path,
    n_partitions: int | None = None,
    read_rows: int = DEFAULT_READ_ROWS,
    buffer_rows: int = DEFAULT_BUFFER_ROWS,
    client_column: str | None = None,
    on_progress=None,
    compression: str = DEFAULT_COMPRESSION,
) -> PartitionResult:
    """Hash-partition the log at ``path`` by client into ``out_dir`` (see the module doc).

    Streams the input ``read_rows`` at a time and buffers at most about ``buffer_rows`` rows
    before writing, so memory does not depend on the log size. ``n_partitions`` defaults to
    :func:`suggest_partitions`. ``out_dir`` must be empty or not exist. ``client_column``
    names the client column (default ``client_id``); ``on_progress(rows_done, None)`` is
    called after each chunk read. ``compression`` is the Parquet codec of the files
    (``"none"`` for files read once and deleted, as ``analyze --out-of-core`` does: float
    features barely compress and the codec costs more than the bytes it saves).
    """
    client = client_column or CLIENT_COLUMN
    path = Path(path)
    log_format(path)  # unknown type first
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise LogError(f"{out_dir} is not empty; partition into a new or empty folder")
    n = suggest_partitions(path) if n_partitions is None else int(n_partitions)
    if n < 1:
        raise LogError(f"--partitions must be at least 1, got {n}")
    if read_rows < 1 or buffer_rows < 1:
        raise LogError("read_rows and buffer_rows must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)

    writers: dict[int, pq.ParquetWriter] = {}
    rows = np.zeros(n, dtype=np.int64)
    pending: dict[int, list[pa.Table]] = {}
    n_pending = 0
    schema: pa.Schema | None = None

    def flush() -> None:
        nonlocal n_pending
        for part, tables in pending.items():
            if part not in writers:
                writers[part] = pq.ParquetWriter(  # no dictionaries for float features
                    out_dir / PART_NAME.format(part), schema, use_dictionary=[client],
                    write_statistics=[client], compression=compression)
            writers[part].write_table(pa.concat_tables(tables))
        pending.clear()
        n_pending = 0
        pa.default_memory_pool().release_unused()  # give the buffer back to the OS

    try:
        done = 0
        for table in _read_batches(path, read_rows, client):
            if not len(table):
                continue
            done += len(table)
            if on_progress is not None:
                on_progress(done, None)
            schema = table.schema if schema is None else schema
            part = client_partitions(table[client], n)
            if n <= np.iinfo(np.uint16).max:  # a stable sort of 16-bit keys is a radix sort
                part = part.astype(np.uint16)
            order = np.argsort(part, kind="stable")  # stable: per-client order is kept
            sorted_part = part[order]
            table = table.take(pa.array(order))
            bounds = np.searchsorted(sorted_part, np.arange(n + 1))
            for p in np.flatnonzero(np.diff(bounds)).tolist():
                start, stop = int(bounds[p]), int(bounds[p + 1])
                pending.setdefault(p, []).append(table.slice(start, stop - start))
                rows[p] += stop - start
            n_pending += len(table)
            if n_pending >= buffer_rows:
                flush()
        if pending:
            flush()
    except (ValueError, OSError, pd.errors.ParserError, pa.ArrowException) as exc:
        if isinstance(exc, LogError):
            raise
        text = str(exc).strip().splitlines()
        raise LogError(f"{path.name}: cannot partition: {text[0] if text else exc!r}") from exc
    finally:
        for writer in writers.values():
            writer.close()

    parts = np.flatnonzero(rows).tolist()
    result = PartitionResult(
        out_dir=out_dir, n_partitions=n, n_rows=int(rows.sum()),
        files=[out_dir / PART_NAME.format(p) for p in parts],
        rows_per_file=[int(rows[p]) for p in parts],
    )
    manifest = {
        "layout": "extraction-monitor client partitions", "version": LAYOUT_VERSION,
        "hash": f"blake2b digest_size=8, little-endian, of the utf-8 {client}, mod n_partitions",
        "client_column": client,
        "n_partitions": n, "n_rows": result.n_rows, "source": str(path),
        "files": [{"name": f.name, "rows": r}
                  for f, r in zip(result.files, result.rows_per_file, strict=True)],
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def partition_files(folder: str | Path) -> list[Path]:
    """The ``part-*.parquet`` files of a partition folder, in order.

    Raises :class:`LogError` when ``folder`` holds no partition files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LogError(f"{folder}: not a folder")
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise LogError(f"{folder} holds no part-*.parquet files; create them with "
                       "`extraction-monitor partition LOG --out FOLDER`")
    return files


__all__ = ["DEFAULT_BUFFER_ROWS", "MANIFEST", "PART_NAME", "PartitionResult",
           "client_partitions", "partition_files", "partition_log", "suggest_partitions"]
