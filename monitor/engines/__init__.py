"""Engines that run the offline analysis over a partitioned log (see docs/scaling.md).

One loop (:func:`~monitor.engines.partitioned.analyze_partitions`), two executors:

* ``pandas`` — :class:`~monitor.engines.partitioned.InProcess`: partition by partition in this
  process; memory is bounded by the largest partition, not the log;
* ``dask`` — :class:`~monitor.engines.dask_engine.DaskExecutor`: the same per-partition
  analysis as tasks on a Dask cluster (a ``distributed.LocalCluster`` by default).

Both give verdict tables identical to :func:`monitor.analyze.analyze_log` on the whole log.
"""

from monitor.engines.partitioned import (
    EngineResult,
    InProcess,
    analyze_partitioned,
    analyze_partitions,
    combine_tables,
)

__all__ = ["EngineResult", "InProcess", "analyze_partitioned", "analyze_partitions",
           "combine_tables"]
