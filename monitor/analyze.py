"""Offline analysis: replay a query log through a :class:`~monitor.Monitor`, one verdict per client.

Which API outputs are fed to the monitor (the same rule for every client):

1. probabilities ``p_0..p_{k-1}`` when the log has them;
2. otherwise, when the monitor has no model, the returned labels ``pred``;
3. otherwise nothing: the monitor recomputes what it needs from its model.

Each client's rows go to ``monitor.observe`` in query order, in batches (the monitor's batch
path gives the same verdict as observing row by row), so the table equals a live replay.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from monitor.logs import QueryLog

DEFAULT_BATCH_ROWS = 50_000
BASE_COLUMNS = ("client_id", "n_queries", "score", "peak_score", "threshold", "flagged",
                "flag_at", "reason")


def choose_outputs(log: QueryLog, has_model: bool) -> tuple[str, np.ndarray | None]:
    """``(kind, outputs)`` per the rule in the module docstring; kind is proba/labels/none."""
    if log.proba is not None:
        return "proba", log.proba
    if log.labels is not None and not has_model:
        return "labels", log.labels
    return "none", None


def analyze_log(
    log: QueryLog,
    monitor,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Replay ``log`` through ``monitor`` (use a fresh one) and return one row per client.

    Columns: client_id, n_queries, score, peak_score, threshold, flagged, flag_at (0-based
    index of the client's kept query at which it was first flagged, or <NA>), reason,
    ``score_<detector>`` per detector, prada_flagged/prada_flag_at when the PRADA baseline is
    on, n_skipped (rows dropped for NaN/inf/missing values).
    Clients whose rows were all skipped get a row with n_queries 0 and no scores.
    ``on_progress(rows_done, rows_total)`` is called after each batch.

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
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    _, outputs = choose_outputs(log, getattr(monitor, "model", None) is not None)
    total = log.n_rows
    records: list[dict] = []
    detector_names: list[str] = []
    latest: dict[str, object] = {}
    for start in range(0, total, batch_rows):
        part = slice(start, min(start + batch_rows, total))
        latest.update(monitor.observe_many(
            log.client_ids[part], log.X[part], None if outputs is None else outputs[part]))
        done = part.stop
        if on_progress is not None:
            on_progress(done, total)
    for client, _ in log.client_slices():
        verdict = latest.get(client) or monitor.verdict(client)
        record = _record(verdict)
        for name in verdict.detectors:
            if name not in detector_names:
                detector_names.append(name)
        records.append(record)
    seen = {r["client_id"] for r in records}
    for client in log.skipped_per_client:
        if client and client not in seen:
            records.append({"client_id": client, "n_queries": 0, "flagged": False,
                            "reason": "all rows skipped (NaN/inf or missing values)"})
    extra = ["prada_flagged", "prada_flag_at"] if any("prada_flagged" in r for r in records) else []
    table = pd.DataFrame.from_records(records, columns=[
        *BASE_COLUMNS, *(f"score_{d}" for d in detector_names), *extra])
    table["n_skipped"] = table["client_id"].map(log.skipped_per_client).fillna(0).astype(int)
    table["n_queries"] = table["n_queries"].astype(int)
    table["flagged"] = table["flagged"].astype(bool)
    table["flag_at"] = table["flag_at"].astype("Int64")
    if extra:
        table["prada_flagged"] = table["prada_flagged"].astype("boolean").fillna(False)
        table["prada_flag_at"] = table["prada_flag_at"].astype("Int64")
    return table.sort_values("client_id", kind="stable").reset_index(drop=True)


def _record(verdict) -> dict:
    record = {
        "client_id": verdict.client_id,
        "n_queries": int(verdict.n_queries),
        "score": float(verdict.score),
        "peak_score": float(verdict.peak_score),
        "threshold": float(verdict.threshold),
        "flagged": bool(verdict.flagged),
        "flag_at": verdict.flag_at,
        "reason": verdict.reason,
    }
    for name, detail in verdict.detectors.items():
        record[f"score_{name}"] = float(detail["score"])
    if getattr(verdict, "prada", None) is not None:  # the PRADA baseline, when configured
        record["prada_flagged"] = bool(verdict.prada["flagged"])
        record["prada_flag_at"] = verdict.prada["flag_at"]
    return record


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


__all__ = ["BASE_COLUMNS", "DEFAULT_BATCH_ROWS", "analyze_log", "choose_outputs", "summary_line"]
