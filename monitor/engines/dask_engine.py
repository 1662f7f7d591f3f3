"""The offline analysis as Dask tasks: one task per partition file.

:class:`DaskExecutor` is the executor of :func:`monitor.engines.partitioned.analyze_partitions`
on a Dask cluster. Each task loads the profile from its folder (``Profile.load``: no pickle)
and, when given, the model from its file, caches both in the worker process, and returns the
partition's verdict rows. The combined table equals the pandas engine's (and
``analyze_log``'s on the whole log). Workers must see the partition folder, profile folder and
model file at the same paths (a LocalCluster on this machine, or shared storage on a cluster).

Needs ``dask[distributed]`` (``pip install 'extraction-monitor[dask]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from monitor.engines.partitioned import (
    EngineResult,
    PartitionResult,
    analyze_file,
    analyze_partitions,
    peak_rss_bytes,
)

_CACHE: dict[tuple, tuple] = {}
"""Per worker process: (profile dir, model path, trusted types) -> (profile, model)."""


class DaskUnavailable(ImportError):
    """dask[distributed] is not installed."""


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise DaskUnavailable("the dask engine needs dask[distributed]; install it with "
                              "pip install 'extraction-monitor[dask]'") from exc
    return distributed


def analyze_partition_task(path: str, profile_dir: str, config: dict | None,
                           model_path: str | None, trust: Sequence[str] = (),
                           columns: dict | None = None) -> PartitionResult:
    """Run on a worker: one partition's :class:`PartitionResult` (``columns``: a
    :meth:`LogColumns.to_dict`)."""
    from monitor import MonitorConfig
    from monitor.logs import LogColumns

    _load_into_cache(profile_dir, model_path, tuple(trust))
    profile, model = _CACHE[(profile_dir, model_path, tuple(trust))]
    cfg = MonitorConfig.from_dict(config) if config else None
    table, skipped = analyze_file(path, profile, cfg, model,
                                  columns=LogColumns.from_dict(columns) if columns else None)
    return PartitionResult(path, table, skipped, peak_rss_bytes())


def _load_into_cache(profile_dir: str, model_path: str | None, trust: tuple) -> int:
    """Run on a worker: import the monitor and cache the profile (and model); worker pid."""
    import os

    from monitor import Profile
    from monitor.model_io import load_model
    from monitor.named_features import with_feature_names

    key = (profile_dir, model_path, tuple(trust))
    if key not in _CACHE:
        from monitor.threads import set_process_threads

        set_process_threads(1)  # partitions are the parallelism: one BLAS/OpenMP thread each
        model = with_feature_names(load_model(model_path, trusted=list(trust))) \
            if model_path else None
        _CACHE[key] = (Profile.load(profile_dir), model)
    return os.getpid()


def warm_up(client, profile_dir: str | Path, model_path: str | Path | None = None,
            trust: Sequence[str] = ()) -> int:
    """Load the profile (and model) into every worker now; returns the number of workers."""
    done = client.run(_load_into_cache, str(profile_dir),
                      None if model_path is None else str(model_path), tuple(trust))
    return len(done)


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1):
    """A ``distributed.LocalCluster`` of worker processes on 127.0.0.1, no dashboard."""
    distributed = _distributed()
    return distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
        host="127.0.0.1", dashboard_address=None)


class DaskExecutor:
    """Partitions as tasks on a Dask ``client``; the profile travels as its folder path."""

    engine = "dask"

    def __init__(self, client, profile_dir: str | Path, config=None,
                 model_path: str | Path | None = None, trust: Sequence[str] = (),
                 columns=None) -> None:
        self.client = client
        self.profile_dir = str(profile_dir)
        self.config = None if config is None else config.to_dict()
        self.model_path = None if model_path is None else str(model_path)
        self.trust = tuple(trust)
        self.columns = None if columns is None else columns.to_dict()

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {})) or 1

    def run(self, files: Sequence[Path]) -> Iterator[PartitionResult]:
        distributed = _distributed()
        futures = self.client.map(
            analyze_partition_task, [str(f) for f in files], profile_dir=self.profile_dir,
            config=self.config, model_path=self.model_path, trust=self.trust,
            columns=self.columns, pure=False)
        for future in distributed.as_completed(futures):
            yield future.result()


def analyze_partitioned_dask(
    source: str | Path,
    profile_dir: str | Path,
    config=None,
    model_path: str | Path | None = None,
    trust: Sequence[str] = (),
    scheduler: str | None = None,
    n_workers: int = 2,
    client=None,
    n_partitions: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    tmp_dir: str | Path | None = None,
    columns=None,
) -> EngineResult:
    """Analyze a partition folder (or a log file, partitioned first) on a Dask cluster.

    Uses ``client`` if given, else connects to ``scheduler`` (an address such as
    ``tcp://10.0.0.5:8786``), else starts a LocalCluster of ``n_workers`` single-threaded
    worker processes for the duration of the call. ``config`` is a MonitorConfig or None;
    ``columns`` the log's :class:`~monitor.logs.LogColumns`.
    """
    distributed = _distributed()
    cluster = None
    own_client = client is None
    if own_client:
        if scheduler:
            client = distributed.Client(scheduler)
        else:
            cluster = local_cluster(n_workers)
            client = distributed.Client(cluster)
    try:
        executor = DaskExecutor(client, profile_dir, config, model_path, trust, columns)
        return analyze_partitions(source, executor, n_partitions, on_progress, tmp_dir,
                                  client_column=None if columns is None else columns.client)
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


__all__ = ["DaskExecutor", "DaskUnavailable", "analyze_partition_task",
           "analyze_partitioned_dask", "local_cluster", "warm_up"]
