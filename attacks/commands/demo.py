"""Run the whole loop on 127.0.0.1: a served victim, benign users and attackers, the verdicts.

Trains a reference victim, fits its profile, serves it over HTTP with the
monitor in front (configured to block a client once it is flagged), then sends
benign clients (random records, one class, noisy, retries, a sorted batch) and
attackers (uniform synthetic queries, Jacobian augmentation, a boundary line
search) through real HTTP requests, and prints the verdict table from the
token-protected admin API. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import warnings

import httpx
import numpy as np

from victims import VICTIMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--victim", choices=VICTIMS, default="cancer-logreg",
                        help="reference victim to serve (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=300,
                        help="queries each simulated client sends (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the simulated traffic")


def _send_benign(base: str, key: str, X: np.ndarray, batch: int = 10) -> int:
    """Send rows in small batches; return how many were answered."""
    answered = 0
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
        for start in range(0, len(X), batch):
            rows = X[start:start + batch]
            if http.post("/predict", json={"instances": rows.tolist()}).status_code != 200:
                break
            answered += len(rows)
    return answered


def _run_attack(run, oracle) -> int:
    """Run an attack until its budget ends or the API refuses it; return answered queries."""
    try:
        run(oracle)
    except httpx.HTTPStatusError:
        pass
    finally:
        oracle.close()
    return oracle.n_queries


def run(args: argparse.Namespace) -> int:
    from attacks import benign
    from attacks.jbda import seed_records
    from attacks.oracle import HttpOracle
    from attacks.synthetic import jbda, line_search, uniform_random
    from monitor import Monitor, Profile
    from monitor.serving.background import serve_in_background
    from monitor.serving.identity import ClientIdentifier
    from monitor.settings import ActionLevel, ServingConfig
    from victims import load_victim
    from victims.app import build_victim_app

    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    n, rng = args.queries, np.random.default_rng(args.seed)
    print(f"training reference victim {args.victim} and fitting its profile ...")
    victim = load_victim(args.victim)
    profile = Profile().fit(victim.model, victim.X_train, victim.y_train,
                            X_cal=victim.X_cal, y_cal=victim.y_cal)
    monitor = Monitor(profile, model=victim.model)
    salt, token = secrets.token_hex(16), secrets.token_urlsafe(16)
    config = ServingConfig(salt=salt, actions=(ActionLevel(action="block"),))
    app = build_victim_app(victim, monitor, config=config, admin_token=token)
    ident = ClientIdentifier(salt)

    benign_clients = {
        "benign-random": benign.random_records(victim, n, rng).X,
        "benign-one-class": benign.one_class_user(victim, n, rng).X,
        "benign-noisy": benign.drifted_records(victim, n, rng).X,
        "benign-retries": benign.duplicate_records(victim, n, rng).X,
        "benign-sorted-batch": benign.sorted_batch(victim, n, rng).X,
    }
    box = (victim.lower, victim.upper)
    attackers = {
        "attack-uniform": lambda o: uniform_random(o, box, n, rng, victim.classes),
        "attack-jacobian": lambda o: jbda(
            o, seed_records(victim.X_public, victim.y_public, 15, rng), box, n, rng,
            victim.classes),
        "attack-line-search": lambda o: line_search(
            o, box, n, rng, victim.classes,
            anchors=victim.X_public[rng.choice(len(victim.X_public), 10, replace=False)]),
    }
    answered: dict[str, int] = {}
    with serve_in_background(app, log_level="error") as base:
        print(f"serving {args.victim} with the monitor on {base} (block on flag)")
        for key, X in benign_clients.items():
            answered[key] = _send_benign(base, key, X)
        for key, attack in attackers.items():
            answered[key] = _run_attack(attack, HttpOracle(f"{base}/predict", key, budget=n))
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as admin:
            verdicts = {key: admin.get(f"/monitor/clients/{ident.hash_key(key)}").json()
                        for key in answered}

    print()
    print(f"{'client':22s} {'answered':>8s} {'flagged':>7s} {'flag_at':>7s} {'score':>6s}")
    print("-" * 56)
    for key, v in verdicts.items():
        flag_at = "-" if v.get("flag_at") is None else str(v["flag_at"])
        print(f"{key:22s} {answered[key]:8d} {v.get('flagged')!s:>7s} {flag_at:>7s} "
              f"{v.get('peak_score', 0.0):6.1f}")
    print("-" * 56)
    print("answered: queries the API answered (a request holding the flagged query is refused "
          "whole)\nwhy:")
    for key, v in verdicts.items():
        print(f"  {key:22s} {v.get('reason', '')}")
    benign_flagged = sum(verdicts[k].get("flagged", False) for k in benign_clients)
    caught = sum(verdicts[k].get("flagged", False) for k in attackers)
    print(f"{caught} of {len(attackers)} attackers flagged and blocked; {benign_flagged} of "
          f"{len(benign_clients)} benign clients flagged; {time.perf_counter() - started:.0f} s")
    return 0 if caught and not benign_flagged else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
