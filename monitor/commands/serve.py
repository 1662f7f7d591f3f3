"""Serve a reference victim over HTTP (POST /predict) behind the extraction monitor.

Accepts every supported request format (instances, v2 inputs, dataframe_split,
dataframe_records, features) and answers in the matching format in the victim's output mode.
The admin API (/monitor/...) needs a token from EXTRACTION_MONITOR_ADMIN_TOKEN or
--admin-token; without one it is disabled. GET /metrics gives Prometheus metrics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from monitor.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from victims import OUTPUT_MODES, VICTIMS

    parser.add_argument("--victim", required=True, choices=VICTIMS, help="reference victim")
    parser.add_argument("--output-mode", default="proba", choices=OUTPUT_MODES,
                        help="what /predict returns (default: proba)")
    parser.add_argument("--seed", type=int, default=0, help="victim seed (default: 0)")
    add_server_arguments(parser)
    parser.add_argument("--no-monitor", action="store_true",
                        help="serve the victim without the monitor (benchmark baseline)")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``serve`` and ``proxy``."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML/JSON file with [monitor] and [serving] tables")
    parser.add_argument("--admin-token", default=None,
                        help="admin API token (default: $EXTRACTION_MONITOR_ADMIN_TOKEN)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))


def load_configs(path: Path | None):
    """``(MonitorConfig | None, ServingConfig)`` from ``--config``; CommandError if invalid."""
    from monitor import MonitorConfig
    from monitor.serving import ServingConfig

    if path is None:
        return None, ServingConfig()
    try:
        return MonitorConfig.load(path), ServingConfig.load(path)
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None


def run_server(app, args) -> int:
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def run(args: argparse.Namespace) -> int:
    from monitor.serving import build_victim_app, build_victim_monitor
    from victims import load_victim

    monitor_config, serving_config = load_configs(args.config)
    victim = load_victim(args.victim, output_mode=args.output_mode, seed=args.seed)
    monitor = None if args.no_monitor else build_victim_monitor(victim, monitor_config)
    app = build_victim_app(victim, monitor, serving_config, admin_token=args.admin_token)
    return run_server(app, args)
