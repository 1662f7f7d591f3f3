"""Write a single self-contained HTML report of verdicts (plots inlined as PNG).

SOURCE is either a verdict table written by `extraction-monitor analyze` (CSV/JSON lines/
Parquet), or a query log, which is analyzed first (then the report also has per-client score
timelines, and ROC / detection-delay curves when the log has a truth_is_attack column).
Flagged clients come first, with the detector that fired and the reason; the profile's
calibration checks close the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.inputs import load_model_file, load_profile, load_settings


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
                        help="type name a .skops model may contain beyond skops' safe set")
    parser.add_argument("--title", default=None, help="report title")


def run(args: argparse.Namespace) -> int:
    from monitor.errors import InvalidInput
    from monitor.logs import LogError
    try:
        from monitor.report import build_report
    except ImportError as exc:
        raise CommandError(f"the report needs matplotlib ({exc}); pip install matplotlib") from exc

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise CommandError(f"--out {args.out.name}: the report is HTML; name it .html")
    profile = load_profile(args.profile)
    config = load_settings(args.config).monitor
    model = load_model_file(args.model, args.trust)
    try:
        page = build_report(args.source, profile, config, model, title=args.title)
    except (LogError, InvalidInput, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"report written to {args.out} ({len(page) // 1024} KiB)")
    return 0
