"""Monitor an existing prediction API as a reverse proxy in front of it.

Forwards every request to --upstream (bodies streamed, status codes and headers preserved),
monitors POSTs to the [serving] routes (default: the well-known inference paths of MLflow,
KServe v1/v2, TF Serving, TorchServe and /predict) with the profile in --profile, and applies
the configured actions. An unreachable upstream gives 502 with a JSON message.

Security: --model loads a classifier saved with skops (.skops) or joblib (.joblib/.pkl);
loading a joblib/pickle file runs any code it holds, so only load files you trust. A .skops
tree model (a forest, gradient boosting) holds types skops does not trust by default: list
each with --trust TYPE (the refusal names them).

The admin API (/monitor/...) needs a token from EXTRACTION_MONITOR_ADMIN_TOKEN or
--admin-token-file (never on the command line, where ps shows it); without one it is
disabled. --route PATTERN (repeatable) replaces [serving] routes.

Identity: a client is whoever sends the same X-API-Key header value ([serving]
client_header), else its peer address (identity = ["header", "peer"]; add "bearer" for
Authorization: Bearer tokens); `admin lookup KEY --profile DIR` gives a key's client id.

State: --state URI keeps per-client state in a store shared by all --workers and kept across
restarts: sqlite:///path/state.db (default: one database per deployment, named by a hash of
the --profile folder, in ~/.local/share/extraction-monitor/deployments or under
$XDG_DATA_HOME, so two proxies never see each other's clients; `admin lookup --profile`
finds it), redis://host:6379/0 (several hosts; needs EXTRACTION_MONITOR_SALT), or
memory:// (one worker, forgotten on exit). Add ?ttl=SECONDS to forget idle clients; the
[store] table of --config sets the same options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.cli import CommandError
from monitor.commands.inputs import TRUST_HELP
from monitor.commands.server import add_server_arguments, prepare_deployment, run_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True,
                        help="URL of the prediction API, e.g. http://127.0.0.1:8001")
    parser.add_argument("--profile", required=True, type=Path,
                        help="profile folder written by `extraction-monitor profile`")
    parser.add_argument("--model", type=Path, default=None,
                        help="the victim model, for margins when the API answers labels only")
    parser.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help=TRUST_HELP)
    from monitor.serving.launch import WorkerOptions

    parser.add_argument("--timeout", type=float,
                        default=WorkerOptions.model_fields["timeout"].default,
                        help="upstream timeout in seconds (default: %(default)s)")
    add_server_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from monitor.commands.inputs import load_model_file, load_profile
    from monitor.environment import profile_deployment
    from monitor.serving.launch import PROXY_FACTORY, WorkerOptions

    if not args.upstream.startswith(("http://", "https://")):
        raise CommandError(f"--upstream must be an http(s) URL, got {args.upstream!r}")
    settings, salt, token = prepare_deployment(args, profile_deployment(args.profile))
    load_profile(args.profile)  # check here once; every worker loads them again
    load_model_file(args.model, args.trust)
    options = WorkerOptions(
        settings=settings.to_dict(), salt=salt, admin_token=token,
        profile=str(args.profile.resolve()),
        model=None if args.model is None else str(args.model.resolve()),
        trust=tuple(args.trust), upstream=args.upstream, timeout=args.timeout,
        threads=args.threads)
    return run_server(PROXY_FACTORY, options, args)
