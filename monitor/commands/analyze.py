"""Replay a query log through the monitor and write one verdict per client.

LOG is CSV, JSON lines (.jsonl/.ndjson/.json) or Parquet with client_id, an order column (seq or
ts; seq wins if both), the feature columns (x_0..x_{d-1} or the training data's names) and
optionally what the API returned (p_0..p_{k-1} probabilities and/or pred). Extra columns are
ignored; rows with NaN/inf or missing values are skipped and counted.

Outputs used: the p_* probabilities if present; else pred labels when no --model is given;
else the monitor recomputes outputs from --model.

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
from monitor.commands.inputs import load_config, load_model_file, load_profile
from monitor.logs import LogError, read_log

PROGRESS_MIN_ROWS = 20_000
"""Logs with fewer rows never show a progress bar unless --progress is given."""


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
                        help="monitor config file (TOML [monitor] table, or JSON)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar on stderr even when it is not a terminal")
    # scale: --engine/--scheduler/--workers/--partitions/--out-of-core (monitor/engines)
    from monitor.engines.command import add_engine_arguments

    add_engine_arguments(parser)


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


def _write_table(table, path: Path) -> None:
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        table.to_json(path, orient="records", lines=True)
    elif suffix in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        raise CommandError(f"--out {path.name}: unknown file type; use .csv, .jsonl or .parquet")


def run(args: argparse.Namespace) -> int:
    from monitor import Monitor
    from monitor.analyze import analyze_log, summary_line
    from monitor.errors import InvalidInput

    if args.out.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        raise CommandError(f"--out {args.out.name}: unknown file type; use .csv, .jsonl or "
                           ".parquet")
    profile = load_profile(args.profile)
    config = load_config(args.config)
    model = load_model_file(args.model, args.trust, profile)
    # scale: partition folders, big files, --engine dask (monitor/engines/command.py)
    from monitor.engines.command import run_engine, wants_engine

    if wants_engine(args):
        return run_engine(args, profile, config, model)
    try:
        log = read_log(args.log, profile.feature_names_, len(profile.classes_))
    except LogError as exc:
        raise CommandError(str(exc)) from exc
    monitor = Monitor(profile, config=config, model=model)
    show = args.progress or (sys.stderr.isatty() and log.n_rows >= PROGRESS_MIN_ROWS)
    try:
        table = analyze_log(log, monitor, on_progress=ProgressBar(sys.stderr) if show else None)
    except InvalidInput as exc:
        raise CommandError(f"{args.log.name}: {exc}") from exc
    _write_table(table, args.out)
    print(f"{summary_line(table, log.n_skipped_nonfinite)}; verdicts written to {args.out}")
    return 0
