"""Write a single self-contained HTML report of verdicts (interactive plots, opens offline).

SOURCE is either a verdict table written by `extraction-monitor analyze` (CSV/JSON lines/
Parquet), or a query log, which is analyzed first: then the report also drills into each
flagged client (score timeline with the threshold, queries to flag, the features that pushed
its queries out of the reference distribution), puts the flags on a time axis when the log has
timestamps (--time-column, or ts), and draws ROC / detection-delay curves when the log has a
truth_is_attack column. The summary comes first (flagged clients, when, exposure, the detector
that fired); benign clients are collapsed; the benign score distribution against the threshold
and the profile's calibration checks close the report. Query numbers in the report start at 1
(query N = the verdict table's 0-based flag_at + 1).
"""

from __future__ import annotations

import argparse
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="VERDICTS_OR_LOG",
                        help="verdict table from `analyze`, or a query log")
    parser.add_argument("--profile", required=True, type=Path,
                        help="profile folder written by `extraction-monitor profile`")
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write")
    parser.add_argument("--config", type=Path, default=None,
                        help="monitor config file used when SOURCE is a log")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model when SOURCE is a log (.skops, or .joblib/.pkl: "
                             "trusted code!)")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help=TRUST_HELP)
    parser.add_argument("--title", default=None, help="report title")
    add_log_arguments(parser, keep=False)


def run(args: argparse.Namespace) -> int:
    from monitor.errors import InvalidInput
    from monitor.logs import LogError
    from monitor.progress import Progress

    try:
        from monitor.report import build_report
    except ImportError as exc:
        raise CommandError(f"the report needs jinja2 ({exc}); pip install jinja2") from exc

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise CommandError(f"--out {args.out.name}: the report is HTML; name it .html")
    profile = load_profile(args.profile)
    config = load_settings(args.config).monitor
    model = load_model_file(args.model, args.trust)
    try:
        with Progress("replaying for the report", unit="rows") as bar:
            page = build_report(args.source, profile, config, model, title=args.title,
                                columns=log_columns(args, profile), on_progress=bar)
    except (LogError, InvalidInput, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"report written to {args.out} ({len(page) // 1024} KiB)")
    return 0
