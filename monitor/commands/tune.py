"""Tune the flag threshold on benign logs (and attack logs) and write a config file.

Every client of the logs is replayed through the monitor (each with its own fresh state);
the threshold is the smallest score level at which the one-sided Clopper-Pearson upper
bound (--confidence) on the fraction of benign clients flagged within --horizon queries
(default: whole streams) is at most --target-fpr. When the benign data cannot support the
target (too few clients, or too many benign clients scoring high) the threshold falls back
to the largest benign peak + --margin, with the bound it achieves.

A score is -log10 of a p-value bound, so a threshold t stands for a calibrated per-client
false-alarm rate of 10^-t; the calibrated default is -log10(alpha) (2 for alpha 0.01: 1 in
100). tune guards both directions and, when it writes a threshold, warns with the calibrated
rate it stands for and the default's:
  below the default: a weaker false-alarm guarantee (e.g. 0.165: 10^-0.165, about 2 in 3 on
    the calibrated scale; only the benign logs given back it): refused unless --allow-weaker;
  above the default: it detects less (with --attacks, tune says how many attack clients the
    default flags and the tuned threshold would miss): refused unless --accept-higher.
On a terminal tune asks instead of refusing. Refused means exit status 2, a one-line reason,
nothing written.

tune explains its choice: the default and the tuned threshold side by side, with the benign
clients each flags and, given --attacks (or truth columns), the attacks each detects; and the
benign clients with the highest peak scores, which drive the threshold, with their reasons.

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
    TRUST_HELP,
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
                        help="largest tolerated fraction of benign clients flagged (default %(default)s)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence of the upper bound on the benign rate (default %(default)s)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="only count flags within each client's first N queries")
    parser.add_argument("--margin", type=float, default=0.5,
                        help="score margin above the largest benign peak when too few "
                             "clients support the target (default %(default)s)")
    parser.add_argument("--config", type=Path, default=None,
                        help="base monitor config whose other settings are kept")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model (.skops, or .joblib/.pkl: trusted code!)")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help=TRUST_HELP)
    parser.add_argument("--no-detectors", action="store_true",
                        help="skip the per-detector thresholds (one replay instead of 1 + m)")
    parser.add_argument("--curves", type=Path, default=None,
                        help="write the per-threshold curves table here (.csv)")
    parser.add_argument("--out", required=True, type=Path, help="config file to write (.toml)")
    parser.add_argument("--accept-higher", action="store_true",
                        help="write a tuned threshold above the calibrated default (it detects "
                             "less: tune says how many attack clients of --attacks it would "
                             "miss); refused without it")
    parser.add_argument("--allow-weaker", action="store_true",
                        help="write a tuned threshold below the calibrated default (a weaker "
                             "false-alarm guarantee: threshold t means 10^-t per client); "
                             "refused without it")
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
                               columns=log_columns(args, profile), on_progress=bar)
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
    refusal = _refusal(result, args)
    if refusal is not None:
        raise CommandError(refusal)
    print(result.threshold_warning())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.write(args.out, base_tables)
    if args.curves is not None:
        result.curves.to_csv(args.curves, index=False)
    print(f"config written to {args.out}")
    return 0


def _refusal(result, args: argparse.Namespace) -> str | None:
    """Why the tuned threshold is not written (``None``: write it): below the calibrated
    default without --allow-weaker, above it without --accept-higher (on a terminal, tune asks
    instead)."""
    unsupported = "" if result.supported else (
        f"the benign data cannot support a target FPR of {args.target_fpr} (achieved upper "
        f"bound {result.fpr_upper:.4f}; more benign clients or a looser --target-fpr would); ")
    tuned, default = result.threshold, result.default_threshold
    if result.lowers_threshold and not args.allow_weaker and not _confirm(result, "below"):
        from monitor.tuning import calibrated_false_alarm_rate as rate

        return (f"{unsupported}tuned threshold {tuned:.4g} is below the calibrated default "
                f"{default:.4g}: a weaker false-alarm guarantee ({rate(tuned):.4g} per client "
                f"instead of {rate(default):.4g}); pass --allow-weaker to write it; "
                "nothing written")
    if result.raises_threshold and not args.accept_higher and not _confirm(result, "above"):
        lost = result.attacks_lost()
        cost = ("give --attacks to count the attack clients it would miss" if lost is None
                else f"{lost} attack clients that the default flags would be missed, of "
                     f"{result.n_attack} given")
        return (f"{unsupported}tuned threshold {tuned:.4g} is above the default {default:.4g} "
                f"(fewer detections: {cost}); pass --accept-higher to write it; "
                "nothing written")
    if not result.supported and not (args.allow_weaker or args.accept_higher):
        return (f"{unsupported}pass --allow-weaker to write threshold {tuned:.4g} anyway; "
                "nothing written")
    return None


def _confirm(result, side: str) -> bool:
    """Ask on a terminal whether to write a threshold ``side`` ("above"/"below") the default;
    False elsewhere."""
    import sys

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    answer = input(f"write threshold {result.threshold:.4g}, {side} the default "
                   f"{result.default_threshold:.4g}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
