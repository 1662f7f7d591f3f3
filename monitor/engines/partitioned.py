"""Out-of-core offline analysis: one partition at a time, on any executor.

Each partition file (all rows of its clients, see :mod:`monitor.partition`) is read, replayed
through a fresh :class:`~monitor.Monitor` sharing one profile, and reduced to its verdict rows
(:func:`analyze_file`), so memory is bounded by the largest partition, not by the log. The
combined table equals :func:`monitor.analyze.analyze_log` on the whole log.

The loop is :func:`analyze_partitions`; what differs between engines is only the
:class:`Executor` that runs :func:`analyze_file` on each partition: :class:`InProcess`
(the ``pandas`` engine) here, :class:`~monitor.engines.dask_engine.DaskExecutor` on a Dask
cluster.

>>> import numpy as np, pandas as pd, tempfile
>>> from pathlib import Path
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Profile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
>>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
>>> tmp = Path(tempfile.mkdtemp())
>>> log = pd.DataFrame({"client_id": ["a", "b"] * 30, "seq": range(60), "x_0": rng.normal(size=60),
...                     "x_1": rng.normal(size=60), "p_0": 0.9, "p_1": 0.1})
>>> log.to_parquet(tmp / "log.parquet")
>>> result = analyze_partitioned(tmp / "log.parquet", profile, n_partitions=2)
>>> result.table[["client_id", "n_queries", "flagged"]].to_dict("records")
[{'client_id': 'a', 'n_queries': 30, 'flagged': False}, {'client_id': 'b', 'n_queries': 30, 'flagged': False}]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow.parquet as pq

from monitor.analyze import analyze_log
from monitor.logs import DEFAULT_CHUNK_ROWS, LogError, log_format, read_log
from monitor.partition import partition_files, partition_log, suggest_partitions


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own
    memory (``getrusage``'s ``ru_maxrss`` survives ``exec`` and so also counts the memory of
    the parent that forked us). Elsewhere: ``getrusage``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


@dataclass
class EngineResult:
    """A verdict table with how it was computed."""

    table: pd.DataFrame
    n_queries: int
    n_skipped: int
    n_partitions: int
    peak_rss_bytes: int
    """Largest peak RSS of any process that held analysis data (this one, or a worker)."""
    seconds: float
    engine: str = "pandas"
    n_workers: int = 1

    def summary(self) -> str:
        """One line: engine, partitions, throughput, peak memory."""
        rate = self.n_queries / self.seconds if self.seconds > 0 else float("nan")
        workers = f" on {self.n_workers} workers" if self.engine != "pandas" else ""
        return (f"{self.engine} engine{workers}: {self.n_partitions} partitions, "
                f"{rate:,.0f} queries/s, peak RSS {self.peak_rss_bytes / 2**20:,.0f} MiB")


@dataclass(frozen=True)
class PartitionResult:
    """One partition's verdict rows and what producing them cost."""

    path: str
    table: pd.DataFrame
    n_skipped: int
    peak_rss_bytes: int


class Executor(Protocol):
    """Runs :func:`analyze_file` on every partition; yields results as they complete."""

    engine: str

    def run(self, files: Sequence[Path]) -> Iterator[PartitionResult]: ...

    @property
    def n_workers(self) -> int: ...


ONE_READ_ROWS = 262_144
"""A Parquet partition of at most this many rows is read in one chunk: no chunks to join,
so one copy of its rows fewer (each copy of a large array is freshly mapped memory, whose
page faults cost as much as the copy)."""


def analyze_file(path: str | Path, profile, config=None, model=None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, columns=None) -> tuple[pd.DataFrame, int]:
    """Verdict table of one partition (or any log file) and its number of skipped rows;
    ``columns`` is the log's :class:`~monitor.logs.LogColumns`. A Parquet file of at most
    :data:`ONE_READ_ROWS` rows is read in one chunk, larger ones ``chunk_rows`` at a time."""
    from monitor import Monitor

    if log_format(path) == "parquet" and Path(path).is_file():
        rows = pq.ParquetFile(path).metadata.num_rows
        if rows <= ONE_READ_ROWS:
            chunk_rows = max(chunk_rows, rows)
    log = read_log(path, profile.schema_, len(profile.classes_), chunk_rows,
                   columns=columns)
    table = analyze_log(log, Monitor(profile, config=config, model=model))
    return table, log.n_skipped_nonfinite


