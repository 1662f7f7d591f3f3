"""Reading and validating query logs (CSV, JSON lines or a JSON array, Parquet) for offline
analysis.

A query log has one row per query the prediction API answered. Which column holds what is a
:class:`LogColumns` mapping; its defaults are:

- ``client_id`` — who asked (``client=``);
- an order column, ``seq`` or ``ts`` (if both are present ``seq`` wins; ``order=`` names
  another, ``time=`` a timestamp column that then orders the rows too); ``ts`` may be numeric
  or a date-time string and is kept as the query's time (``QueryLog.time``);
- the feature columns, named ``x_0 .. x_{d-1}`` or exactly like the training data; given the
  profile's :class:`~monitor.features.FeatureSchema` (``read_log(path, profile.schema_, ...)``)
  they may hold categories (text) and, where the model accepts them, missing values;
- optionally what the API returned: probabilities ``p_0 .. p_{k-1}`` (``proba=`` takes a
  glob pattern such as ``"prob_*"`` or a list of names, in class order) and/or a label
  ``pred`` (``label=``) — for a regressor (``n_classes=0``) ``pred`` is its predicted value.

Extra columns are ignored unless asked for (``keep=``, ``extra=``: carried along unscored in
``QueryLog.extra``). Rows with an unusable feature (inf; NaN where the model takes no missing
value; text in a numeric column) or probability, or a missing client/order/label, are skipped
and counted (per client), never fatal. Structural problems
(unknown file type, missing columns, wrong feature count) raise :class:`LogError` with a
one-line message that says what to fix and, for a missing column, names the column of the
file nearest to what was expected.

>>> import pandas as pd, tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "log.json"
>>> pd.DataFrame({"user": ["u1", "u2", "u1"], "timestamp": ["2024-05-01T10:00:00",
...               "2024-05-01T10:00:01", "2024-05-01T10:00:02"], "x_0": [0.1, 0.2, 0.3],
...               "prob_no": [0.9, 0.2, 0.4], "prob_yes": [0.1, 0.8, 0.6],
...               "request_id": ["r1", "r2", "r3"]}).to_json(path, orient="records")
>>> columns = LogColumns(client="user", time="timestamp", proba="prob_*", keep=("request_id",))
>>> log = read_log(path, ["x_0"], 2, columns=columns)
>>> log.clients(), log.extra["request_id"].tolist(), log.proba[:, 1].tolist()
(['u1', 'u2'], ['r1', 'r3', 'r2'], [0.1, 0.6, 0.8])
>>> read_log(path, ["x_0"], 2)
Traceback (most recent call last):
...
monitor.logs.LogError: log has no 'client_id' column (nearest: 'user'); name the column that says who sent each query with --client-column
"""

from __future__ import annotations

import bz2
import difflib
import fnmatch
import gzip
import lzma
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CLIENT_COLUMN = "client_id"
ORDER_COLUMNS = ("seq", "ts")
TIME_COLUMN = "ts"
LABEL_COLUMN = "pred"
PROBA_PATTERN = "p_*"
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
DEFAULT_CHUNK_ROWS = 65_536

_HINTS = {
    "client": ("client", "user", "account", "key", "caller", "customer", "tenant", "ip",
               "principal", "session", "id"),
    "order": ("seq", "order", "index", "idx", "num", "count", "ts", "time", "date", "stamp"),
    "time": ("ts", "time", "date", "stamp", "when", "at"),
    "proba": ("prob", "proba", "p_", "score", "conf", "likelihood"),
    "label": ("pred", "label", "class", "answer", "output", "y"),
}
"""Name fragments that suggest a column's role, for the 'nearest column' in errors."""


