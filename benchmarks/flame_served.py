"""A flame graph of a monitored `extraction-monitor serve` process under load (py-spy).

Starts ``extraction-monitor serve --victim V --state sqlite:///TMP/state.db`` (the default
store kind of ``serve``), warms it up, then keeps the load generator of serving_latency.py
(benchmarks/loadgen.py: 1-row ``{"instances": ...}`` bodies, 50 API keys, 8 connections)
running while ``py-spy record`` samples the server three times, ``--duration`` s each:

* as a flame graph  -> benchmarks/results/flame_served.svg
* as collapsed stacks (``--format raw``), aggregated here into the top functions by own
  and by inclusive time, and own time by package -> benchmarks/results/flame_served.md
* as collapsed stacks of the GIL holder only (``--gil``): the top functions by own time
  (one Python process: the GIL bounds its throughput) -> the same .md

py-spy attaches to the running server (``--pid``; needs ptrace, which root has here). Where
attaching is refused, the server is started as py-spy's child instead (``py-spy record --
python -m monitor.cli serve ...``, no attach needed): its start-up (profile fitting) is then
in the samples too, and the summary says so. Idle threads are not sampled (py-spy's
default), so the figures are shares of busy time. Needs py-spy (the ``dev`` extra).

    .venv/bin/python benchmarks/flame_served.py              (30 s per recording)
    .venv/bin/python benchmarks/flame_served.py --quick      (8 s per recording)
Writes benchmarks/results/flame_served.{svg,md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from loadgen import (
    ROOT,
    Server,
    code_state,
    command_line,
    drive,
    free_port,
    loadavg,
    post_request,
    results_dir,
    server_env,
)

PACKAGES = (  # own time by package: the first pattern a leaf frame's file matches
    ("monitor (the product)", r"(^|/)monitor/"),
    ("victims (the served app)", r"(^|/)victims/"),
    ("scikit-learn", r"sklearn/"), ("numpy / scipy", r"(numpy|scipy)/"),
    ("uvicorn / h11 / httptools", r"(uvicorn|h11|httptools)/"),
    ("fastapi / starlette", r"(fastapi|starlette)/"), ("anyio", r"anyio/"),
    ("asyncio", r"asyncio/"), ("json", r"json/"), ("sqlite3", r"sqlite3/"),
    ("threadpoolctl", r"threadpoolctl"), ("pydantic", r"pydantic"),
)


WAITING = re.compile(  # leaf frames of threads that wait (py-spy counts some as busy)
    r"^(Condition\.wait|Event\.wait|Queue\.get|.*Selector\.select|select|sleep) ")
SCAFFOLD = re.compile(  # frames under every stack of their thread: left out of "inclusive"
    r"\((threading\.py|<frozen runpy>|asyncio/(base_events|events|runners)\.py|"
    r"uvicorn/(main|server|_compat)\.py|monitor/cli\.py|monitor/commands/server\.py|"
    r"victims/commands/serve\.py|monitor/serving/launch\.py|anyio/_backends/_asyncio\.py)\)$|"
    r"^<module> ")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy "
                         "(it is in the dev extra)")
    return found


def can_attach(spy: str, pid: int) -> bool:
    done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                          check=False)
    return done.returncode == 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def parse_collapsed(text: str) -> Counter:
    """``frame;frame;... count`` lines (py-spy ``--format raw``) -> Counter of stacks."""
    stacks: Counter = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def frame_file(frame: str) -> str:
    match = re.search(r"\(([^()]*)\)\s*$", frame)
    return match.group(1) if match else ""


def summarise(stacks: Counter, top: int = 15) -> dict:
    """Waiting samples (a wait leaf frame) apart; over the busy ones, the top functions by
    own (leaf) and inclusive samples (thread scaffolding left out), and own by package.

    >>> s = summarise(parse_collapsed("a (x.py);b (monitor/m.py) 3\\na (x.py) 1\\n"
    ...                               "t (threading.py);Condition.wait (threading.py) 5"))
    >>> s["total"], s["waiting"], s["busy"], s["own"][0], s["inclusive"][0]
    (9, 5, 4, ('b (monitor/m.py)', 3), ('a (x.py)', 4))
    """
    own: Counter = Counter()
    inclusive: Counter = Counter()
    packages: Counter = Counter()
    waiting = 0
    for stack, n in stacks.items():
        if WAITING.match(stack[-1]):
            waiting += n
            continue
        own[stack[-1]] += n
        for frame in set(stack):
            if not SCAFFOLD.search(frame):
                inclusive[frame] += n
        leaf_file = frame_file(stack[-1])
        packages[next((name for name, pattern in PACKAGES if re.search(pattern, leaf_file)),
                      "other")] += n
    total = sum(stacks.values())
    return {"total": total, "waiting": waiting, "busy": total - waiting,
            "own": own.most_common(top), "inclusive": inclusive.most_common(top),
            "packages": packages.most_common()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits-mlp")
    parser.add_argument("--quick", action="store_true", help="8 s per recording")
    parser.add_argument("--duration", type=int, default=None, help="seconds per recording")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    duration = args.duration or (8 if args.quick else 30)
    spy = py_spy()
    out = Path(tempfile.mkdtemp(prefix="em-flame-")) if args.no_write else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    svg, md = out / "flame_served.svg", out / "flame_served.md"

    from victims import load_victim

    victim = load_victim(args.victim)
    rng = np.random.default_rng(0)
    rows = victim.X_public[rng.integers(0, len(victim.X_public), 5000)]
    tmp = Path(tempfile.mkdtemp(prefix="em-flame-bench-"))
    port = free_port()
    serve = [sys.executable, "-m", "monitor.cli", "serve", "--victim", args.victim, "--port",
             str(port), "--state", f"sqlite://{tmp}/state.db", "--log-level", "error",
             "--quiet"]
    requests = [post_request(port, "/predict", {"instances": [r.tolist()]},
                             f"client-{i % args.clients}") for i, r in enumerate(rows)]
    common = ["--rate", str(args.rate), "--nolineno"]
    recordings = (("flamegraph", svg, []), ("raw", tmp / "stacks.txt", []),
                  ("raw", tmp / "gil.txt", ["--gil"]))
    server = Server("serve", serve, port, env=server_env())
    mode = "attach"
    load: dict = {}
    try:
        server.wait_ready()
        drive(port, requests[:500], args.concurrency)  # warm-up
        if not can_attach(spy, server.proc.pid):
            server.stop()
            mode = "child"
        for fmt, path, extra in recordings:
            label = path.stem if fmt == "raw" else "flamegraph"
            if mode == "attach":
                cmd = [spy, "record", "--pid", str(server.proc.pid), "--duration",
                       str(duration), "--format", fmt, "-o", str(path), *common, *extra]
                spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
                time.sleep(0.5)  # py-spy attached before the load starts
                load[label] = drive(port, requests, args.concurrency, duration=duration + 1)
                _, err = spy_proc.communicate(timeout=duration + 60)
            else:  # py-spy's child: start-up included; stop the server to end the record
                cmd = [spy, "record", "--format", fmt, "-o", str(path), *common, *extra, "--",
                       *serve]
                wrapped = Server("py-spy serve", cmd, port, env=server_env())
                try:
                    wrapped.wait_ready()
                    load[label] = drive(port, requests, args.concurrency, duration=duration)
                    for child in children(wrapped.proc.pid):
                        os.kill(child, signal.SIGTERM)
                    wrapped.proc.wait(60)
                    err = wrapped.output()
                finally:
                    wrapped.stop()
            if not path.exists():
                raise SystemExit(f"py-spy wrote no {fmt} output ({' '.join(cmd)}): {err}")
    finally:
        server.stop()
    summary = summarise(parse_collapsed((tmp / "stacks.txt").read_text()))
    gil = summarise(parse_collapsed((tmp / "gil.txt").read_text()))
    shutil.rmtree(tmp, ignore_errors=True)
    busy, gil_busy = summary["busy"], gil["busy"]
    result = {"command": command_line(), "code": code_state(), "victim": args.victim,
              "mode": mode, "duration_s_per_recording": duration, "rate_hz": args.rate,
              "samples": summary["total"], "waiting_samples": summary["waiting"],
              "busy_samples": busy, "load": load, "top_own": summary["own"],
              "top_inclusive": summary["inclusive"], "own_by_package": summary["packages"],
              "gil_samples": gil_busy, "gil_top_own": gil["own"],
              "gil_own_by_package": gil["packages"],
              "loadavg_1_5_15_min": loadavg(), "cpu_count": os.cpu_count()}
    lines = [
        "# Where a monitored `serve` spends its time under load (py-spy)", "",
        f"Command: `.venv/bin/python {result['command']}`. Flame graph: `{svg.name}` "
        f"(every non-idle thread; open it in a browser, it is searchable).", "",
        f"`serve --victim {args.victim} --state sqlite:///...` under the serving_latency load "
        f"(1-row `instances` bodies, {args.clients} API keys, {args.concurrency} connections): "
        f"{load['stacks']['rps']:,.0f} rps, p50 {load['stacks']['p50_ms']:.1f} ms during the "
        f"collapsed-stack recording. py-spy {mode}ed"
        + (" (the server was started as py-spy's child: its start-up, profile fitting, is "
           "in the samples)" if mode == "child" else " to the running server after warm-up")
        + f", {args.rate} Hz, {duration} s per recording. Load average "
        f"{' '.join(loadavg())} on {os.cpu_count()} cores; code {result['code']}.", "",
        f"Samples of non-idle threads: {summary['total']:,}, of which {summary['waiting']:,} "
        f"are threads parked in a wait (`Condition.wait`, `Queue.get`, `select`: the anyio "
        f"worker pool and the event loop between requests) and left out below: "
        f"**{busy:,} busy samples = 100%**. A busy sample can still be a wait inside C "
        f"(e.g. `SQLiteStore._begin` is `BEGIN IMMEDIATE` waiting for SQLite's write lock "
        f"while another thread writes). The last table is a separate recording with "
        f"`--gil` (only the thread holding the GIL: {gil_busy:,} samples): the server is one "
        f"Python process, so that is what bounds its throughput.", "",
        "## Own time by package (the leaf frame's file)", "", "| package | samples | share |",
        "|---|---|---|"]
    lines += [f"| {name} | {n:,} | {100 * n / busy:.1f}% |" for name, n in summary["packages"]]
    for title, key, source, total in (
            ("own time (leaf frame)", "own", summary, busy),
            ("inclusive time (anywhere on the stack; thread and event-loop scaffolding left "
             "out)", "inclusive", summary, busy),
            ("own time while holding the GIL (`--gil`)", "own", gil, gil_busy)):
        lines += ["", f"## Top 15 functions by {title}", "", "| # | function (file) | samples |"
                  " share |", "|---|---|---|---|"]
        lines += [f"| {i} | `{frame}` | {n:,} | {100 * n / total:.1f}% |"
                  for i, (frame, n) in enumerate(source[key], 1)]
    md.write_text("\n".join(lines) + "\n")
    (out / "flame_served.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))
    shown = [os.path.relpath(f, ROOT) if f.is_relative_to(ROOT) else str(f) for f in (svg, md)]
    print(f"\nwrote {shown[0]} and {shown[1]}")
    return result


if __name__ == "__main__":
    main()
