"""The one error of log reading: :class:`LogError`, whose message says what to fix."""

from __future__ import annotations


class LogError(ValueError):
    """A query log (or table) that cannot be used; the message says what to fix."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


LogError.__module__ = "monitor.logs"  # its public name, in tracebacks and pickles
