"""Offline analysis: replay a query log through a :class:`~monitor.Monitor`, one verdict per client.

The replay (:func:`monitor.replay.replay_log`) is the one ``tune`` and ``report`` use, so the
table equals a live replay of the same streams.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from monitor.grouping import CohortGrouping, Grouping, HeaderGrouping
from monitor.logs import QueryLog
from monitor.monitor import GROUP_PREFIX
from monitor.replay import DEFAULT_BATCH_ROWS, choose_outputs, replay_log
from monitor.tables import verdict_table
from monitor.verdict import ROW_COLUMNS

BASE_COLUMNS = ROW_COLUMNS


def client_groups(log: QueryLog, column: str) -> dict[str, str]:
    """Each client's group from column ``column`` of a log read with
    ``read_log(..., extra=[column])``; :class:`~monitor.logs.LogError` if a client has two."""
    from monitor.logs import LogError

    if column not in log.extra:
        raise LogError(f"log has no group column {column!r}; name an account, tenant or "
                       "subnet column with --group-column")
    frame = pd.DataFrame({"client": log.client_ids.astype(str),
                          "group": pd.Series(log.extra[column]).astype(str).to_numpy()})
    counts = frame.drop_duplicates().groupby("client")["group"].nunique()
    mixed = counts[counts > 1]
    if len(mixed):
        raise LogError(f"client {mixed.index[0]!r} appears in more than one group of column "
                       f"{column!r}; a client belongs to one group")
    return dict(frame.drop_duplicates("client").itertuples(index=False, name=None))


def groups_by(log: QueryLog, grouping: Grouping) -> dict[str, str]:
    """Each client's group under ``grouping`` (:mod:`monitor.grouping`), as the online monitor
    keeps it: ``header:COL`` — column ``COL`` (one group per client, as :func:`client_groups`);
    ``peer:COL`` — the network of the first address in column ``COL`` among the client's
    queries; ``cohort:SECONDS`` — the bucket of the client's first query's time (the log's
    time column). Clients with no group are left out; :class:`~monitor.logs.LogError` when a
    column is missing.

    >>> import numpy as np
    >>> from monitor.grouping import parse_grouping
    >>> log = QueryLog(client_ids=np.array(["a", "a", "b"], dtype=object),
    ...                order=np.arange(3.0), order_column="seq", X=np.zeros((3, 1)),
    ...                time=np.array([5.0, 70.0, 61.0]), time_column="ts", time_kind="numeric",
    ...                extra={"ip": np.array(["10.0.0.1", "10.9.9.9", "10.0.0.2"], dtype=object)})
    >>> groups_by(log, parse_grouping("cohort:60"))
    {'a': 'cohort-0', 'b': 'cohort-1'}
    >>> groups_by(log, parse_grouping("peer:ip"))
    {'a': '10.0.0.0/24', 'b': '10.0.0.0/24'}
    """
    from monitor.logs import LogError

    if isinstance(grouping, HeaderGrouping):
        return {c: g for c, g in client_groups(log, grouping.name).items()
                if grouping.group(g) is not None}
    if isinstance(grouping, CohortGrouping):
        if log.time is None:
            raise LogError("cohort grouping needs each query's time: name the log's time "
                           "column (--time-column)")
        seconds = np.asarray(log.time, dtype=np.float64)
        if log.time_kind == "datetime":
            seconds = seconds / 1e9
        return {client: grouping.group(seconds[part.start])
                for client, part in log.client_slices()}
    if grouping.column is None or grouping.column not in log.extra:
        raise LogError(f"log has no address column {grouping.column!r}; offline, write "
                       "--group-by peer:COLUMN (peer:COLUMN/24) with the column holding "
                       "each query's peer address")
    addresses = log.extra[grouping.column]
    out = {}
    for client, part in log.client_slices():
        for i in range(part.start, part.stop):  # the first query with an address
            network = grouping.group(addresses[i])
            if network is not None:
                out[client] = network
                break
    return out


def analyze_log(
    log: QueryLog,
    monitor,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
    group_column: str | None = None,
    groups: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Replay ``log`` through ``monitor`` (use a fresh one) and return one row per client.

    Columns: client_id, n_queries, score, peak_score, threshold, flagged, flag_at (0-based
    index of the client's kept query at which it was first flagged, or <NA>), reason,
    ``score_<detector>`` per detector, prada_flagged/prada_flag_at when the PRADA baseline is
    on, n_skipped (rows dropped for NaN/inf/missing values).
    Clients whose rows were all skipped get a row with n_queries 0 and no scores.
    ``on_progress(rows_done, rows_total)`` is called after each batch. With ``groups``
    (each client's group, :func:`groups_by`; or ``group_column``, :func:`client_groups`; the
    monitor built with ``group_of`` from the same mapping), each group's rows are
    replayed in log order and every row also carries its group's final verdict (group_id,
    group_flagged, group_flag_at, group_peak_score, group_exposure).

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor import Monitor, Profile
    >>> from monitor.logs import QueryLog
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    >>> model = LogisticRegression().fit(X, y)
    >>> mon = Monitor(Profile(seed=0).fit(model, X, y), model=model)
    >>> log = QueryLog(client_ids=np.array(["a"] * 20, dtype=object), order=np.arange(20.0),
    ...                order_column="seq", X=rng.normal(size=(20, 2)))
    >>> table = analyze_log(log, mon)
    >>> table[["client_id", "n_queries", "flagged"]].to_dict("records")
    [{'client_id': 'a', 'n_queries': 20, 'flagged': False}]
    """
    if groups is None and group_column is not None:
        groups = client_groups(log, group_column)  # one group per client, or a one-line error
    per_row = None if groups is None else np.array(
        [groups.get(c) for c in log.client_ids], dtype=object)
    replay = replay_log(log, monitor, batch_rows=batch_rows, on_progress=on_progress,
                        groups=per_row)
    verdicts = list(replay.verdicts.values())
    if per_row is not None:  # each client row carries its group's final verdict
        final = {g: monitor.group_verdict(g) for g in monitor.groups()}
        for verdict in verdicts:
            if verdict.group is not None:
                group = final[verdict.group["group_id"]]
                verdict.group = {"group_id": verdict.group["group_id"],
                                 **{k: getattr(group, k) for k in ("flagged", "flag_at",
                                                                    "peak_score", "exposure")}}
    return verdict_table(verdicts, log.skipped_per_client)


