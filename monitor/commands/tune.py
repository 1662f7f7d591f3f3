"""Tune the flag threshold on benign logs (and attack logs) and write a config file.

Every client of the logs is replayed through the monitor (each with its own fresh state);
the threshold is the smallest score level at which the one-sided Clopper-Pearson upper
bound (--confidence) on the fraction of benign clients flagged within --horizon queries
(default: whole streams) is at most --target-fpr. When the benign data cannot support the
target (too few clients, or too many benign clients scoring high) tune exits with status 2
and a one-line reason; --allow-weaker writes the fallback instead (the largest benign peak +
--margin, with the bound it achieves).

tune explains its choice: the default and the tuned threshold side by side, with the benign
clients each flags and, given --attacks (or truth columns), the attacks each detects; and the
benign clients with the highest peak scores, which drive the threshold, with their reasons.
A tuned threshold above the default detects less: tune asks before writing it (on a
terminal), or refuses unless --accept-higher.

Clients are labelled by a truth_is_attack column when a log has one; otherwise clients of
--benign logs are benign and clients of --attacks logs are attacks. Truth columns only label
clients; they are never scored. With attack clients, per-threshold ROC / delay curves (and
fidelity stolen before the flag when the log has truth_fidelity) go to --curves.

OUT gets a [monitor] table (the base --config settings plus score_threshold), which
`analyze`, `serve` and `proxy` load with --config, a [tuning] table recording where the
threshold came from (files and sha256, date, target, achieved rates, number of clients), and
every other table of --config ([serving], [store]) unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.inputs import (
    add_log_arguments,
    load_model_file,
    load_profile,
    load_settings,
    log_columns,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, type=Path,
                        help="profile folder written by `extraction-monitor profile`")
    parser.add_argument("--benign", required=True, type=Path, action="append",
                        help="log of benign traffic (repeatable)")
    parser.add_argument("--attacks", type=Path, action="append", default=[],
                        help="log with attack traffic (repeatable)")
    parser.add_argument("--target-fpr", type=float, default=0.01,
                        help="largest tolerated fraction of benign clients flagged (default 0.01)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence of the upper bound on the benign rate (default 0.95)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="only count flags within each client's first N queries")
    parser.add_argument("--margin", type=float, default=0.5,
                        help="score margin above the largest benign peak when too few "
                             "clients support the target (default 0.5)")
    parser.add_argument("--config", type=Path, default=None,
                        help="base monitor config whose other settings are kept")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model (.skops, or .joblib/.pkl: trusted code!)")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="type name a .skops model may contain beyond skops' safe set")
    parser.add_argument("--no-detectors", action="store_true",
                        help="skip the per-detector thresholds (one replay instead of 1 + m)")
    parser.add_argument("--curves", type=Path, default=None,
                        help="write the per-threshold curves table here (.csv)")
    parser.add_argument("--out", required=True, type=Path, help="config file to write (.toml)")
    parser.add_argument("--accept-higher", action="store_true",
                        help="write a tuned threshold above the default without asking "
                             "(it detects less; see the side-by-side comparison)")
    parser.add_argument("--allow-weaker", action="store_true",
                        help="when the benign data cannot support --target-fpr, write the "
                             "fallback threshold instead of failing")
    add_log_arguments(parser, keep=False)


def run(args: argparse.Namespace) -> int:
    from monitor.errors import InvalidInput
    from monitor.logs import LogError
    from monitor.settings import read_config_file
    from monitor.tuning import tune_logs

    if args.out.suffix.lower() not in (".toml", ".json"):
        raise CommandError(f"--out {args.out.name}: write a .toml (or .json) config file")
    if args.horizon is not None and args.horizon < 1:
        raise CommandError(f"--horizon must be at least 1, got {args.horizon}")
    if args.margin < 0:
        raise CommandError(f"--margin must be >= 0, got {args.margin}")
    from monitor.progress import Progress

    profile = load_profile(args.profile)
    config = load_settings(args.config).monitor
    base_tables = read_config_file(args.config) if args.config else {}
    model = load_model_file(args.model, args.trust)
    try:
        with Progress("replaying logs", unit="replays") as bar:
            result = tune_logs(profile, args.benign, args.attacks, config=config, model=model,
                               target_fpr=args.target_fpr, confidence=args.confidence,
                               horizon=args.horizon, margin=args.margin,
                               per_detector=not args.no_detectors,
                               columns=log_columns(args), on_progress=bar)
    except (LogError, InvalidInput, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"threshold {result.threshold:.4g} (default {result.default_threshold:.4g}): "
          f"{result.message}")
    for line in result.explain():
        print(line)
    for name, row in result.detectors.items():
        extra = f", tpr {row['tpr']:.3f}, auc {row['auc']:.3f}" if "tpr" in row else ""
        print(f"  {name}: threshold {row['threshold']:.4g}, benign flagged "
              f"{row['benign_flagged']}, upper bound {row['fpr_upper']:.4f}{extra}")
    if result.tpr is not None:
        print(f"attack clients: {result.n_attack}, detected {result.tpr:.3f} at the tuned "
              f"threshold, median queries to flag {result.median_queries_to_flag:g}")
    if not result.supported and not args.allow_weaker:
        raise CommandError(f"the benign data cannot support a target FPR of {args.target_fpr} "
                           f"(achieved upper bound {result.fpr_upper:.4f}); give more benign "
                           "clients, a looser --target-fpr, or --allow-weaker; nothing written")
    if result.raises_threshold and not args.accept_higher and not _confirm(result):
        raise CommandError(f"tuned threshold {result.threshold:.4g} is above the default "
                           f"{result.default_threshold:.4g} (fewer detections, see above); "
                           "pass --accept-higher to write it; nothing written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.write(args.out, base_tables)
    if args.curves is not None:
        result.curves.to_csv(args.curves, index=False)
    print(f"config written to {args.out}")
    return 0


def _confirm(result) -> bool:
    """Ask on a terminal whether to write a threshold above the default; False elsewhere."""
    import sys

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    answer = input(f"write threshold {result.threshold:.4g}, above the default "
                   f"{result.default_threshold:.4g}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
