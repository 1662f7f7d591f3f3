"""The ``extraction-monitor`` command line.

Each subcommand lives in its own module ``monitor/commands/<name>.py`` that
defines ``add_arguments(parser)`` and ``run(args) -> int``; the module
docstring's first line is the command's one-line help.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS = (
    "demo", "profile", "analyze", "serve", "proxy", "bench", "tune", "report", "partition",
)


class CommandError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


def _available() -> list[str]:
    return [c for c in COMMANDS if importlib.util.find_spec(f"monitor.commands.{c}") is not None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extraction-monitor",
        description="Detect model-extraction attacks against ML prediction APIs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _available():
        module = importlib.import_module(f"monitor.commands.{name}")
        doc = (module.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else name
        cmd = sub.add_parser(
            name, help=summary, description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"extraction-monitor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
