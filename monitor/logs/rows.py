"""One chunk of raw rows turned into a :class:`~monitor.logs.QueryLog` (:func:`_chunk`):
feature values as numbers or coded by the profile's schema, order and time values (numbers,
or date-times as nanoseconds), probabilities and labels, and the rows that cannot be used
skipped and counted per client.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitor.logs.columns import _ColumnPlan
from monitor.logs.errors import LogError
from monitor.logs.querylog import QueryLog


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