class LogError(ValueError):
    """A query log (or table) that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class LogColumns:
    """Which columns of a log hold what (every field optional; see the module docstring).

    ``proba`` is a glob pattern (``"prob_*"``; matches ordered by their numeric suffix when
    every match has one, else as in the file) or a sequence of names in class order.
    ``keep`` names columns carried along to the verdict table (``analyze --keep``).

    >>> LogColumns.parse_proba("prob_*"), LogColumns.parse_proba("pa, pb")
    ('prob_*', ('pa', 'pb'))
    >>> LogColumns.from_dict(LogColumns(client="user", keep=("a",)).to_dict()).keep
    ('a',)
    """

    client: str = CLIENT_COLUMN
    order: str | None = None
    time: str | None = None
    proba: str | tuple[str, ...] | None = None
    label: str | None = None
    keep: tuple[str, ...] = ()

    @staticmethod
    def parse_proba(text: str | None) -> str | tuple[str, ...] | None:
        """``--proba-columns`` text: a glob pattern, or comma-separated names."""
        if text is None or not text.strip():
            return None
        if "," in text:
            return tuple(t.strip() for t in text.split(",") if t.strip())
        return text.strip()

    def to_dict(self) -> dict:
        """Plain values (for a Dask task or a manifest)."""
        out = asdict(self)
        out["proba"] = list(self.proba) if isinstance(self.proba, tuple) else self.proba
        out["keep"] = list(self.keep)
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> LogColumns:
        """The inverse of :meth:`to_dict` (``None``: the defaults)."""
        data = dict(data or {})
        proba = data.get("proba")
        data["proba"] = tuple(proba) if isinstance(proba, list) else proba
        data["keep"] = tuple(data.get("keep") or ())
        return cls(**data)

    def describe(self) -> str:
        """The mapping in a few words, for messages."""
        proba = ",".join(self.proba) if isinstance(self.proba, tuple) else self.proba
        parts = [f"client={self.client}"]
        parts += [f"{k}={v}" for k, v in (("order", self.order), ("time", self.time),
                                          ("proba", proba), ("label", self.label)) if v]
        return " ".join(parts)


DEFAULT_COLUMNS = LogColumns()


@dataclass
class QueryLog:
    """A validated query log, sorted stably by ``(client_id, order)``.

    ``proba`` is ``(n, k)`` float64 or None; ``labels`` is ``(n,)`` or None.
    ``time`` is each query's time (nanoseconds since the epoch, UTC, when ``time_kind`` is
    ``"datetime"``; the column's numbers when ``"numeric"``) or None without a time column.
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
    """Columns asked for with ``read_log(..., extra=...)`` or ``LogColumns(keep=...)`` (e.g.
    ground truth), row-aligned; never scored."""
    time: np.ndarray | None = None
    time_column: str | None = None
    time_kind: str | None = None
    client_column: str = CLIENT_COLUMN
    features: pd.DataFrame | None = None
    """The kept rows' feature values as the log gave them (schema columns), when the schema
    has categorical columns: what the model is called with (``X`` holds their codes)."""
    schema: object | None = None
    """The :class:`~monitor.features.FeatureSchema` the features were read with, if any."""

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def rows(self, index=None):
        """The rows at ``index`` (all by default) as the monitor takes them: the coded array,
        or :class:`~monitor.features.Rows` with the original values for the model."""
        X = self.X if index is None else self.X[index]
        if self.features is None:
            return X
        from monitor.features import Rows

        source = self.features if index is None else \
            self.features.iloc[index].reset_index(drop=True)
        return Rows(X, self.schema, source)

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

    def client_times(self) -> dict[str, np.ndarray]:
        """Client -> the time of each of its kept queries, in order (empty without times)."""
        if self.time is None:
            return {}
        return {client: self.time[rows] for client, rows in self.client_slices()}


@dataclass(frozen=True)
class _ColumnPlan:
    """Which columns of the file hold what."""

    client: str
    features: list[str]
    order: str
    proba: list[str]
    label: str | None
    extra: list[str] = field(default_factory=list)
    time: str | None = None
    schema: object | None = None
    regression: bool = False

    @property
    def needed(self) -> list[str]:
        cols = [self.client, self.order, *self.features, *self.proba]
        cols += [self.label] if self.label else []
        cols += [self.time] if self.time and self.time not in cols else []
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


