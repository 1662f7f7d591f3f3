"""Monitor an existing prediction API as a reverse proxy in front of it.

Forwards every request to --upstream (bodies streamed, status codes and headers preserved),
monitors POSTs to the [serving] routes (default /predict) with the profile in --profile, and
applies the configured actions. An unreachable upstream gives 502 with a JSON message.

Security: --model loads a classifier saved with skops (.skops) or joblib (.joblib/.pkl);
loading a joblib/pickle file runs any code it holds, so only load files you trust.

State: --state URI (sqlite:///path.db by default, redis://, memory://) is shared by all
--workers and kept across restarts; see `extraction-monitor serve --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.serve import add_server_arguments, load_configs, prepare_state, run_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True,
                        help="URL of the prediction API, e.g. http://127.0.0.1:8001")
    parser.add_argument("--profile", required=True, type=Path,
                        help="profile folder written by `extraction-monitor profile`")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model, for margins when the API answers labels only")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="type name a .skops model may contain beyond skops' safe set")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="upstream timeout in seconds (default: 30)")
    add_server_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from monitor import InvalidInput, Profile
    from monitor.model_io import ModelLoadError, load_model
    from monitor.serving.launch import PROXY_FACTORY

    if not args.upstream.startswith(("http://", "https://")):
        raise CommandError(f"--upstream must be an http(s) URL, got {args.upstream!r}")
    load_configs(args.config)  # fail early on a bad config file
    try:  # check here once; every worker loads them again
        Profile.load(args.profile)
    except (InvalidInput, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.model is not None:
        try:
            load_model(args.model, trusted=args.trust)
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from None
    state, salt = prepare_state(args, args.config)
    options = {"upstream": args.upstream, "profile": str(args.profile.resolve()),
               "model": None if args.model is None else str(args.model.resolve()),
               "trust": list(args.trust), "timeout": args.timeout,
               "config": None if args.config is None else str(args.config.resolve()),
               "state": state, "salt": salt, "admin_token": args.admin_token}
    return run_server(PROXY_FACTORY, options, args)
