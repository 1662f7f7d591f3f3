"""Progress bars for the long steps of the command line, drawn by `rich` on stderr.

A :class:`Progress` is a context manager and an ``on_progress(done, total)`` callback (the
signature :func:`monitor.replay.replay_log`, the engines and the tuning take). It draws only
when stderr is a terminal (or when forced with ``enabled=True``, e.g. ``analyze --progress``)
and never when the command runs with ``--quiet`` (:func:`set_quiet`). Off a terminal it costs
nothing and writes nothing, so logs and pipes stay clean.

>>> with Progress("replaying", unit="rows", enabled=False) as bar:
...     bar(50, 100); bar(100, 100)
>>> bar.done, bar.total
(100, 100)
"""

from __future__ import annotations

import sys
from typing import Any

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or allow) every progress bar of this process (the CLI's ``--quiet``)."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether ``--quiet`` is in force."""
    return _QUIET


def wants_progress(stream=None, force: bool = False) -> bool:
    """Whether to draw: not quiet, and ``stream`` (stderr) is a terminal or ``force``."""
    if _QUIET:
        return False
    stream = sys.stderr if stream is None else stream
    return force or bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """One progress bar (``total`` may be unknown: then a spinner with a count).

    ``enabled=None`` decides with :func:`wants_progress`; ``True`` forces drawing (unless
    quiet), ``False`` never draws. Call it as ``bar(done, total)``, or use :meth:`advance`;
    :meth:`describe` changes the text shown (e.g. the current step).
    """

    def __init__(self, description: str, total: int | None = None, unit: str = "",
                 enabled: bool | None = None, stream=None) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wants_progress(self.stream) if enabled is None else (
            bool(enabled) and not _QUIET)
        self._progress: Any = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            console = Console(file=self.stream, force_terminal=True, stderr=True)
            unit = f" {self.unit}" if self.unit else ""
            self._progress = RichProgress(
                SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
                BarColumn(), MofNCompleteColumn(), TextColumn(unit.strip()),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=console, transient=False, refresh_per_second=8)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            if exc[0] is None and self.total is not None:
                self._progress.update(self._task, completed=self.total)
            self._progress.stop()
            self._progress = None

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=self.total)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        self(self.done + n)

    def describe(self, text: str) -> None:
        """Show ``text`` as the bar's description."""
        self.description = text
        if self._progress is not None:
            self._progress.update(self._task, description=text)


def add_progress_arguments(parser) -> None:
    """``--quiet`` on a command (unless it defines one itself)."""
    if "--quiet" not in parser._option_string_actions:
        parser.add_argument("--quiet", "-q", action="store_true",
                            help="no progress bars (they show only on a terminal anyway)")


__all__ = ["Progress", "add_progress_arguments", "is_quiet", "set_quiet", "wants_progress"]
