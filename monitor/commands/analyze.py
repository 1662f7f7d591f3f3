"""Replay a query log through the monitor and write one verdict per client.

LOG is CSV, JSON lines (.jsonl/.ndjson/.json) or Parquet with client_id, an order column (seq or
ts; seq wins if both), the feature columns (x_0..x_{d-1} or the training data's names) and
optionally what the API returned (p_0..p_{k-1} probabilities and/or pred). Extra columns are
ignored; rows with NaN/inf or missing values are skipped and counted.

Outputs used: the p_* probabilities if present; else pred labels when no --model is given;
else the monitor recomputes outputs from --model.

Scale: LOG may be a partition folder (`extraction-monitor partition`); a file of 1 GiB or more,
or --out-of-core, is hash-partitioned by client first and analyzed partition by partition;
--engine dask runs the partitions as tasks on a Dask cluster (docs/scaling.md).

Security: --model loads a classifier saved with skops (.skops) or joblib (.joblib/.pkl).
Loading a joblib/pickle file means trusting it: it can run any code. A skops file is refused if
it holds types outside skops' safe set unless you list them with --trust TYPE.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.inputs import load_model_file, load_profile, load_settings

PROGRESS_MIN_ROWS = 20_000
"""Logs with fewer rows never show a progress bar unless --progress is given."""
OUT_OF_CORE_BYTES = 1 << 30
"""Log files at least this large are analyzed out of core even without --out-of-core."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", type=Path, metavar="LOG", help="query log (CSV/JSON lines/Parquet)")
    parser.add_argument("--profile", required=True, type=Path,
                        help="profile folder written by `extraction-monitor profile`")
    parser.add_argument("--out", required=True, type=Path,
                        help="verdict table to write (.csv, .jsonl or .parquet)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model (.skops, or .joblib/.pkl: trusted code!)")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="type name a .skops model may contain beyond skops' safe set "
                             "(repeatable)")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (TOML or JSON; its [monitor] table is used)")
    parser.add_argument("--group-column", default=None, metavar="COLUMN",
                        help="log column naming each client's group (account, tenant, subnet): "
                             "each group's queries are also tested together, as "
                             "Monitor(group_of=...) does online")
    parser.add_argument("--group-out", type=Path, default=None, metavar="PATH",
                        help="with --group-column: write one verdict per group here")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on stderr even when it is not a terminal")
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


class ProgressBar:
    """A one-line text progress bar redrawn on ``stream`` (at most ~10 times a second)."""

    def __init__(self, stream, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} rows")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def wants_engine(args: argparse.Namespace) -> bool:
    """Whether to take the partitioned path for these arguments."""
    log = args.log
    big = log.is_file() and log.stat().st_size >= OUT_OF_CORE_BYTES
    return args.engine == "dask" or args.out_of_core or log.is_dir() or big


def run(args: argparse.Namespace) -> int:
    from monitor.tables import check_table_path

    try:
        check_table_path(args.out)
    except ValueError as exc:
        raise CommandError(f"--out {exc}") from None
    if args.group_out is not None and args.group_column is None:
        raise CommandError("--group-out needs --group-column")
    profile = load_profile(args.profile)
    config = load_settings(args.config).monitor
    model = load_model_file(args.model, args.trust, profile)
    if wants_engine(args):
        if args.group_column is not None:
            raise CommandError("--group-column needs the whole log in one process: groups "
                               "span partitions; drop --engine/--out-of-core")
        return _run_partitioned(args, profile, config, model)
    return _run_in_memory(args, profile, config, model)


def _run_in_memory(args, profile, config, model) -> int:
    from monitor import Monitor
    from monitor.analyze import analyze_log, client_groups, group_table, summary_line
    from monitor.errors import InvalidInput
    from monitor.logs import LogError, read_log
    from monitor.tables import write_table

    extra = [args.group_column] if args.group_column else []
    try:
        log = read_log(args.log, profile.feature_names_, len(profile.classes_), extra=extra)
        groups = client_groups(log, args.group_column) if args.group_column else None
    except LogError as exc:
        raise CommandError(str(exc)) from exc
    monitor = Monitor(profile, config=config, model=model,
                      group_of=None if groups is None else groups.get)
    show = args.progress or (sys.stderr.isatty() and log.n_rows >= PROGRESS_MIN_ROWS)
    try:
        table = analyze_log(log, monitor, on_progress=ProgressBar(sys.stderr) if show else None,
                            group_column=args.group_column)
    except InvalidInput as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    write_table(table, args.out)
    line = f"{summary_line(table, log.n_skipped_nonfinite)}; verdicts written to {args.out}"
    if args.group_column:
        groups_table = group_table(monitor)
        line += f"; {int(groups_table['flagged'].sum())} of {len(groups_table)} groups flagged"
        if args.group_out is not None:
            write_table(groups_table, args.group_out)
            line += f" (group verdicts written to {args.group_out})"
    print(line)
    return 0


def _run_partitioned(args, profile, config, model) -> int:
    """Partition folders, big files, --engine dask: partition by partition."""
    from monitor.analyze import summary_line
    from monitor.errors import InvalidInput
    from monitor.logs import LogError
    from monitor.tables import write_table

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
            from monitor.engines import analyze_partitioned

            result = analyze_partitioned(args.log, profile, config, model,
                                         n_partitions=args.partitions, on_progress=progress)
    except (LogError, InvalidInput) as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    write_table(result.table, args.out)
    print(f"{summary_line(result.table, result.n_skipped)}; {result.summary()}; "
          f"verdicts written to {args.out}")
    return 0
