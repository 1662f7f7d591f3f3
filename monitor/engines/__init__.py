"""Engines that run the offline analysis over a partitioned log (see docs/scaling.md).

* :mod:`monitor.engines.pandas_engine` — partition by partition in this process; memory is
  bounded by the largest partition, not the log.
* :mod:`monitor.engines.dask_engine` — the same per-partition analysis as tasks on a Dask
  cluster (a ``distributed.LocalCluster`` by default).

Both give verdict tables identical to :func:`monitor.analyze.analyze_log` on the whole log.
"""

from monitor.engines.pandas_engine import EngineResult, analyze_partitioned, combine_tables

__all__ = ["EngineResult", "analyze_partitioned", "combine_tables"]
