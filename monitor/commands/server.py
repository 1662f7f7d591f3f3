"""Options and start-up shared by the commands that run a monitored HTTP server.

``proxy`` uses them, and so can a command that another package registers through the
``extraction_monitor.commands`` entry-point group to serve its own app behind the monitor: it
adds :func:`add_server_arguments`, settles the deployment once with
:func:`prepare_deployment`, and starts its app factory with :func:`run_server`. Not a command
itself (not in :data:`monitor.cli.PRODUCT_COMMANDS`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every serving command: bind address, config, admin token, routes, logs,
    state store, workers and threads."""
    from monitor.settings import DEFAULT_ROUTES

    parser.allow_abbrev = False  # --admin-token must not pass as --admin-token-file
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    from monitor.settings import ServingConfig

    serving = ServingConfig()
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML/JSON file with [monitor], [serving] and [store] tables "
                             f"(without one, clients are identified by the "
                             f"{serving.client_header} header, else the peer address: "
                             f"identity = {list(serving.identity_sources)})")
    parser.add_argument("--admin-token-file", type=Path, default=None, metavar="PATH",
                        help="file holding the admin API token (default: "
                             "$EXTRACTION_MONITOR_ADMIN_TOKEN)")
    parser.add_argument("--route", action="append", default=None, metavar="PATTERN",
                        help="watched route (repeatable): a path, a glob or a {param} "
                             "pattern (default: [serving] routes, else the well-known "
                             f"inference paths: {', '.join(DEFAULT_ROUTES)})")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="least severe log records shown (default: %(default)s)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="flag and alert events (and other log records) as text or as "
                             "JSON lines with a stable schema (default: %(default)s)")
    parser.add_argument("--state", default=None, metavar="URI",
                        help="state store: sqlite:///path.db, redis://host:port/db or memory:// "
                             "(default: [store] uri, else an SQLite database of this "
                             "deployment's own in ~/.local/share/extraction-monitor/"
                             "deployments, or under $XDG_DATA_HOME)")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes sharing the state store (default: "
                             "%(default)s; analyze's Dask workers are --dask-workers)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="BLAS/OpenMP threads per worker for the monitor's (and the "
                             "model's) numerical calls (default: %(default)s; requests already run in "
                             "parallel threads, and wider pools fight for the cores)")


def prepare_deployment(args, deployment: str | None = None) -> tuple:
    """``(settings, salt, admin token)``: the config file read once, the store and salt
    decided (:func:`monitor.serving.launch.resolve_deployment`; without --state or
    ``[store] uri``, the default store of ``deployment``); CommandError if invalid."""
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
        settings, salt = resolve_deployment(settings, args.state, args.workers, env,
                                            deployment=deployment)
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
    """Serve the app built by ``factory`` in ``args.workers`` uvicorn workers.

    ``factory`` is the import string (``"package.module:function"``) of a uvicorn factory
    that builds the app in each worker from :func:`monitor.serving.launch.worker_options`;
    the product's own is :data:`monitor.serving.launch.PROXY_FACTORY`."""
    from monitor.serving.launch import run_workers

    # the extraction_monitor loggers were set up by the CLI (--log-format, --log-level);
    # with --workers > 1 each uvicorn worker needs monitor.eventlog.uvicorn_log_config too
    try:
        run_workers(factory, options, args.host, args.port, args.workers, args.log_level,
                    args.log_format)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0
