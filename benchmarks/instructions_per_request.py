"""Instructions per monitored request against the plain one, counted by callgrind.

Wall-clock and CPU-time ratios on a shared or virtual machine move by tens of percent
between runs (this repository's VM has moved the same plain server from 468 to 2,057 rps
between sessions). Instruction counts do not: valgrind's callgrind counts the instructions
a process executes, the same to within 0.1% for the same code and inputs, whatever else
the machine does. So this is the figure to compare two versions of the served path by.

Each variant runs in a process of its own under ``valgrind --tool=callgrind``, driving
the reference victim's served app (``victims.app.build_victim_app``: the same middleware
stack as ``serve``, called as an ASGI app in process, without sockets or uvicorn) with
one-row ``POST /predict`` requests from 50 API keys. Instrumentation is switched on
(``callgrind_control -i on``) only after the warm-up requests, so start-up and first-call
costs are not counted. Reported: instructions per request for each variant, the
instructions the monitor adds (variant minus plain), and plain/variant, which is the
throughput ratio one CPU-bound worker would reach if every instruction cost the same
(it ignores cache misses and the kernel's network work, both of which the plain request
pays too).

``--anchor TREE`` also counts each variant with another checkout's ``monitor/`` (a git
worktree at an older commit, say), in the same run, so a change's effect is measured side
by side; the plain request is counted in both trees.

    .venv/bin/python benchmarks/instructions_per_request.py
    .venv/bin/python benchmarks/instructions_per_request.py --anchor /work/wt-head
    .venv/bin/python benchmarks/instructions_per_request.py --quick --no-write

Needs valgrind (Debian: ``apt-get install valgrind``). About a minute per variant, two
at a time on two cores; most of it is start-up under valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from loadgen import code_state, command_line, loadavg  # noqa: E402
from offline_throughput import write_results  # noqa: E402

VARIANTS = ("plain", "memory", "sqlite")
CLIENTS = 50


# ------------------------------------------------------------------ the driver (in valgrind)
def drive(tree: Path, variant: str, victim_name: str, requests: int, warm_up: int,
          state_dir: Path) -> None:
    """Run inside valgrind: warm up, switch instrumentation on, send ``requests``, off."""
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    from monitor.stores.uri import open_store
    from victims.app import build_victim_app, build_victim_monitor
    from victims.registry import load_victim

    victim = load_victim(victim_name)
    if variant == "plain":
        app = build_victim_app(victim)
    else:
        store = "memory://" if variant == "memory" else f"sqlite:///{state_dir}/state.db"
        app = build_victim_app(victim, build_victim_monitor(victim, store=open_store(store)))
    rows = victim.X_public
    bodies = [json.dumps({"instances": [rows[i % len(rows)].tolist()]}).encode()
              for i in range(400)]

    async def one(i: int) -> None:
        body = bodies[i % len(bodies)]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/predict",
                 "raw_path": b"/predict", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode()),
                             (b"x-api-key", f"client-{i % CLIENTS}".encode())],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}}
        received = False
        status: list[int] = []

        async def receive() -> dict:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            return {}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"request {i} answered {status}")

    def instrument(on: bool) -> None:
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                       check=True, stdout=subprocess.DEVNULL)

    async def run() -> None:
        for i in range(warm_up):
            await one(i)
        instrument(True)
        for i in range(warm_up, warm_up + requests):
            await one(i)
        instrument(False)

    asyncio.run(run())


# ------------------------------------------------------------------ counting
def count(tree: Path, variant: str, victim: str, requests: int, warm_up: int) -> float:
    """Instructions per request of one variant (one valgrind process)."""
    tmp = Path(tempfile.mkdtemp(prefix="em-ir-"))
    out = tmp / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
           f"--callgrind-out-file={out}", sys.executable, str(Path(__file__).resolve()),
           "--driver", "--tree", str(tree), "--variant", variant, "--victim", victim,
           "--requests", str(requests), "--warm-up", str(warm_up), "--state-dir", str(tmp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{variant} ({tree}) failed: {done.stderr[-1500:]}")
        return instructions(out) / requests
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def instructions(out: Path) -> int:
    """The instruction total of a callgrind output file (its ``totals:`` line; the
    ``summary:`` line above it is written when the run starts, uninstrumented, as 0)."""
    text = out.read_text(errors="replace")
    found = re.search(r"^totals:\s*(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(found.group(1))


def table(per_request: dict[str, dict[str, float]], trees: list[str]) -> list[str]:
    lines = ["| code | variant | M instructions / request | added by the monitor (M) | "
             "plain / variant |", "|---|---|---|---|---|"]
    for tree in trees:
        plain = per_request[tree]["plain"]
        for variant, ir in per_request[tree].items():
            added = "-" if variant == "plain" else f"{(ir - plain) / 1e6:.3f}"
            lines.append(f"| {tree} | {variant} | {ir / 1e6:.3f} | {added} | "
                         f"{plain / ir:.2f}x |")
    if len(trees) == 2:
        lines.append("")
        for variant in per_request[trees[0]]:
            if variant == "plain":
                continue
            ours, theirs = (per_request[t][variant] - per_request[t]["plain"] for t in trees)
            lines.append(f"- {variant}: the monitor adds {ours / 1e6:.3f}M here against "
                         f"{theirs / 1e6:.3f}M in the anchor ({ours / theirs - 1:+.1%})")
    return lines


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits-mlp")
    parser.add_argument("--variant", action="append", choices=VARIANTS, default=None,
                        help="repeatable; default: plain, memory and sqlite")
    parser.add_argument("--requests", type=int, default=None,
                        help="counted requests per variant (default 200; --quick 50)")
    parser.add_argument("--warm-up", type=int, default=100)
    parser.add_argument("--anchor", type=Path, default=None,
                        help="another checkout to count beside this one")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    requests = args.requests or (50 if args.quick else 200)
    if args.driver:
        drive(args.tree, args.variant[0], args.victim, requests, args.warm_up, args.state_dir)
        return None
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: install valgrind (Debian: apt-get install valgrind)")
    variants = list(dict.fromkeys(["plain", *(args.variant or VARIANTS)]))
    trees = {"this checkout": ROOT}
    if args.anchor is not None:
        if not (args.anchor / "monitor").is_dir():
            sys.exit(f"--anchor {args.anchor}: no monitor/ there")
        trees[f"anchor {args.anchor}"] = args.anchor.resolve()
    jobs = [(name, tree, v) for name, tree in trees.items() for v in variants]
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        counted = list(pool.map(
            lambda job: count(job[1], job[2], args.victim, requests, args.warm_up), jobs))
    per_request: dict[str, dict[str, float]] = {name: {} for name in trees}
    for (name, _, variant), ir in zip(jobs, counted, strict=True):
        per_request[name][variant] = ir
        print(f"{name:<40} {variant:<7} {ir / 1e6:8.3f} M instructions / request", flush=True)
    lines = table(per_request, list(trees))
    print("\n".join(lines))
    result = {
        "command": command_line(), "victim": args.victim, "requests_counted": requests,
        "warm_up_requests": args.warm_up, "clients": CLIENTS, "rows_per_request": 1,
        "trees": {name: str(tree) for name, tree in trees.items()},
        "code": {name: code_state(tree) for name, tree in trees.items()},
        "instructions_per_request": per_request,
        "added_by_monitor": {name: {v: ir - runs["plain"] for v, ir in runs.items()
                                    if v != "plain"} for name, runs in per_request.items()},
        "plain_over_variant": {name: {v: runs["plain"] / ir for v, ir in runs.items()}
                               for name, runs in per_request.items()},
        "loadavg_end": loadavg(),
    }
    if not args.no_write:
        write_results("instructions_per_request", result, lines)
    return result


if __name__ == "__main__":
    main()
