"""Reading a query log: the columns planned from the file's names, its rows read in chunks and
validated (:func:`iter_log_chunks`), then joined and sorted (:func:`read_log`); unscored
columns in the same row order (:func:`read_columns`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.logs.columns import (
    CLIENT_COLUMN,
    DEFAULT_COLUMNS,
    ORDER_COLUMNS,
    LogColumns,
    _nearest_note,
    _plan,
)
from monitor.logs.errors import LogError, _one_line
from monitor.logs.formats import _check_file, _file_columns, _raw_chunks, log_format
from monitor.logs.querylog import QueryLog, concat_logs
from monitor.logs.rows import _chunk, _order_values

DEFAULT_CHUNK_ROWS = 65_536


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