def nearest_column(expected: str, columns: Sequence[str], role: str | None = None,
                   exclude: Sequence[str] = ()) -> str | None:
    """The column of ``columns`` most like ``expected`` (or like the ``role``'s usual names),
    or None when nothing is close.

    >>> nearest_column("client_id", ["user", "timestamp", "x_0"], role="client")
    'user'
    >>> nearest_column("seq", ["a", "b"], role="order") is None
    True
    """
    pool = [c for c in map(str, columns) if c not in set(exclude)]
    close = difflib.get_close_matches(expected, pool, n=1, cutoff=0.6)
    if close:
        return close[0]
    hints = _HINTS.get(role or "", ())
    hinted = [c for c in pool if any(h in c.lower() for h in hints)]
    if hinted:
        return max(hinted, key=lambda c: (
            c.lower() in hints,
            max(len(h) for h in hints if h in c.lower()),
            -len(c),
            difflib.SequenceMatcher(None, expected, c.lower()).ratio()))
    close = difflib.get_close_matches(expected, pool, n=1, cutoff=0.4)
    return close[0] if close else None


def _nearest_note(expected: str, columns: Sequence[str], role: str,
                  exclude: Sequence[str] = ()) -> str:
    near = nearest_column(expected, columns, role, exclude)
    return f" (nearest: {near!r})" if near else ""


def _require(name: str, present: Sequence[str], role: str, flag: str, what: str) -> None:
    if name not in set(present):
        raise LogError(f"log has no column {name!r} for {what}"
                       f"{_nearest_note(name, present, role)}; fix {flag}")


def _proba_columns(columns: list[str], spec, n_classes: int, taken: Sequence[str]
                   ) -> list[str]:
    """The probability columns in class order, or [] when the log has none."""
    if isinstance(spec, tuple | list):
        missing = [c for c in spec if c not in set(columns)]
        if missing:
            raise LogError(f"log has no probability column {missing[0]!r}"
                           f"{_nearest_note(missing[0], columns, 'proba', taken)}; "
                           "fix --proba-columns")
        names = list(spec)
    else:
        pattern = spec or PROBA_PATTERN
        names = [c for c in columns if fnmatch.fnmatchcase(c, pattern) and c not in taken]
        if spec is None:  # the default p_0..p_{k-1}: only numbered columns
            names = [c for c in names if c[2:].isdigit()]
        suffixes = [re.search(r"(\d+)$", c) for c in names]
        if names and all(suffixes):
            names = [c for _, c in sorted(zip([int(s.group(1)) for s in suffixes], names,
                                              strict=True))]
        if not names:
            if spec is None:
                return []
            near = nearest_column(pattern.replace("*", ""), columns, "proba", taken)
            guess = re.sub(r"[^_\W]*\d+$", "*", near) if near else None
            raise LogError(f"no column matches --proba-columns {pattern!r}"
                           + (f" (nearest: {near!r}; try {guess!r})" if near else "")
                           + "; give a glob pattern such as 'prob_*' or a list of names")
        if spec is None and names != [f"p_{j}" for j in range(n_classes)]:
            raise LogError(
                f"log has probability columns {_short(names)} but the profile has "
                f"{n_classes} classes; provide exactly p_0..p_{n_classes - 1} or none"
            )
    if len(names) != n_classes:
        raise LogError(f"--proba-columns picked {len(names)} column(s) ({_short(names)}) but "
                       f"the profile has {n_classes} classes; name one column per class, in "
                       "class order")
    return names


def _names_and_schema(features) -> tuple[list[str], object | None]:
    """Feature names, and the schema when ``features`` is a FeatureSchema."""
    names = getattr(features, "names", None)
    if names is not None and hasattr(features, "encode"):
        return list(names), features
    return [str(f) for f in features], None


