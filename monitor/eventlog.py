"""Structured events (a client flagged, an exposure limit reached, an alert sent) through the
standard :mod:`logging` module, as JSON lines or as readable text.

:func:`log_event` logs one event with a stable schema: every record has the keys of
:data:`EVENT_FIELDS` (``None`` when not known) and a ``details`` object for anything else.
:class:`JsonFormatter` writes each record as one JSON object per line (plain log records too:
``event`` is then ``"log"`` and ``message`` holds the text); with the text formatter an event
reads ``client_flagged client_id=... score=... action=... reason=...``.
:func:`configure_logging` installs either on the ``extraction_monitor`` logger (the CLI's
``--log-format text|json``).

>>> import io, json, logging
>>> stream = io.StringIO()
>>> log = logging.getLogger("extraction_monitor.doctest")
>>> handler = configure_logging("json", "info", stream=stream,
...                             logger_name="extraction_monitor.doctest")
>>> log_event(log, "client_flagged", client_id="c1", score=4.2, threshold=2.0,
...           reason="14 of the last 50 ...", action="block", flag_at=12, note="x")
>>> record = json.loads(stream.getvalue())
>>> record["event"], record["client_id"], record["action"], record["group_id"], record["details"]
('client_flagged', 'c1', 'block', None, {'note': 'x'})
>>> sorted(record) == sorted(EVENT_FIELDS)
True
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
EVENT_FIELDS = ("schema", "time", "level", "logger", "event", "client_id", "group_id",
                "score", "threshold", "reason", "action", "n_queries", "flag_at", "exposure",
                "message", "details")
"""Keys of every JSON line (stable; new information goes into ``details``)."""
_EVENT_KEYS = ("client_id", "group_id", "score", "threshold", "reason", "action", "n_queries",
               "flag_at", "exposure")
_ATTRIBUTE = "extraction_monitor_event"
ROOT_LOGGER = "extraction_monitor"


def _plain(value: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, NaN/inf to None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def event_fields(event: str, **fields: Any) -> dict[str, Any]:
    """The schema's event keys from ``fields`` (missing: None); others go to ``details``."""
    out: dict[str, Any] = {"event": event}
    out.update({k: _plain(fields.pop(k, None)) for k in _EVENT_KEYS})
    out["details"] = {k: _plain(v) for k, v in fields.items()}
    return out


def verdict_fields(verdict, action: str | None = None) -> dict[str, Any]:
    """The event fields of a :class:`~monitor.verdict.Verdict` (peak score as ``score``).

    >>> from monitor.verdict import Verdict
    >>> v = Verdict(client_id="c", n_queries=40, score=1.0, peak_score=3.5, threshold=2.0,
    ...             flagged=True, flag_at=30, reason="r", detectors={})
    >>> verdict_fields(v, "block")["score"], verdict_fields(v)["flag_at"]
    (3.5, 30)
    """
    group = getattr(verdict, "group", None) or {}
    return {"client_id": verdict.client_id, "group_id": group.get("group_id"),
            "score": float(verdict.peak_score), "threshold": float(verdict.threshold),
            "reason": verdict.reason, "action": action, "n_queries": int(verdict.n_queries),
            "flag_at": verdict.flag_at, "exposure": verdict.exposure}


def log_event(logger: logging.Logger, event: str, level: int = logging.WARNING,
              **fields: Any) -> None:
    """Log ``event`` with the schema's fields (see the module docstring)."""
    record = event_fields(event, **fields)
    shown = " ".join(f"{k}={record[k]}" for k in _EVENT_KEYS
                     if record[k] is not None and k != "reason")
    text = f"{event} {shown}".strip()
    if record["reason"]:
        text += f" reason={record['reason']}"
    logger.log(level, text, extra={_ATTRIBUTE: record})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, keys :data:`EVENT_FIELDS`, time in UTC ISO 8601."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, _ATTRIBUTE, None)
        out: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
        out.update({
            "schema": SCHEMA_VERSION,
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
        })
        if event is not None:
            out.update(event)
        else:
            message = record.getMessage()
            out.update({"event": "log", "message": message, "details": {}})
            try:  # an event logged as json.dumps({...}) by older code
                data = json.loads(message)
                if isinstance(data, dict) and "event" in data:
                    if "peak_score" in data:  # a verdict summary: its peak is the score
                        data["current_score"] = data.pop("score", None)
                        data["score"] = data.pop("peak_score")
                    out.update(event_fields(data.pop("event"), **data))
                    out["message"] = None
            except ValueError:
                pass
        if record.exc_info:
            out["details"] = {**(out.get("details") or {}),
                              "exception": self.formatException(record.exc_info)}
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FORMATS = ("text", "json")


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``text`` or ``json``."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(fmt: str = "text", level: str | int = "warning", stream=None,
                      logger_name: str = ROOT_LOGGER) -> logging.Handler:
    """Send the ``extraction_monitor`` loggers to ``stream`` (stderr) in format ``fmt``.

    Replaces a handler this function installed before (calling it twice does not double
    lines); remove it with ``logger.removeHandler(handler)`` when done.
    """
    logger = logging.getLogger(logger_name)
    for handler in list(logger.handlers):
        if getattr(handler, "_extraction_monitor", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler._extraction_monitor = True  # type: ignore[attr-defined]
    handler.setFormatter(make_formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def uvicorn_log_config(fmt: str = "text", level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=...)``: uvicorn's own
    loggers and the ``extraction_monitor`` loggers in format ``fmt`` in every worker."""
    formatter = ({"()": "monitor.eventlog.JsonFormatter"} if fmt == "json"
                 else {"format": TEXT_FORMAT})
    handler = {"class": "logging.StreamHandler", "formatter": "main",
               "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["main"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", ROOT_LOGGER)}
    loggers["uvicorn.access"] = {"handlers": ["main"], "level": level.upper(),
                                 "propagate": False}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"main": formatter}, "handlers": {"main": handler},
            "loggers": loggers}


def add_logging_arguments(parser, default_level: str = "warning") -> None:
    """``--log-format`` (and ``--log-level`` unless the command has one) on a command."""
    if "--log-format" not in parser._option_string_actions:
        parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                            help="log lines as text or as JSON lines with a stable schema "
                                 "(default: text)")
    if "--log-level" not in parser._option_string_actions:
        parser.add_argument("--log-level", default=default_level,
                            choices=("debug", "info", "warning", "error"),
                            help=f"least severe log records shown (default: {default_level})")


__all__ = ["EVENT_FIELDS", "JsonFormatter", "SCHEMA_VERSION", "add_logging_arguments",
           "configure_logging", "event_fields", "log_event", "make_formatter",
           "uvicorn_log_config", "verdict_fields"]
