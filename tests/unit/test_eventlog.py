"""Structured logs: flag events from the serving middleware parse as JSON lines with the
stable schema; the text format stays readable; serve/proxy and the offline commands accept
--log-format."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from serving_helpers import client, running

from monitor.cli import build_parser
from monitor.eventlog import (
    EVENT_FIELDS,
    JsonFormatter,
    configure_logging,
    log_event,
    uvicorn_log_config,
    verdict_fields,
)
from monitor.serving import ServingConfig
from victims import load_victim
from victims.app import build_victim_app, build_victim_monitor


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = configure_logging("json", "info", stream=stream)
    yield stream
    logging.getLogger("extraction_monitor").removeHandler(handler)


def test_flag_events_from_the_middleware_are_json_lines(json_log):
    """A uniform-random attacker against the monitored victim over real HTTP: every line the
    extraction_monitor loggers write is one JSON object with the schema's keys, and the flag
    event names the client, its score, the threshold, the reason and the action."""
    victim = load_victim("wine-tree", output_mode="proba", seed=0)
    app = build_victim_app(victim, build_victim_monitor(victim),
                           ServingConfig(salt="t", actions=[{"action": "log"},
                                                            {"action": "block"}]))
    rng = np.random.default_rng(1)
    with running(app) as base, client(base, "attacker-key") as bad:
        for row in rng.uniform(victim.lower, victim.upper, (60, victim.n_features)):
            if bad.post("/predict", json={"instances": [row.tolist()]}).status_code == 403:
                break
    lines = [line for line in json_log.getvalue().splitlines() if line.strip()]
    assert lines, "no log line at all"
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all(sorted(r) == sorted(EVENT_FIELDS) for r in records)
    flags = [r for r in records if r["event"] == "client_flagged"]
    assert len(flags) == 1, records
    flag = flags[0]
    assert flag["level"] == "WARNING" and flag["logger"].startswith("extraction_monitor")
    assert flag["client_id"] and "attacker-key" not in lines[records.index(flag)]
    assert flag["score"] >= flag["threshold"] > 0 and flag["reason"]
    assert flag["time"].endswith("Z") and flag["schema"] == 1


def test_log_event_text_and_json_agree():
    from monitor.verdict import Verdict

    verdict = Verdict(client_id="c9", n_queries=80, score=1.0, peak_score=4.5, threshold=2.0,
                      flagged=True, flag_at=41, reason="14 of the last 50 ...", detectors={},
                      group={"group_id": "acct-1"})
    text, js = io.StringIO(), io.StringIO()
    logger = logging.getLogger("extraction_monitor.test_eventlog")
    for fmt, stream in (("text", text), ("json", js)):
        handler = configure_logging(fmt, "info", stream=stream)
        log_event(logger, "client_flagged", **verdict_fields(verdict, action="block"))
        logging.getLogger("extraction_monitor").removeHandler(handler)
    record = json.loads(js.getvalue())
    assert (record["client_id"], record["group_id"], record["action"], record["flag_at"]) == (
        "c9", "acct-1", "block", 41)
    line = text.getvalue()
    assert "client_flagged client_id=c9 group_id=acct-1 score=4.5" in line
    assert line.rstrip().endswith("reason=14 of the last 50 ...")


def test_plain_records_and_exceptions_are_json_too():
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("extraction_monitor.x", logging.ERROR, __file__, 1,
                                   "store %s down", ("redis",), sys.exc_info())
    out = json.loads(formatter.format(record))
    assert out["event"] == "log" and out["message"] == "store redis down"
    assert "RuntimeError: boom" in out["details"]["exception"]


def test_uvicorn_log_config_is_valid():
    import logging.config

    logging.config.dictConfig(uvicorn_log_config("json", "warning"))
    handler = logging.getLogger("extraction_monitor").handlers[0]
    assert isinstance(handler.formatter, JsonFormatter)
    for name in ("extraction_monitor", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


@pytest.mark.parametrize("command", ["serve", "proxy", "analyze", "tune", "report"])
def test_every_command_takes_log_format(command):
    parser = build_parser([command])
    choices = parser._subparsers._group_actions[0].choices[command]
    action = choices._option_string_actions["--log-format"]
    assert list(action.choices) == ["text", "json"]
    assert "--quiet" in choices._option_string_actions