def _plan(columns: Sequence[str], feature_names, n_classes: int,
          extra: Sequence[str] = (), mapping: LogColumns | None = None) -> _ColumnPlan:
    feature_names, schema = _names_and_schema(feature_names)
    columns = [str(c) for c in columns]
    present = set(columns)
    m = mapping or DEFAULT_COLUMNS
    if m.client not in present:
        raise LogError(f"log has no '{m.client}' column"
                       f"{_nearest_note(m.client, columns, 'client')}; name the column that "
                       "says who sent each query with --client-column")
    if m.order is not None:
        _require(m.order, columns, "order", "--order-column", "the query order")
    if m.time is not None:
        _require(m.time, columns, "time", "--time-column", "the query time")
    order = m.order or m.time or next((c for c in ORDER_COLUMNS if c in present), None)
    if order is None:
        near = _nearest_note("seq", columns, "order", [m.client])
        raise LogError(f"log has no order column{near}; add 'seq' (query number) or 'ts' "
                       "(timestamp), or name yours with --order-column / --time-column")
    time = m.time or (TIME_COLUMN if TIME_COLUMN in present else None)
    features = _feature_columns(columns, feature_names)
    taken = [m.client, order, *features]
    if n_classes == 0 and m.proba is not None:
        raise LogError("the profile is of a regressor: its log has no probability columns; "
                       "name the column of predicted values with --label-column (default: pred)")
    proba = _proba_columns(columns, m.proba, n_classes, taken) if n_classes else []
    if m.label is not None:
        _require(m.label, columns, "label", "--label-column", "the returned label")
    label = m.label or (LABEL_COLUMN if LABEL_COLUMN in present else None)
    for col in m.keep:
        _require(col, columns, "", "--keep", "--keep")
    wanted = [*m.keep, *(c for c in extra if c in present and c not in m.keep)]
    return _ColumnPlan(client=m.client, features=features, order=order, proba=proba,
                       label=label, extra=wanted, time=time, schema=schema,
                       regression=n_classes == 0)


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


def _order_values(series: pd.Series, name: str, numeric_only: bool = False
                  ) -> np.ndarray:
    """A column as float64 numbers: numbers as they are, date-times as nanoseconds since the
    epoch (UTC); NaN where a value is missing or unreadable."""
    return _time_values(series, name, numeric_only)[0]


