"""Reading and validating query logs (CSV, JSON lines, Parquet) for offline analysis.

A query log has one row per query the prediction API answered:

- ``client_id`` — who asked;
- an order column, ``seq`` or ``ts`` (if both are present ``seq`` wins); ``ts`` may be
  numeric or a date-time string;
- the feature columns, named ``x_0 .. x_{d-1}`` or exactly like the training data;
- optionally what the API returned: probabilities ``p_0 .. p_{k-1}`` and/or a label ``pred``.

Extra columns are ignored. Rows with a NaN/inf feature or probability, or a missing
``client_id``/order/label, are skipped and counted (per client), never fatal. Structural
problems (unknown file type, missing columns, wrong feature count) raise :class:`LogError`
with a one-line message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CLIENT_COLUMN = "client_id"
ORDER_COLUMNS = ("seq", "ts")
LABEL_COLUMN = "pred"
LOG_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File extension (lower case; an extra ``.gz``/``.bz2``/``.xz``/``.zst`` is allowed for
text formats) -> log format."""

_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
DEFAULT_CHUNK_ROWS = 65_536


class LogError(ValueError):
    """A query log (or table) that cannot be used; the message says what to fix."""


@dataclass
class QueryLog:
    """A validated query log, sorted stably by ``(client_id, order)``.

    ``proba`` is ``(n, k)`` float64 or None; ``labels`` is ``(n,)`` or None.
    ``skipped_per_client`` counts rows dropped for NaN/inf/missing values.

    >>> import numpy as np
    >>> log = QueryLog(client_ids=np.array(["a", "b"], dtype=object), order=np.array([0, 0]),
    ...                order_column="seq", X=np.zeros((2, 3)))
    >>> log.n_rows, log.n_features, log.clients()
    (2, 3, ['a', 'b'])
    """

    client_ids: np.ndarray
    order: np.ndarray
    order_column: str
    X: np.ndarray
    proba: np.ndarray | None = None
    labels: np.ndarray | None = None
    feature_columns: list[str] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)
    n_skipped_nonfinite: int = 0
    skipped_per_client: dict[str, int] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Columns asked for with ``read_log(..., extra=...)`` (e.g. ground truth), row-aligned;
    never scored."""

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def clients(self) -> list[str]:
        """Client ids with at least one kept row, in sorted order."""
        return [str(c) for c in pd.unique(self.client_ids)]

    def client_slices(self) -> Iterator[tuple[str, slice]]:
        """``(client_id, slice)`` per client; valid because rows are sorted by client."""
        n = self.n_rows
        if n == 0:
            return
        starts = np.flatnonzero(np.r_[True, self.client_ids[1:] != self.client_ids[:-1]])
        ends = np.r_[starts[1:], n]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            yield str(self.client_ids[start]), slice(start, end)


@dataclass(frozen=True)
class _ColumnPlan:
    """Which columns of the file hold what."""

    features: list[str]
    order: str
    proba: list[str]
    label: str | None
    extra: list[str] = field(default_factory=list)

    @property
    def needed(self) -> list[str]:
        cols = [CLIENT_COLUMN, self.order, *self.features, *self.proba]
        cols += [self.label] if self.label else []
        return cols + [c for c in self.extra if c not in cols]


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _feature_columns(columns: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    present = set(columns)
    d = len(feature_names)
    positional = [f"x_{j}" for j in range(d)]
    n_x = sum(1 for c in columns if c.startswith("x_") and c[2:].isdigit())
    for candidate in (positional, list(feature_names)):
        if all(c in present for c in candidate) and (candidate is not positional or n_x == d):
            return candidate
    if n_x:
        missing = [c for c in positional if c not in present]
        extra = n_x - (d - len(missing))
        fixes = [f"add {_short(missing)}"] if missing else []
        fixes += [f"drop the {extra} column(s) beyond x_{d - 1}"] if extra > 0 else []
        raise LogError(
            f"log has {n_x} feature columns x_* but the profile expects {d} (x_0..x_{d - 1}); "
            + " and ".join(fixes)
        )
    missing = [c for c in feature_names if c not in present]
    raise LogError(
        f"log is missing feature columns {_short(missing)}; name the {d} features "
        f"x_0..x_{d - 1} or exactly as in the training data"
    )


def _short(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _plan(columns: Sequence[str], feature_names: Sequence[str], n_classes: int,
          extra: Sequence[str] = ()) -> _ColumnPlan:
    columns = [str(c) for c in columns]
    present = set(columns)
    if CLIENT_COLUMN not in present:
        raise LogError(f"log has no '{CLIENT_COLUMN}' column; add one naming who sent each query")
    order = next((c for c in ORDER_COLUMNS if c in present), None)
    if order is None:
        raise LogError("log has no order column; add 'seq' (query number) or 'ts' (timestamp)")
    features = _feature_columns(columns, feature_names)
    proba_present = sorted(
        (c for c in columns if c.startswith("p_") and c[2:].isdigit()), key=lambda c: int(c[2:])
    )
    proba: list[str] = []
    if proba_present:
        expected = [f"p_{j}" for j in range(n_classes)]
        if proba_present != expected:
            raise LogError(
                f"log has probability columns {_short(proba_present)} but the profile has "
                f"{n_classes} classes; provide exactly p_0..p_{n_classes - 1} or none"
            )
        proba = expected
    label = LABEL_COLUMN if LABEL_COLUMN in present else None
    return _ColumnPlan(features=features, order=order, proba=proba, label=label,
                       extra=[c for c in extra if c in present])


def _numeric(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``frame[columns]`` as float64; non-numeric cells become NaN (so the row is skipped)."""
    if not columns:
        return np.empty((len(frame), 0))
    sub = frame[columns]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
           for t in sub.dtypes):
        return sub.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty((len(frame), len(columns)))
    for j, col in enumerate(columns):  # loop over columns, not samples
        values = pd.to_numeric(sub[col], errors="coerce")
        if len(values) and values.isna().all() and sub[col].notna().any():
            raise LogError(f"column '{col}' is not numeric; it must hold numbers")
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _order_values(series: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if name == "seq":
        values = pd.to_numeric(series, errors="coerce")
        if len(values) and values.isna().all() and series.notna().any():
            raise LogError("column 'seq' is not numeric; it must hold query numbers")
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    stamps = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    if len(stamps) and stamps.isna().all() and series.notna().any():
        raise LogError("column 'ts' is neither numeric nor a date-time; fix its values")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[stamps.isna().to_numpy()] = np.nan
    return ns


def _chunk(frame: pd.DataFrame, plan: _ColumnPlan) -> QueryLog:
    """Validate one chunk of rows (in file order) into a :class:`QueryLog`."""
    missing = [c for c in plan.needed if c not in frame.columns]
    if missing:  # JSON lines: a chunk where no row has some key
        for col in missing:
            frame[col] = np.nan
    cid = frame[CLIENT_COLUMN]
    keep = cid.notna().to_numpy().copy()
    order = _order_values(frame[plan.order], plan.order)
    X = _numeric(frame, plan.features)
    proba = _numeric(frame, plan.proba) if plan.proba else None
    keep &= np.isfinite(order) & np.isfinite(X).all(axis=1)
    if proba is not None:
        keep &= np.isfinite(proba).all(axis=1)
    labels = None
    if plan.label:
        label_series = frame[plan.label]
        if not plan.proba:
            keep &= label_series.notna().to_numpy()
        labels = label_series.to_numpy()
    ids = cid.astype(str).to_numpy(dtype=object)
    skipped_ids = ids[~keep & cid.notna().to_numpy()]
    n_skipped = int((~keep).sum())
    uniq, counts = np.unique(skipped_ids.astype(str), return_counts=True)
    skipped = {str(u): int(c) for u, c in zip(uniq, counts, strict=True)}
    n_missing_client = n_skipped - int(counts.sum())
    if n_missing_client:
        skipped[""] = n_missing_client
    return QueryLog(
        client_ids=ids[keep],
        order=order[keep],
        order_column=plan.order,
        X=np.ascontiguousarray(X[keep]),
        proba=None if proba is None else np.ascontiguousarray(proba[keep]),
        labels=None if labels is None else labels[keep],
        feature_columns=list(plan.features),
        output_columns=[*plan.proba, *([plan.label] if plan.label else [])],
        n_skipped_nonfinite=n_skipped,
        skipped_per_client=skipped,
        extra={c: frame[c].to_numpy()[keep] for c in plan.extra},
    )


def _raw_chunks(path: Path, fmt: str, columns: list[str] | None, chunk_rows: int
                ) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pfile = pq.ParquetFile(path)
        for batch in pfile.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
        return
    if fmt == "csv":
        wanted = set(columns or ())
        reader = pd.read_csv(
            path, chunksize=chunk_rows, dtype={CLIENT_COLUMN: str},
            usecols=(lambda c: c in wanted) if columns else None,
        )
    else:
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
    with reader:
        yield from reader


def iter_log_chunks(
    path: str | Path,
    feature_names: Sequence[str],
    n_classes: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: Sequence[str] = (),
) -> Iterator[QueryLog]:
    """Yield validated chunks of at most ``chunk_rows`` rows, in file order (not sorted).

    Parquet is read batch by batch (row groups) and CSV/JSON lines chunk by chunk, so memory
    stays bounded by ``chunk_rows``. Raises :class:`LogError` on structural problems.
    """
    if chunk_rows < 1:
        raise LogError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path = _check_file(path)
    fmt = log_format(path)
    columns = _file_columns(path, fmt)
    plan = _plan(columns, feature_names, n_classes, extra) if columns is not None else None
    frames = _raw_chunks(path, fmt, plan.needed if plan else None, chunk_rows)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
        if plan is None:
            plan = _plan(list(frame.columns), feature_names, n_classes, extra)
        yield _chunk(frame, plan)


def concat_logs(chunks: Sequence[QueryLog]) -> QueryLog:
    """Join chunks and sort the rows stably by ``(client_id, order)``."""
    if sum(c.n_rows + c.n_skipped_nonfinite for c in chunks) == 0:
        raise LogError("log has no rows; nothing to analyze")
    ids = np.concatenate([c.client_ids for c in chunks])
    order = np.concatenate([c.order for c in chunks])
    codes, _ = pd.factorize(ids, sort=True)
    idx = np.lexsort((order, codes))  # lexsort is stable: ties keep file order
    first = chunks[0]
    proba = None if first.proba is None else np.concatenate([c.proba for c in chunks])[idx]
    labels = None if first.labels is None else np.concatenate([c.labels for c in chunks])[idx]
    skipped: dict[str, int] = {}
    for c in chunks:
        for key, count in c.skipped_per_client.items():
            skipped[key] = skipped.get(key, 0) + count
    return QueryLog(
        client_ids=ids[idx],
        order=order[idx],
        order_column=first.order_column,
        X=np.concatenate([c.X for c in chunks])[idx],
        proba=proba,
        labels=labels,
        feature_columns=first.feature_columns,
        output_columns=first.output_columns,
        n_skipped_nonfinite=sum(c.n_skipped_nonfinite for c in chunks),
        skipped_per_client=dict(sorted(skipped.items())),
        extra={c: np.concatenate([chunk.extra[c] for chunk in chunks])[idx]
               for c in first.extra},
    )


def read_log(
    path: str | Path,
    feature_names: Sequence[str],
    n_classes: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: Sequence[str] = (),
) -> QueryLog:
    """Read, validate and sort a whole query log.

    ``feature_names`` are the profile's training names (``x_0..`` is always accepted too);
    ``n_classes`` fixes how many ``p_*`` columns a log with probabilities must have;
    ``extra`` names columns to carry along unscored (``QueryLog.extra``) when present.
    """
    return concat_logs(list(iter_log_chunks(path, feature_names, n_classes, chunk_rows, extra)))


def read_columns(path: str | Path, columns: Sequence[str],
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pd.DataFrame:
    """``client_id`` and whichever of ``columns`` the log has, every row (none skipped), sorted
    stably by ``(client_id, order)`` as :func:`read_log` sorts — for columns that are not
    scored, such as ground truth."""
    path = _check_file(path)
    fmt = log_format(path)
    present = _file_columns(path, fmt)
    wanted = [CLIENT_COLUMN, *ORDER_COLUMNS, *columns]
    names = None if present is None else [c for c in wanted if c in present]
    try:
        frame = pd.concat(list(_raw_chunks(path, fmt, names, chunk_rows)), ignore_index=True)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
    if CLIENT_COLUMN not in frame.columns:
        raise LogError(f"log has no '{CLIENT_COLUMN}' column; add one naming who sent each query")
    frame = frame[[c for c in wanted if c in frame.columns]]
    frame = frame.dropna(subset=[CLIENT_COLUMN]).reset_index(drop=True)
    frame[CLIENT_COLUMN] = frame[CLIENT_COLUMN].astype(str)
    order = next((c for c in ORDER_COLUMNS if c in frame.columns), None)
    key = _order_values(frame[order], order) if order else np.zeros(len(frame))
    codes, _ = pd.factorize(frame[CLIENT_COLUMN].to_numpy(), sort=True)
    idx = np.lexsort((np.nan_to_num(key, nan=np.inf), codes))
    return frame.iloc[idx].drop(columns=[c for c in ORDER_COLUMNS if c in frame.columns]
                                ).reset_index(drop=True)


def read_table(path: str | Path) -> pd.DataFrame:
    """A whole CSV / JSON lines / Parquet table (e.g. training data) as a DataFrame."""
    path = _check_file(path)
    fmt = log_format(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "csv":
            return pd.read_csv(path)
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
