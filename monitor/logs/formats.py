"""Log files as raw DataFrames: the format from the extension (:func:`log_format`),
compressed text, JSON lines or one JSON array, and the chunks of rows read from CSV, JSON or
Parquet (:func:`_raw_chunks`, memory bounded by the chunk size); a whole table
(:func:`read_table`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from monitor.logs.columns import CLIENT_COLUMN
from monitor.logs.errors import LogError, _one_line

LOG_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File extension (lower case; an extra ``.gz``/``.bz2``/``.xz``/``.zst`` is allowed for
text formats) -> log format. A ``.json`` file may hold JSON lines or one JSON array."""

_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")


def log_format(path: str | Path) -> str:
    """The format of ``path`` from its extension: ``csv``, ``jsonl`` or ``parquet``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSIONS and suffixes[-2] in LOG_FORMATS:
        fmt = LOG_FORMATS[suffixes[-2]]
        if fmt != "parquet":
            return fmt
    if suffixes and suffixes[-1] in LOG_FORMATS:
        return LOG_FORMATS[suffixes[-1]]
    known = ", ".join(LOG_FORMATS)
    raise LogError(f"{Path(path).name}: unknown file type; use one of {known}")


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    fmt = log_format(path)  # unknown type is reported before a missing file
    del fmt
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    return path


def _file_columns(path: Path, fmt: str) -> list[str] | None:
    """Column names without reading the data (None for JSON lines: keys may vary by row)."""
    try:
        if fmt == "csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
    except LogError:
        raise
    except Exception as exc:
        raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
    return None


def _open_text(path: Path):
    """``path`` opened as binary, decompressed when its extension says so."""
    suffix = path.suffix.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    return opener(path, "rb")


def is_json_array(path: str | Path) -> bool:
    """Whether a JSON log holds one array of records (rather than JSON lines).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = p.write_text(' [{"client_id": "a"}]')
    >>> is_json_array(p)
    True
    """
    path = Path(path)
    if path.suffix.lower() in (".zst", ".zip"):
        return False
    try:
        with _open_text(path) as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return False
    return head[:1] == b"["


def _read_json_array(path: Path) -> pd.DataFrame:
    """A JSON array of records as a DataFrame (client ids kept as text)."""
    import json

    with _open_text(path) as fh:
        records = json.load(fh)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise LogError(f"{path.name}: a JSON log must be JSON lines or one array of objects "
                       "(one object per query)")
    return pd.DataFrame.from_records(records)


def _raw_chunks(path: Path, fmt: str, columns: list[str] | None, chunk_rows: int,
                client: str = CLIENT_COLUMN) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pfile = pq.ParquetFile(path)
        for batch in pfile.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
        return
    if fmt == "jsonl" and is_json_array(path):
        frame = _read_json_array(path)
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start:start + chunk_rows].reset_index(drop=True)
        return
    if fmt == "csv":
        wanted = set(columns or ())
        reader = pd.read_csv(
            path, chunksize=chunk_rows, dtype={client: str},
            usecols=(lambda c: c in wanted) if columns else None,
        )
    else:
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
    with reader:
        yield from reader


def read_table(path: str | Path) -> pd.DataFrame:
    """A whole CSV / JSON lines / JSON array / Parquet table (e.g. training data) as a
    DataFrame."""
    path = _check_file(path)
    fmt = log_format(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "csv":
            return pd.read_csv(path)
        if is_json_array(path):
            return _read_json_array(path)
        return pd.read_json(path, lines=True, dtype=False)
    except LogError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
