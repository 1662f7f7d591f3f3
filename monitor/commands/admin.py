"""Operator tasks on a deployment's state: look up the client id of an API key.

  extraction-monitor admin lookup KEY --profile DIR [--config FILE]   (or --state URI)
  extraction-monitor admin lookup - --profile DIR < key.txt   (read the key from stdin)
  extraction-monitor admin lookup --address 203.0.113.7 --profile DIR

The store is --state, else [store] uri of --config, else the default store of the deployment
the proxy with --profile DIR runs (each deployment has its own; see `proxy --help`).

Prints one JSON line: the key's client id (as the serving layer computes it, with the
deployment's salt: [serving] salt, EXTRACTION_MONITOR_SALT, or the salt file beside the
SQLite database / in the data folder) and, if the store knows the client, its query count,
score and flag. A running server answers the same with POST /monitor/lookup (admin token);
prefer '-' or that endpoint for real keys, which ps would show on a command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monitor.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    lookup = sub.add_parser("lookup", help="the client id of an API key (or an address)")
    lookup.add_argument("key", nargs="?", default=None,
                        help="the API key or bearer token; '-' reads it from standard input")
    lookup.add_argument("--address", default=None, help="look up a peer address instead")
    lookup.add_argument("--state", default=None, metavar="URI",
                        help="state store (default: [store] uri, else the default store of "
                             "the --profile deployment)")
    lookup.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="the profile folder the proxy was started with: its "
                             "deployment's default store (and salt) when neither --state nor "
                             "[store] uri is given")
    lookup.add_argument("--config", type=Path, default=None,
                        help="TOML/JSON file with [serving] and [store] tables")


def run(args: argparse.Namespace) -> int:
    from monitor.commands.inputs import load_settings
    from monitor.environment import Environment, deployment_state_uri, profile_deployment
    from monitor.serving.identity import ClientIdentifier, resolve_salt
    from monitor.stores import open_store
    from monitor.stores.base import StoreUnavailable

    if (args.key is None) == (args.address is None):
        raise CommandError("give KEY (or '-') or --address, not both")
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    if args.key is not None and not key:
        raise CommandError("the key is empty")
    settings = load_settings(args.config)
    env = Environment.read()
    uri = args.state or settings.store.uri
    if uri is None:
        if args.profile is None:
            raise CommandError("name the deployment: --profile DIR (the proxy's profile "
                               "folder), --state URI or [store] uri in --config")
        if not args.profile.is_dir():
            raise CommandError(f"--profile {args.profile}: no such folder")
        uri = deployment_state_uri(profile_deployment(args.profile), env)
    try:
        salt = resolve_salt(uri, settings.serving.salt, env)
        store = open_store(settings.store.replace(uri=uri))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    ident = ClientIdentifier(salt, settings.serving.client_header)
    client_id = ident.hash_key(key) if args.address is None else ident.hash_address(args.address)
    out: dict = {"client_id": client_id}
    try:
        summary = store.summary(client_id)
    except StoreUnavailable as exc:
        raise CommandError(f"the state store is unavailable: {exc}") from None
    finally:
        store.close()
    out["known"] = summary is not None
    if summary is not None:
        out.update(n_queries=summary.n_queries, score=summary.score, flagged=summary.flagged)
    print(json.dumps(out))
    return 0
