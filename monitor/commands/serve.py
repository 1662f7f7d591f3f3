"""Serve a reference victim over HTTP (POST /predict) behind the extraction monitor.

Accepts every supported request format (instances, v2 inputs, dataframe_split,
dataframe_records, features) and answers in the matching format in the victim's output mode.
The admin API (/monitor/...) needs a token from EXTRACTION_MONITOR_ADMIN_TOKEN or
--admin-token; without one it is disabled. GET /metrics gives Prometheus metrics.

State: --state URI keeps per-client state in a store shared by all --workers and kept across
restarts: sqlite:///path/state.db (default: state.db in ~/.local/share/extraction-monitor or
$XDG_DATA_HOME), redis://host:6379/0 (several hosts; needs EXTRACTION_MONITOR_SALT), or
memory:// (one worker, forgotten on exit). Add ?ttl=SECONDS to forget idle clients.
Client ids are salted hashes; the salt comes from [serving] salt, EXTRACTION_MONITOR_SALT, or
a <db>.salt file (mode 0600) created beside a SQLite database, so ids survive restarts.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
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
    parser.add_argument("--state", default=None, metavar="URI",
                        help="state store: sqlite:///path.db, redis://host:port/db or memory:// "
                             "(default: sqlite:/// in ~/.local/share/extraction-monitor)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes sharing the state store (default: 1)")


def prepare_state(args, config_path: Path | None) -> tuple[str, str]:
    """``(state URI, salt)`` from ``--state``, ``--workers`` and the config; CommandError."""
    from monitor.serving.config import read_table
    from monitor.serving.launch import check_state, default_state_uri, resolve_salt

    try:
        state = args.state or default_state_uri()
        check_state(state, args.workers)
        configured = read_table(config_path, "serving").get("salt") if config_path else None
        return state, resolve_salt(state, configured)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None


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


def run_server(factory: str, options: dict, args) -> int:
    """Serve the app built by ``factory`` in ``args.workers`` uvicorn workers."""
    from monitor.serving.launch import run_workers

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        run_workers(factory, options, args.host, args.port, args.workers, args.log_level)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def run(args: argparse.Namespace) -> int:
    from monitor import Profile
    from monitor.serving.launch import VICTIM_FACTORY
    from victims import load_victim

    load_configs(args.config)  # fail early on a bad config file
    state, salt = prepare_state(args, args.config)
    victim = load_victim(args.victim, output_mode=args.output_mode, seed=args.seed)
    options = {"victim": args.victim, "output_mode": args.output_mode, "seed": args.seed,
               "config": None if args.config is None else str(args.config.resolve()),
               "state": state, "salt": salt, "admin_token": args.admin_token, "profile": None}
    with tempfile.TemporaryDirectory(prefix="extraction-monitor-profile-") as folder:
        if not args.no_monitor:  # fit once here; every worker loads the saved profile
            Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                          y_cal=victim.y_cal).save(folder)
            options["profile"] = folder
        return run_server(VICTIM_FACTORY, options, args)
