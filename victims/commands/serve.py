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

Identity: a client is whoever sends the same X-API-Key header value ([serving]
client_header), else its peer address (identity = ["header", "peer"]; add "bearer" for
Authorization: Bearer tokens); `admin lookup KEY --state URI` (this serve's store) gives a
key's client id.

State: --state URI keeps per-client state in a store shared by all --workers and kept across
restarts: sqlite:///path/state.db (default: one database per deployment, victim, output mode
and seed, in ~/.local/share/extraction-monitor/deployments or under $XDG_DATA_HOME),
redis://host:6379/0 (several hosts; needs EXTRACTION_MONITOR_SALT), or memory:// (one worker, forgotten on exit). Add ?ttl=SECONDS to forget idle clients; the
[store] table of --config sets the same options.
Client ids are salted hashes; the salt comes from [serving] salt, EXTRACTION_MONITOR_SALT, or
a <db>.salt file (mode 0600) created beside a SQLite database, so ids survive restarts.
"""

from __future__ import annotations

import argparse
import tempfile

from monitor.cli import CommandError
from monitor.commands.server import add_server_arguments, prepare_deployment, run_server
from victims import OUTPUT_MODES

VICTIM_FACTORY = "victims.app:victim_app_from_env"
"""The uvicorn factory that builds the (monitored) reference victim app in each worker."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--victim", required=True, metavar="NAME",
                        help="reference victim (e.g. cancer-logreg; see victims/)")
    parser.add_argument("--output-mode", default="proba", choices=OUTPUT_MODES,
                        help="what /predict returns (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="victim seed (default: %(default)s)")
    add_server_arguments(parser)
    parser.add_argument("--no-monitor", action="store_true",
                        help="serve the victim without the monitor (benchmark baseline)")


def run(args: argparse.Namespace) -> int:
    from monitor import Profile
    from monitor.serving.launch import WorkerOptions
    from victims import VICTIMS, load_victim

    deployment = f"victim:{args.victim}:{args.output_mode}:{args.seed}"
    settings, salt, token = prepare_deployment(args, deployment)
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
            factory_options={"name": args.victim, "output_mode": args.output_mode,
                             "seed": args.seed},
            threads=args.threads)
        return run_server(VICTIM_FACTORY, options, args)
