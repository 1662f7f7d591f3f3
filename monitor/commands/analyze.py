"""Replay a query log through the monitor and write one verdict per client.

LOG is CSV, JSON lines or a JSON array (.jsonl/.ndjson/.json) or Parquet with a client column
(client_id, or --client-column), an order column (seq or ts, seq wins if both; or
--order-column / --time-column), the feature columns (x_0..x_{d-1} or the training data's
names) and optionally what the API returned (p_0..p_{k-1} probabilities or --proba-columns,
and/or pred or --label-column). Extra columns are ignored unless --keep carries them into the
verdict table; rows with NaN/inf or missing values are skipped and counted.

flag_at in the verdict table is 0-based: the index of the client's query that raised the flag
(queries to flag = flag_at + 1). With --log-level info, each flagged client is also logged as
a client_flagged event (--log-format json: one JSON line each).

Outputs used: the p_* probabilities if present; else pred labels when no --model is given;
else the monitor recomputes outputs from --model. For a regressor, pred is the predicted value.
A log without probability columns and no --model leaves the boundary detector without
evidence: a one-line warning says so (and for every other detector without evidence).

Features may be categorical (text) and, where the model accepts them, missing: the profile
says which.

Scale: LOG may be a partition folder (`extraction-monitor partition`); a file of 1 GiB or more,
or --out-of-core, is hash-partitioned by client first and analyzed partition by partition;
--engine dask runs the partitions as tasks on a Dask cluster (docs/scaling.md).

Security: --model loads a classifier saved with skops (.skops) or joblib (.joblib/.pkl).
Loading a joblib/pickle file means trusting it: it can run any code. A skops file is refused if
it holds types outside skops' safe set unless you list them with --trust TYPE.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.inputs import (
    TRUST_HELP,
    add_log_arguments,
    load_model_file,
    load_profile,
    load_settings,
    log_columns,
)

logger = logging.getLogger("extraction_monitor.analyze")

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
                        help=TRUST_HELP)
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (TOML or JSON; its [monitor] table is used)")
    parser.add_argument("--group-by", default=None, metavar="SPEC",
                        help="group evidence, as [serving] group_by online: header:COLUMN "
                             "(an account or tenant column), peer:COLUMN[/24[/48]] (the network "
                             "of an address column) or cohort:SECONDS (ids whose first query "
                             "falls in one time bucket); each group's queries are also tested "
                             "together")
    parser.add_argument("--group-column", default=None, metavar="COLUMN",
                        help="the same as --group-by header:COLUMN")
    parser.add_argument("--group-out", type=Path, default=None, metavar="PATH",
                        help="with --group-by: write one verdict per group here")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on stderr even when it is not a terminal")
    add_log_arguments(parser)
    group = parser.add_argument_group("scale (see docs/scaling.md)")
    group.add_argument("--engine", choices=("pandas", "dask"), default="pandas",
                       help="pandas: in this process; dask: partitions as tasks on a Dask "
                            "cluster (default: %(default)s)")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler to use (e.g. tcp://10.0.0.5:8786); default: a "
                            "LocalCluster started for this run")
    group.add_argument("--dask-workers", "--workers", dest="dask_workers", type=int, default=2,
                       metavar="N", action=_DeprecatedAlias,
                       help="Dask worker processes of the LocalCluster (default: %(default)s; "
                            "--workers is a deprecated alias: in serve/proxy it means "
                            "uvicorn workers)")
    group.add_argument("--partitions", type=int, default=None, metavar="N",
                       help="partitions when a log file is partitioned first (default: about "
                            "125k rows each)")
    group.add_argument("--out-of-core", action="store_true",
                       help="partition the log by client first and analyze partition by "
                            "partition (automatic for folders and files over 1 GiB)")


class _DeprecatedAlias(argparse.Action):
    """Store the value; say once on stderr when the deprecated spelling ``--workers`` was used."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--workers":
            print("extraction-monitor analyze: warning: --workers is deprecated here; use "
                  "--dask-workers (in serve/proxy --workers means uvicorn workers)",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def progress_bar(args):
    """The replay's progress bar: on a terminal, or everywhere with --progress; never with
    --quiet."""
    from monitor.progress import Progress, wants_progress

    return Progress("analyzing", unit="rows", enabled=wants_progress(force=args.progress))


def wants_engine(args: argparse.Namespace) -> bool:
    """Whether to take the partitioned path for these arguments."""
    log = args.log
    big = log.is_file() and log.stat().st_size >= OUT_OF_CORE_BYTES
    return args.engine == "dask" or args.out_of_core or log.is_dir() or big


def _grouping(args: argparse.Namespace):
    """The parsed ``--group-by`` (``--group-column COL`` is ``header:COL``), or ``None``."""
    from monitor.grouping import GroupingError, parse_grouping

    if args.group_by is not None and args.group_column is not None:
        raise CommandError("give --group-by or --group-column, not both")
    spec = args.group_by if args.group_column is None else f"header:{args.group_column}"
    if spec is None:
        return None
    try:
        return parse_grouping(spec)
    except GroupingError as exc:
        raise CommandError(f"--group-by: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from monitor.tables import check_table_path

    try:
        check_table_path(args.out)
    except ValueError as exc:
        raise CommandError(f"--out {exc}") from None
    args.grouping = _grouping(args)
    if args.group_out is not None and args.grouping is None:
        raise CommandError("--group-out needs --group-by (or --group-column)")
    profile = load_profile(args.profile)
    config = load_settings(args.config).monitor
    model = load_model_file(args.model, args.trust, profile)
    if wants_engine(args):
        if args.grouping is not None:
            raise CommandError("--group-by needs the whole log in one process: groups "
                               "span partitions; drop --engine/--out-of-core")
        return _run_partitioned(args, profile, config, model)
    return _run_in_memory(args, profile, config, model)


def _run_in_memory(args, profile, config, model) -> int:
    from monitor import Monitor
    from monitor.analyze import (
        analyze_log,
        attach_kept,
        group_table,
        groups_by,
        summary_line,
    )
    from monitor.errors import InvalidInput
    from monitor.logs import LogError, read_log
    from monitor.tables import with_client_column, write_table

    grouping = args.grouping
    column = getattr(grouping, "name", None) or getattr(grouping, "column", None)
    extra = [column] if column else []
    columns = log_columns(args, profile)
    try:
        log = read_log(args.log, profile.schema_, len(profile.classes_), extra=extra,
                       columns=columns)
        groups = groups_by(log, grouping) if grouping is not None else None
    except LogError as exc:
        raise CommandError(str(exc)) from exc
    monitor = Monitor(profile, config=config, model=model,
                      group_of=None if groups is None else groups.get)
    warn_no_evidence(monitor, log)
    try:
        with progress_bar(args) as bar:
            table = analyze_log(log, monitor, on_progress=bar, groups=groups)
    except InvalidInput as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    table = attach_kept(table, log, columns.keep)
    write_table(with_client_column(table, log.client_column), args.out)
    log_flagged(table)
    line = f"{summary_line(table, log.n_skipped_nonfinite)}; verdicts written to {args.out}"
    if grouping is not None:
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
    from monitor.tables import with_client_column, write_table

    if args.dask_workers < 1:
        raise CommandError(f"--dask-workers must be at least 1, got {args.dask_workers}")
    if args.partitions is not None and args.partitions < 1:
        raise CommandError(f"--partitions must be at least 1, got {args.partitions}")
    if not args.log.exists():
        raise CommandError(f"{args.log}: no such file or folder")
    columns = log_columns(args, profile)
    if columns.keep:
        raise CommandError("--keep needs the whole log in one process; drop --engine/"
                           "--out-of-core (or partition folders) to keep columns")
    try:
        if args.engine == "dask":
            from monitor.engines.dask_engine import DaskUnavailable, analyze_partitioned_dask

            try:
                with progress_bar(args) as bar:
                    result = analyze_partitioned_dask(
                        args.log, args.profile, config, model_path=args.model,
                        trust=args.trust, scheduler=args.scheduler,
                        n_workers=args.dask_workers, n_partitions=args.partitions,
                        on_progress=bar, columns=columns)
            except DaskUnavailable as exc:
                raise CommandError(str(exc)) from exc
        else:
            from monitor.engines import analyze_partitioned

            with progress_bar(args) as bar:
                result = analyze_partitioned(args.log, profile, config, model,
                                             n_partitions=args.partitions, on_progress=bar,
                                             columns=columns)
    except (LogError, InvalidInput) as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    write_table(with_client_column(result.table, columns.client), args.out)
    log_flagged(result.table)
    print(f"{summary_line(result.table, result.n_skipped)}; {result.summary()}; "
          f"verdicts written to {args.out}")
    return 0


def warn_no_evidence(monitor, log) -> list[str]:
    """Warn (one line each) about detectors the log and the model leave without evidence: a
    log without probability columns and no --model gives the boundary detector none."""
    from monitor.replay import choose_outputs

    kind, _ = choose_outputs(log, monitor.model is not None)
    if kind == "labels" and monitor.task == "regression":
        kind = "values"
    notes = monitor.evidence_notes(kind)
    for note in notes:
        logger.warning("%s (log columns: %s)", note, ", ".join(log.output_columns) or "none")
    return notes


def log_flagged(table) -> None:
    """One ``client_flagged`` event (INFO) per flagged client of a verdict table."""
    if not logger.isEnabledFor(logging.INFO):
        return
    import pandas as pd

    from monitor.eventlog import log_event

    for row in table[table["flagged"]].to_dict("records"):
        flag_at = row.get("flag_at")
        log_event(logger, "client_flagged", logging.INFO, client_id=row["client_id"],
                  group_id=row.get("group_id"), score=row.get("peak_score"),
                  threshold=row.get("threshold"), reason=row.get("reason"), action="report",
                  n_queries=row.get("n_queries"),
                  flag_at=None if flag_at is None or pd.isna(flag_at) else int(flag_at),
                  exposure=row.get("exposure"))
