"""Serve a reference victim over HTTP (POST /predict) behind the extraction monitor.

Accepts every supported request format (instances, v2 inputs, dataframe_split,
dataframe_records, features) and answers in the matching format in the victim's output mode.
The reference victims (digits-mlp, cancer-logreg, wine-tree, digits-svm, ...) belong to the
test range and are loaded only when this command runs.
The admin API (/monitor/...) needs a token from EXTRACTION_MONITOR_ADMIN_TOKEN or
--admin-token-file (never on the command line, where ps shows it); without one it is
disabled. GET /monitor/metrics gives Prometheus metrics (token required), GET
/monitor/health the state store's health.

Routes: --route PATTERN (repeatable; /invocations, /v1/models/{name}:predict, /api/**/score)
replaces [serving] routes; the default watches the well-known inference paths of MLflow,
KServe v1/v2, TF Serving, TorchServe and /predict. Startup logs one line per watched route.

State: --state URI keeps per-client state in a store shared by all --workers and kept across
restarts: sqlite:///path/state.db (default: state.db in ~/.local/share/extraction-monitor or
$XDG_DATA_HOME), redis://host:6379/0 (several hosts; needs EXTRACTION_MONITOR_SALT), or
memory:// (one worker, forgotten on exit). Add ?ttl=SECONDS to forget idle clients; the
[store] table of --config sets the same options.
Client ids are salted hashes; the salt comes from [serving] salt, EXTRACTION_MONITOR_SALT, or
a <db>.salt file (mode 0600) created beside a SQLite database, so ids survive restarts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from monitor.cli import CommandError

OUTPUT_MODES = ("proba", "rounded", "label")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--victim", required=True, metavar="NAME",
                        help="reference victim (e.g. cancer-logreg; see victims/)")
    parser.add_argument("--output-mode", default="proba", choices=OUTPUT_MODES,
                        help="what /predict returns (default: proba)")
    parser.add_argument("--seed", type=int, default=0, help="victim seed (default: 0)")
    add_server_arguments(parser)
    parser.add_argument("--no-monitor", action="store_true",
                        help="serve the victim without the monitor (benchmark baseline)")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``serve`` and ``proxy``."""
    parser.allow_abbrev = False  # --admin-token must not pass as --admin-token-file
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML/JSON file with [monitor], [serving] and [store] tables")
    parser.add_argument("--admin-token-file", type=Path, default=None, metavar="PATH",
                        help="file holding the admin API token (default: "
                             "$EXTRACTION_MONITOR_ADMIN_TOKEN)")
    parser.add_argument("--route", action="append", default=None, metavar="PATTERN",
                        help="watched route (repeatable): a path, a glob or a {param} "
                             "pattern (default: [serving] routes, the well-known inference "
                             "paths)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="least severe log records shown (default: info)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="flag and alert events (and other log records) as text or as "
                             "JSON lines with a stable schema (default: text)")
    parser.add_argument("--state", default=None, metavar="URI",
                        help="state store: sqlite:///path.db, redis://host:port/db or memory:// "
                             "(default: [store] uri, else sqlite:/// in "
                             "~/.local/share/extraction-monitor)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes sharing the state store (default: 1; "
                             "analyze's Dask workers are --dask-workers)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="BLAS/OpenMP threads per worker for the monitor's (and the "
                             "model's) numerical calls (default: 1; requests already run in "
                             "parallel threads, and wider pools fight for the cores)")


def prepare_deployment(args) -> tuple:
    """``(settings, salt, admin token)``: the config file read once, the store and salt
    decided (:func:`monitor.serving.launch.resolve_deployment`); CommandError if invalid."""
    from monitor.commands.inputs import load_settings
    from monitor.environment import Environment
    from monitor.serving.launch import resolve_deployment

    settings = load_settings(args.config)
    env = Environment.read()
    if args.threads < 1:
        raise CommandError(f"--threads must be at least 1, got {args.threads}")
    try:
        if args.route:
            settings = settings.model_copy(update={
                "serving": settings.serving.replace(routes=tuple(args.route))})
        settings, salt = resolve_deployment(settings, args.state, args.workers, env)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    token = env.admin_token
    if args.admin_token_file is not None:
        try:
            token = args.admin_token_file.read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read --admin-token-file {args.admin_token_file}: "
                               f"{exc.strerror}") from None
        if not token:
            raise CommandError(f"--admin-token-file {args.admin_token_file} is empty")
    return settings, salt, token


def run_server(factory: str, options, args) -> int:
    """Serve the app built by ``factory`` in ``args.workers`` uvicorn workers."""
    from monitor.serving.launch import run_workers

    # the extraction_monitor loggers were set up by the CLI (--log-format, --log-level);
    # with --workers > 1 each uvicorn worker needs monitor.eventlog.uvicorn_log_config too
    try:
        run_workers(factory, options, args.host, args.port, args.workers, args.log_level,
                    args.log_format)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def run(args: argparse.Namespace) -> int:
    from monitor import Profile
    from monitor.serving.launch import VICTIM_FACTORY, WorkerOptions

    settings, salt, token = prepare_deployment(args)
    from victims import VICTIMS, load_victim  # the test range, loaded only for this command

    if args.victim not in VICTIMS:
        raise CommandError(f"unknown victim {args.victim!r}; choose one of {', '.join(VICTIMS)}")
    victim = load_victim(args.victim, output_mode=args.output_mode, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="extraction-monitor-profile-") as folder:
        profile = None
        if not args.no_monitor:  # fit once here; every worker loads the saved profile
            Profile().fit(victim.model, victim.X_train, victim.y_train, X_cal=victim.X_cal,
                          y_cal=victim.y_cal).save(folder)
            profile = folder
        options = WorkerOptions(
            settings=settings.to_dict(), salt=salt, admin_token=token, profile=profile,
            victim={"name": args.victim, "output_mode": args.output_mode, "seed": args.seed},
            threads=args.threads)
        return run_server(VICTIM_FACTORY, options, args)
