"""Run the detection benchmark: victims x attacks x benign behaviours x detector configurations.

Writes DIR/per_client.csv (one row per client and configuration: victim, client_id, kind
(`benign` or the attack name), behaviour, config, n_queries, flagged, flag_at,
queries_to_flag, peak_score, fidelity_at_flag, fidelity_final), DIR/adaptive.csv (attack
mixed with public records / split over sybils), DIR/summary.md (detection per attack family
and configuration, benign FPR, detection at 1% benign FPR, acceptance pass/fail, adaptive
attackers) and DIR/roc.png, DIR/timelines.png.

--quick (two victims, six attacks, small budgets) runs in well under 2 minutes; the full
run covers all four victims and every applicable attack at its registry budget.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import sys
from pathlib import Path

from monitor.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="small run (two victims, six attacks, small budgets)")
    parser.add_argument("--seed", type=int, default=0,
                        help="attack seed; benign seeds are SEED..SEED+n-1 (default 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="number of attack seeds SEED..SEED+n-1 (default 1)")
    parser.add_argument("--benign-seeds", type=int, default=None,
                        help="number of benign seeds (9 benign clients per seed and victim)")
    parser.add_argument("--budget", type=int, default=None,
                        help="cap every attack's budget (default: registry budgets)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes (default: 1 with --quick, else 2)")
    parser.add_argument("--victims", default=None,
                        help="comma-separated victims (default: the run's set)")
    parser.add_argument("--attacks", default=None,
                        help="comma-separated attacks (default: the run's set)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated monitor configurations (default: all of "
                             "attacks.bench.CONFIGS)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


@contextlib.contextmanager
def bench_progress(quiet: bool):
    """The callback ``run_bench`` reports "[i/n] task" lines to: a progress bar on a terminal,
    the lines themselves on stderr otherwise, nothing with --quiet."""
    from monitor.progress import Progress, is_quiet, wants_progress

    if quiet or is_quiet():
        yield None
        return
    if not wants_progress():
        yield lambda line: print(line, file=sys.stderr, flush=True)
        return
    with Progress("benchmark", unit="tasks") as bar:
        def update(line: str) -> None:
            match = re.match(r"\[(\d+)/(\d+)\]\s*(.*)", line)
            if match is None:
                bar.describe(line[:60])
                return
            bar.describe(f"benchmark {match.group(3)[:50]}")
            bar(int(match.group(1)), int(match.group(2)))

        yield update


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from attacks.bench import full_spec, quick_spec, run_bench, write_outputs

    if args.seeds < 1:
        raise CommandError("--seeds must be >= 1")
    for flag in ("jobs", "benign_seeds", "budget"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CommandError(f"--{flag.replace('_', '-')} must be >= 1")
    spec = quick_spec(args.seed) if args.quick else full_spec(args.seed)
    changes = {"seeds": tuple(range(args.seed, args.seed + args.seeds))}
    if args.jobs is not None:
        changes["jobs"] = args.jobs
    if args.benign_seeds is not None:
        changes["benign_seeds"] = tuple(range(args.seed, args.seed + args.benign_seeds))
    if args.budget is not None:
        changes["budget"] = args.budget
    if args.victims:
        changes["victims"] = tuple(v.strip() for v in args.victims.split(",") if v.strip())
    if args.attacks:
        from attacks.registry import ATTACKS

        names = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
        unknown = [a for a in names if a not in ATTACKS]
        if unknown:
            raise CommandError(f"unknown attack(s) {', '.join(unknown)}; "
                               f"choose among {', '.join(ATTACKS)}")
        changes["attacks"] = names
    if args.configs:
        changes["configs"] = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    try:
        spec = replace(spec, **changes)
        with bench_progress(args.quiet) as progress:
            result = run_bench(spec, progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    command = "extraction-monitor " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith("extraction-monitor") else ""
    paths = write_outputs(result, args.out, command)
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {result.seconds:.0f} s")
    return 0