def _time_values(series: pd.Series, name: str, numeric_only: bool = False
                 ) -> tuple[np.ndarray, str]:
    """``(values, kind)`` with kind ``"numeric"`` or ``"datetime"`` (see :func:`_order_values`)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = pd.to_datetime(series, utc=True)
    elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), "numeric"
    else:
        values = pd.to_numeric(series, errors="coerce")
        if numeric_only or (len(values) and values.notna().sum() >= series.notna().sum() > 0):
            if len(values) and values.isna().all() and series.notna().any():
                raise LogError(f"column {name!r} is not numeric; it must hold query numbers")
            return values.to_numpy(dtype=np.float64, na_value=np.nan), "numeric"
        stamps = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
        if len(stamps) and stamps.isna().all() and series.notna().any():
            raise LogError(f"column {name!r} is neither numeric nor a date-time; fix its values")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    ns[stamps.isna().to_numpy()] = np.nan
    return ns, "datetime"


def _chunk(frame: pd.DataFrame, plan: _ColumnPlan) -> QueryLog:
    """Validate one chunk of rows (in file order) into a :class:`QueryLog`."""
    missing = [c for c in plan.needed if c not in frame.columns]
    if missing:  # JSON lines: a chunk where no row has some key
        for col in missing:
            frame[col] = np.nan
    cid = frame[plan.client]
    keep = cid.notna().to_numpy().copy()
    order, order_kind = _time_values(frame[plan.order], plan.order,
                                     numeric_only=plan.order == "seq")
    time = time_kind = None
    if plan.time == plan.order:
        time, time_kind = order, order_kind
    elif plan.time is not None:
        time, time_kind = _time_values(frame[plan.time], plan.time)
    features = None
    if plan.schema is None:
        X = _numeric(frame, plan.features)
        keep &= np.isfinite(X).all(axis=1)
    else:
        X, features = _encoded(frame, plan)
        keep &= ~features.pop("__bad__").to_numpy()
    proba = _numeric(frame, plan.proba) if plan.proba else None
    keep &= np.isfinite(order)
    if proba is not None:
        keep &= np.isfinite(proba).all(axis=1)
    labels = None
    if plan.label:
        label_series = frame[plan.label]
        if plan.regression:  # a regressor's predicted values: text is unusable
            label_series = pd.to_numeric(label_series, errors="coerce")
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
        time=None if time is None else time[keep],
        time_column=plan.time,
        time_kind=time_kind,
        client_column=plan.client,
        features=None if features is None or not plan.schema.has_categorical else
        features[keep].reset_index(drop=True),
        schema=plan.schema,
    )


def _encoded(frame: pd.DataFrame, plan: _ColumnPlan) -> tuple[np.ndarray, pd.DataFrame]:
    """The feature columns coded with the plan's schema, and the features frame (schema
    names) with a ``__bad__`` column marking rows that cannot be used."""
    schema = plan.schema
    features = frame[plan.features].set_axis(schema.names, axis=1).reset_index(drop=True)
    for j, name in enumerate(schema.names):
        column = features[name]
        if schema.kinds[j] == "numeric" and not pd.api.types.is_numeric_dtype(column.dtype):
            values = pd.to_numeric(column, errors="coerce")
            if len(values) and values.isna().all() and column.notna().any():
                raise LogError(f"column '{plan.features[j]}' is not numeric; it must hold "
                               "numbers")
    X, bad, _ = schema.encode(features)
    return X, features.assign(__bad__=bad)


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


def iter_log_chunks(
    path: str | Path,
    feature_names,
    n_classes: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: Sequence[str] = (),
    columns: LogColumns | None = None,
) -> Iterator[QueryLog]:
    """Yield validated chunks of at most ``chunk_rows`` rows, in file order (not sorted).

    Parquet is read batch by batch (row groups) and CSV/JSON lines chunk by chunk, so memory
    stays bounded by ``chunk_rows`` (a JSON array is parsed whole, then chunked).
    ``columns`` maps the log's column names (:class:`LogColumns`; default: the standard
    names). Raises :class:`LogError` on structural problems.
    """
    if chunk_rows < 1:
        raise LogError(f"chunk_rows must be at least 1, got {chunk_rows}")
    mapping = columns or DEFAULT_COLUMNS
    path = _check_file(path)
    fmt = log_format(path)
    present = _file_columns(path, fmt)
    plan = _plan(present, feature_names, n_classes, extra, mapping) if present is not None \
        else None
    frames = _raw_chunks(path, fmt, plan.needed if plan else None, chunk_rows, mapping.client)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except LogError:
            raise
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
        if plan is None:
            plan = _plan(list(frame.columns), feature_names, n_classes, extra, mapping)
        yield _chunk(frame, plan)


def concat_logs(chunks: Sequence[QueryLog]) -> QueryLog:
    """Join chunks and sort the rows stably by ``(client_id, order)``."""
    if sum(c.n_rows + c.n_skipped_nonfinite for c in chunks) == 0:
        raise LogError("log has no rows; nothing to analyze")
    def whole(arrays: list[np.ndarray]) -> np.ndarray:  # one chunk: no copy to join it
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    ids = whole([c.client_ids for c in chunks])
    order = whole([c.order for c in chunks])
    codes, _ = pd.factorize(ids, sort=True)
    idx = np.lexsort((order, codes))  # lexsort is stable: ties keep file order
    first = chunks[0]

    def joined(name: str):
        if getattr(first, name) is None:
            return None
        return whole([getattr(c, name) for c in chunks])[idx]

    skipped: dict[str, int] = {}
    for c in chunks:
        for key, count in c.skipped_per_client.items():
            skipped[key] = skipped.get(key, 0) + count
    kinds = {c.time_kind for c in chunks if c.time_kind}
    return QueryLog(
        client_ids=ids[idx],
        order=order[idx],
        order_column=first.order_column,
        X=whole([c.X for c in chunks])[idx],
        proba=joined("proba"),
        labels=joined("labels"),
        feature_columns=first.feature_columns,
        output_columns=first.output_columns,
        n_skipped_nonfinite=sum(c.n_skipped_nonfinite for c in chunks),
        skipped_per_client=dict(sorted(skipped.items())),
        extra={c: whole([chunk.extra[c] for chunk in chunks])[idx]
               for c in first.extra},
        time=joined("time"),
        time_column=first.time_column,
        time_kind="datetime" if "datetime" in kinds else (kinds.pop() if kinds else None),
        client_column=first.client_column,
        features=None if first.features is None else pd.concat(
            [c.features for c in chunks], ignore_index=True).iloc[idx].reset_index(drop=True),
        schema=first.schema,
    )


def read_log(
    path: str | Path,
    feature_names,
    n_classes: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: Sequence[str] = (),
    columns: LogColumns | None = None,
) -> QueryLog:
    """Read, validate and sort a whole query log.

    ``feature_names`` are the profile's training names (``x_0..`` is always accepted too), or
    its :class:`~monitor.features.FeatureSchema` (``profile.schema_``: categorical columns and
    missing values as the model takes them); ``n_classes`` fixes how many probability columns
    a log with probabilities must have (0: a regressor, whose ``pred`` is its value);
    ``extra`` names columns to carry along unscored (``QueryLog.extra``) when present;
    ``columns`` says which column holds what (:class:`LogColumns`).
    """
    return concat_logs(list(iter_log_chunks(path, feature_names, n_classes, chunk_rows, extra,
                                            columns)))


def read_columns(path: str | Path, columns: Sequence[str],
                 chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 mapping: LogColumns | None = None) -> pd.DataFrame:
    """``client_id`` and whichever of ``columns`` the log has, every row (none skipped), sorted
    stably by ``(client_id, order)`` as :func:`read_log` sorts — for columns that are not
    scored, such as ground truth. The client column is returned as ``client_id`` whatever
    ``mapping`` names it."""
    m = mapping or DEFAULT_COLUMNS
    path = _check_file(path)
    fmt = log_format(path)
    present = _file_columns(path, fmt)
    orders = [m.order or m.time] if (m.order or m.time) else list(ORDER_COLUMNS)
    wanted = list(dict.fromkeys([m.client, *orders, *columns]))
    names = None if present is None else [c for c in wanted if c in present]
    try:
        frame = pd.concat(list(_raw_chunks(path, fmt, names, chunk_rows, m.client)),
                          ignore_index=True)
    except LogError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LogError(f"{path.name}: cannot read as {fmt}: {_one_line(exc)}") from exc
    if m.client not in frame.columns:
        raise LogError(f"log has no '{m.client}' column"
                       f"{_nearest_note(m.client, list(frame.columns), 'client')}; name the "
                       "column that says who sent each query with --client-column")
    frame = frame[[c for c in wanted if c in frame.columns]]
    frame = frame.dropna(subset=[m.client]).reset_index(drop=True)
    frame[m.client] = frame[m.client].astype(str)
    order = next((c for c in orders if c in frame.columns), None)
    key = _order_values(frame[order], order) if order else np.zeros(len(frame))
    codes, _ = pd.factorize(frame[m.client].to_numpy(), sort=True)
    idx = np.lexsort((np.nan_to_num(key, nan=np.inf), codes))
    out = frame.iloc[idx].drop(columns=[c for c in orders if c in frame.columns
                                        and c not in columns]).reset_index(drop=True)
    return out.rename(columns={m.client: CLIENT_COLUMN})


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
