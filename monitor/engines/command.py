"""The ``analyze`` command's out-of-core path: engine options and how they are run.

``analyze`` takes this path when LOG is a partition folder, when ``--engine dask`` or
``--out-of-core`` is given, or when LOG is a file larger than :data:`OUT_OF_CORE_BYTES`
(it is then hash-partitioned by client into a temporary folder first).
"""

from __future__ import annotations

import argparse
import sys

OUT_OF_CORE_BYTES = 1 << 30
"""Log files at least this large are analyzed out of core even without --out-of-core."""


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --engine, --scheduler, --workers, --partitions and --out-of-core to ``parser``."""
    group = parser.add_argument_group("scale (see docs/scaling.md)")
    group.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                       help="pandas: in this process; dask: partitions as tasks on a Dask "
                            "cluster (default: pandas)")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler to use (e.g. tcp://10.0.0.5:8786); default: a "
                            "LocalCluster started for this run")
    group.add_argument("--workers", type=int, default=2, metavar="N",
                       help="worker processes of the LocalCluster (default: 2)")
    group.add_argument("--partitions", type=int, default=None, metavar="N",
                       help="partitions when a log file is partitioned first (default: about "
                            "125k rows each)")
    group.add_argument("--out-of-core", action="store_true",
                       help="partition the log by client first and analyze partition by "
                            "partition (automatic for folders and files over 1 GiB)")


def wants_engine(args: argparse.Namespace) -> bool:
    """Whether ``analyze`` should take the partitioned path for these arguments."""
    log = args.log
    big = log.is_file() and log.stat().st_size >= OUT_OF_CORE_BYTES
    return args.engine == "dask" or args.out_of_core or log.is_dir() or big


def run_engine(args: argparse.Namespace, profile, config, model) -> int:
    """Analyze ``args.log`` with the chosen engine, write the table, print the summary."""
    from monitor.analyze import summary_line
    from monitor.cli import CommandError
    from monitor.commands.analyze import ProgressBar, _write_table
    from monitor.errors import InvalidInput
    from monitor.logs import LogError

    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    if args.partitions is not None and args.partitions < 1:
        raise CommandError(f"--partitions must be at least 1, got {args.partitions}")
    if not args.log.exists():
        raise CommandError(f"{args.log}: no such file or folder")
    progress = ProgressBar(sys.stderr) if (args.progress or sys.stderr.isatty()) else None
    try:
        if args.engine == "dask":
            from monitor.engines.dask_engine import DaskUnavailable, analyze_partitioned_dask

            try:
                result = analyze_partitioned_dask(
                    args.log, args.profile, config, model_path=args.model, trust=args.trust,
                    scheduler=args.scheduler, n_workers=args.workers,
                    n_partitions=args.partitions, on_progress=progress)
            except DaskUnavailable as exc:
                raise CommandError(str(exc)) from exc
        else:
            from monitor.engines.pandas_engine import analyze_partitioned

            result = analyze_partitioned(args.log, profile, config, model,
                                         n_partitions=args.partitions, on_progress=progress)
    except (LogError, InvalidInput) as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    _write_table(result.table, args.out)
    print(f"{summary_line(result.table, result.n_skipped)}; {result.summary()}; "
          f"verdicts written to {args.out}")
    return 0


__all__ = ["OUT_OF_CORE_BYTES", "add_engine_arguments", "run_engine", "wants_engine"]
