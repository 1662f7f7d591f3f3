"""Verdict tables: built from verdicts, written as CSV, JSON lines or Parquet.

>>> from monitor.verdict import Verdict
>>> v = Verdict(client_id="c", n_queries=3, score=0.0, peak_score=0.0, threshold=2.0,
...             flagged=False, flag_at=None, reason="not flagged", detectors={})
>>> table = verdict_table([v], skipped={"d": 4})
>>> table[["client_id", "n_queries", "n_skipped"]].values.tolist()
[['c', 3, 0], ['d', 0, 4]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from monitor.verdict import GROUP_COLUMNS, ROW_COLUMNS, Verdict

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
"""File types a verdict table can be written as."""


def verdict_table(verdicts: Iterable[Verdict], skipped: Mapping[str, int] | None = None,
                  ) -> pd.DataFrame:
    """One row per verdict (:meth:`Verdict.to_row`), sorted by client id.

    Columns: the :data:`~monitor.verdict.ROW_COLUMNS`, ``score_<detector>`` per detector,
    ``prada_flagged`` / ``prada_flag_at`` when the PRADA baseline ran, and ``n_skipped``
    (rows dropped for NaN/inf/missing values, from ``skipped``). A client of ``skipped``
    without a verdict (all its rows were dropped) gets a row with ``n_queries`` 0.
    """
    records = [v.to_row() for v in verdicts]
    detector_names: list[str] = []
    for record in records:
        for key in record:
            if key.startswith("score_") and key[6:] not in detector_names:
                detector_names.append(key[6:])
    skipped = dict(skipped or {})
    seen = {r["client_id"] for r in records}
    for client in skipped:
        if client and client not in seen:
            records.append({"client_id": client, "n_queries": 0, "flagged": False,
                            "reason": "all rows skipped (NaN/inf or missing values)"})
    extra = ["prada_flagged", "prada_flag_at"] if any("prada_flagged" in r for r in records) \
        else []
    groups = [c for c in ("group_id", *(f"group_{k}" for k in GROUP_COLUMNS[1:]))
              if any(c in r for r in records)]
    table = pd.DataFrame.from_records(records, columns=[
        *ROW_COLUMNS, *(f"score_{d}" for d in detector_names), *extra, *groups])
    table["n_skipped"] = table["client_id"].map(skipped).fillna(0).astype(int)
    table["n_queries"] = table["n_queries"].astype(int)
    table["flagged"] = table["flagged"].astype(bool)
    table["flag_at"] = table["flag_at"].astype("Int64")
    table["flag_detector"] = table["flag_detector"].astype("string")  # one dtype, all paths
    if extra:
        table["prada_flagged"] = table["prada_flagged"].astype("boolean").fillna(False)
        table["prada_flag_at"] = table["prada_flag_at"].astype("Int64")
    if "group_flag_at" in table:
        table["group_flag_at"] = table["group_flag_at"].astype("Int64")
    return table.sort_values("client_id", kind="stable").reset_index(drop=True)


def with_client_column(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``table`` with the log's own client column name ``column`` first (the client ids again)
    when the log named it otherwise than ``client_id``, which stays for the tools that read
    verdict tables (``report``, ``tune``'s checks). A name a verdict column already has is
    left alone.

    >>> table = pd.DataFrame({"client_id": ["a"], "flagged": [True]})
    >>> with_client_column(table, "user").columns.tolist()
    ['user', 'client_id', 'flagged']
    >>> with_client_column(table, "client_id").columns.tolist()
    ['client_id', 'flagged']
    """
    if column == "client_id" or column in table.columns:
        return table
    out = table.copy()
    out.insert(0, column, out["client_id"])
    return out


def check_table_path(path: Path) -> None:
    """``ValueError`` naming the accepted types if ``path`` is not a table file name."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{path.name}: unknown file type; use .csv, .jsonl or .parquet")


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV, JSON lines or Parquet (chosen by the extension)."""
    path = Path(path)
    check_table_path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        table.to_json(path, orient="records", lines=True)
    return path


__all__ = ["TABLE_SUFFIXES", "check_table_path", "verdict_table", "with_client_column",
           "write_table"]
