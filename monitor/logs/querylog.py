"""The validated log, :class:`QueryLog` (rows sorted by client and order, per-client slices
and times), and :func:`concat_logs`, which joins chunks of it into one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitor.logs.columns import CLIENT_COLUMN
from monitor.logs.errors import LogError


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