class InProcess:
    """The ``pandas`` engine's executor: partitions one after another in this process."""

    engine = "pandas"
    n_workers = 1

    def __init__(self, profile, config=None, model=None, columns=None) -> None:
        self.profile, self.config, self.model = profile, config, model
        self.columns = columns

    def run(self, files: Sequence[Path]) -> Iterator[PartitionResult]:
        for path in files:
            table, skipped = analyze_file(path, self.profile, self.config, self.model,
                                          columns=self.columns)
            yield PartitionResult(str(path), table, skipped, peak_rss_bytes())


def combine_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-partition verdict tables as one table sorted by client id (as ``analyze_log``)."""
    if not tables:
        raise LogError("log has no rows; nothing to analyze")
    table = pd.concat(tables, ignore_index=True)
    return table.sort_values("client_id", kind="stable").reset_index(drop=True)


def partition_rows(files: Sequence[Path]) -> list[int]:
    """Row counts of partition files, from their Parquet metadata."""
    return [pq.ParquetFile(f).metadata.num_rows for f in files]


def analyze_partitions(source: str | Path, executor: Executor,
                       n_partitions: int | None = None,
                       on_progress: Callable[[int, int], None] | None = None,
                       tmp_dir: str | Path | None = None, client_column: str | None = None
                       ) -> EngineResult:
    """Analyze a partition folder, or a log file partitioned first (by ``client_column``,
    default client_id) into a temporary folder, with ``executor``.

    ``n_partitions`` (file input only) defaults to
    :func:`monitor.partition.suggest_partitions`; ``on_progress(rows_done, rows_total)`` is
    called after each partition.

    A Parquet log that would make one partition (at most about
    :data:`~monitor.partition.TARGET_PARTITION_ROWS` rows, or ``n_partitions=1``) is analyzed
    as it is, without being copied: one partition would hold exactly its rows in their
    order, so the verdicts are the same and memory is bounded as for any one partition.
    Temporary partitions are written uncompressed (they are read once, then deleted).
    """
    start = time.perf_counter()
    source = Path(source)
    if source.is_dir():
        return _run(partition_files(source), executor, on_progress, start)
    if log_format(source) == "parquet" and source.is_file():
        n = suggest_partitions(source) if n_partitions is None else int(n_partitions)
        if n == 1:
            return _run([source], executor, on_progress, start)
    with tempfile.TemporaryDirectory(prefix="em-partitions-", dir=tmp_dir) as tmp:
        parts = partition_log(source, Path(tmp) / "parts", n_partitions,
                              client_column=client_column, compression="none")
        return _run(parts.files, executor, on_progress, start)


def _run(files, executor: Executor, on_progress, start: float) -> EngineResult:
    sizes = dict(zip(map(str, files), partition_rows(files), strict=True))
    total, done = sum(sizes.values()), 0
    tables, skipped, peak = [], 0, peak_rss_bytes()
    for result in executor.run(files):
        tables.append(result.table)
        skipped += result.n_skipped
        peak = max(peak, result.peak_rss_bytes)
        done += sizes[result.path]
        if on_progress is not None:
            on_progress(done, total)
    table = combine_tables(tables)
    return EngineResult(
        table=table, n_queries=int(table["n_queries"].sum()), n_skipped=skipped,
        n_partitions=len(files), peak_rss_bytes=max(peak, peak_rss_bytes()),
        seconds=time.perf_counter() - start, engine=executor.engine,
        n_workers=executor.n_workers)


def analyze_partitioned(source: str | Path, profile, config=None, model=None,
                        n_partitions: int | None = None,
                        on_progress: Callable[[int, int], None] | None = None,
                        tmp_dir: str | Path | None = None, columns=None) -> EngineResult:
    """:func:`analyze_partitions` in this process (the ``pandas`` engine); ``columns`` is the
    log's :class:`~monitor.logs.LogColumns`."""
    return analyze_partitions(source, InProcess(profile, config, model, columns), n_partitions,
                              on_progress, tmp_dir,
                              client_column=None if columns is None else columns.client)


__all__ = ["ONE_READ_ROWS", "EngineResult", "Executor", "InProcess", "PartitionResult",
           "analyze_file", "analyze_partitioned", "analyze_partitions", "combine_tables", "partition_rows",
           "peak_rss_bytes"]