def attach_kept(table: pd.DataFrame, log: QueryLog, keep) -> pd.DataFrame:
    """Add each ``keep`` column of ``log.extra`` to the verdict ``table``: its value at the
    query that raised the client's flag (``flag_at``), else at the client's last query.

    >>> import numpy as np
    >>> log = QueryLog(client_ids=np.array(["a", "a", "b"], dtype=object),
    ...                order=np.arange(3.0), order_column="seq", X=np.zeros((3, 1)),
    ...                extra={"request_id": np.array(["r1", "r2", "r3"], dtype=object)})
    >>> table = pd.DataFrame({"client_id": ["a", "b"], "flag_at": pd.array([0, None], "Int64")})
    >>> attach_kept(table, log, ["request_id"])["request_id"].tolist()
    ['r1', 'r3']
    """
    if not keep:
        return table
    rows = dict(log.client_slices())
    flag_at = dict(zip(table["client_id"].astype(str), table["flag_at"], strict=True))
    table = table.copy()
    for column in keep:
        values = log.extra[column]
        picked = []
        for client in table["client_id"].astype(str):
            part = rows.get(client)
            if part is None:
                picked.append(None)
                continue
            at = flag_at.get(client)
            i = int(at) if at is not None and not pd.isna(at) else part.stop - part.start - 1
            picked.append(values[part.start + min(i, part.stop - part.start - 1)])
        name = column if column not in table.columns else f"log_{column}"
        table[name] = picked
    return table


def group_table(monitor) -> pd.DataFrame:
    """One row per group the monitor tracks (its verdict over all its clients' queries),
    with ``group_id`` first."""
    table = verdict_table([monitor.group_verdict(g) for g in monitor.groups()])
    table["client_id"] = table["client_id"].str.removeprefix(GROUP_PREFIX)
    return table.rename(columns={"client_id": "group_id"}).drop(columns=["n_skipped"])


def summary_line(table: pd.DataFrame, n_skipped: int | None = None) -> str:
    """One line: queries and clients analyzed, who is flagged, rows skipped."""
    flagged = table.loc[table["flagged"], "client_id"].astype(str).tolist()
    skipped = int(table["n_skipped"].sum()) if n_skipped is None else n_skipped
    names = ", ".join(flagged[:5]) + (f", +{len(flagged) - 5} more" if len(flagged) > 5 else "")
    line = (f"analyzed {int(table['n_queries'].sum())} queries from {len(table)} clients: "
            f"{len(flagged)} flagged" + (f" ({names})" if flagged else ""))
    if skipped:
        line += f"; {skipped} rows skipped (NaN/inf or missing values)"
    return line


__all__ = ["BASE_COLUMNS", "DEFAULT_BATCH_ROWS", "analyze_log", "attach_kept", "choose_outputs", "client_groups",
           "group_table", "groups_by", "summary_line"]
