"""The ``extraction-monitor`` command line.

Each subcommand lives in its own module that defines ``add_arguments(parser)`` and
``run(args) -> int``; the module docstring's first line is the command's one-line help.
The product's commands are in :mod:`monitor.commands`; other packages add commands through
the ``extraction_monitor.commands`` entry-point group (the test range adds ``demo``, ``bench``
and ``serve --victim`` that way). Only the chosen command's module is imported: ``--help`` reads the other
modules' docstrings without importing them, so ``extraction-monitor analyze`` never loads the
reference victims or the attack suite.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path

PRODUCT_COMMANDS = {
    name: f"monitor.commands.{name}"
    for name in ("profile", "analyze", "report", "tune", "proxy", "partition", "admin")
}
"""The product's own commands: name -> module."""

ENTRY_POINT_GROUP = "extraction_monitor.commands"
"""Entry-point group through which other packages register commands (name -> module)."""


class CommandError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


def available_commands() -> dict[str, str]:
    """Every command: the product's, then those registered through :data:`ENTRY_POINT_GROUP`
    whose module can be found."""
    commands = dict(PRODUCT_COMMANDS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in commands and source_file(entry.value) is not None:
            commands[entry.name] = entry.value
    return commands


def source_file(module: str) -> Path | None:
    """The ``.py`` file of ``module``, found without importing it or its parent packages
    (``importlib.util.find_spec`` of a submodule would import the parents)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or ():
        base = Path(folder).joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def command_summary(module: str) -> str:
    """The first line of a command module's docstring, read without importing the module."""
    path = source_file(module)
    if path is None:
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` (if any) is imported and fully built."""
    from monitor import __version__
    from monitor.eventlog import add_logging_arguments
    from monitor.progress import add_progress_arguments

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="extraction-monitor",
        description="Detect model-extraction attacks against ML prediction APIs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for name, module_name in available_commands().items():
        if name != chosen:
            sub.add_parser(name, help=command_summary(module_name), add_help=False)
            continue
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(
            name, help=doc.splitlines()[0] if doc else name, description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        add_progress_arguments(cmd)
        add_logging_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    from monitor.eventlog import ROOT_LOGGER, configure_logging
    from monitor.progress import set_quiet

    set_quiet(getattr(args, "quiet", False))
    handler = configure_logging(getattr(args, "log_format", "text"),
                                getattr(args, "log_level", "warning"))
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"extraction-monitor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        logging.getLogger(ROOT_LOGGER).removeHandler(handler)
        set_quiet(False)


if __name__ == "__main__":  # python -m monitor.cli: run the importable module's main, so the
    from monitor.cli import main as _main  # commands' CommandError is the one caught above

    sys.exit(_main())
