"""Every benchmark in quick mode, one after another (``make bench``; under 10 minutes on 2 cores).

Each script runs as a subprocess of its own (one at a time: they time things), with its
results going to ``benchmarks/results/quick/`` (``$EXTRACTION_MONITOR_BENCH_RESULTS``), so
a quick run never replaces the committed full-size figures in ``benchmarks/results/``. For
each script one line: ok / FAILED, seconds, its last line of output; then the total. A
script fails when it exits non-zero, runs past ``--timeout``, or writes no results file.
Exit status 1 if any failed. Writes ``run_all.{json,md}`` beside the results.

    .venv/bin/python benchmarks/run_all.py                  (make bench)
    .venv/bin/python benchmarks/run_all.py --only serving_latency --only proxy_latency
    .venv/bin/python benchmarks/run_all.py --results benchmarks/results   (replace the figures)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# (script, arguments, the results file it must write, under the results folder)
SCRIPTS = (
    ("per_query_cost.py", ["--quick"], "per_query_cost.json"),
    ("serving_latency.py", ["--quick"], "serving_latency.json"),
    ("instructions_per_request.py", ["--quick"], "instructions_per_request.json"),
    ("proxy_latency.py", ["--quick"], "proxy_latency.json"),
    ("store_latency.py", ["--rounds", "2"], "store_latency.json"),
    ("offline_throughput.py", ["--quick"], "offline_throughput.json"),
    ("profile_threads.py", ["--quick"], "profile_threads.json"),
    ("dask_speedup.py", ["--quick"], "dask_speedup.json"),
    ("state_size.py", ["--quick"], "state_size.json"),
    ("metrics_scrape.py", ["--clients", "2000", "--rounds", "3"], "metrics_scrape.json"),
    ("exposure_fidelity.py", ["--quick"], "exposure_fidelity.json"),
    ("flame_served.py", ["--quick"], "flame_served.svg"),
    ("detection.py", ["--quick", "--out", "{results}/detection"], "detection/summary.md"),
    ("unseen_victims.py", ["--quick", "--out", "{results}"], "unseen_victims.json"),
)


def last_line(text: str, width: int = 110) -> str:
    lines = [line.strip() for line in text.splitlines()
             if any(ch.isalnum() for ch in line)]  # not a closing brace of a JSON dump
    line = lines[-1] if lines else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def run_one(script: str, args: list[str], expected: Path, env: dict, timeout: float,
            log_dir: Path) -> dict:
    cmd = [sys.executable, str(BENCHMARKS / script), *args]
    log_path = log_dir / f"{Path(script).stem}.log"
    started_wall = time.time()
    started = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            status = proc.wait(timeout)
            reason = "" if status == 0 else f"exit status {status}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status, reason = -1, f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    output = log_path.read_text(errors="replace")
    if not reason and not (expected.exists() and expected.stat().st_mtime >= started_wall - 1):
        reason = f"wrote no {expected.name}"
    return {"script": script, "args": args, "seconds": round(seconds, 1), "ok": not reason,
            "reason": reason, "results": str(expected.relative_to(ROOT))
            if expected.is_relative_to(ROOT) else str(expected),
            "last_line": last_line(output), "output_tail": output[-3000:] if reason else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=BENCHMARKS / "results" / "quick",
                        help="results folder (default: benchmarks/results/quick)")
    parser.add_argument("--only", action="append", default=None, metavar="NAME",
                        help="run only this script (repeatable; name without .py)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per script")
    args = parser.parse_args(argv)
    results = args.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EXTRACTION_MONITOR_BENCH_RESULTS": str(results),
           "PYTHONUNBUFFERED": "1"}
    chosen = [s for s in SCRIPTS if (args.only is None or Path(s[0]).stem in args.only)
              and Path(s[0]).stem not in args.skip]
    log_dir = Path(tempfile.mkdtemp(prefix="em-bench-logs-"))
    print(f"{len(chosen)} benchmarks, quick mode, results in {results} (logs in {log_dir}); "
          f"load average {' '.join(loadavg())} on {os.cpu_count()} cores", flush=True)
    runs = []
    started = time.perf_counter()
    for script, script_args, expected in chosen:
        where = os.path.relpath(results, ROOT) if results.is_relative_to(ROOT) else str(results)
        script_args = [a.replace("{results}", where) for a in script_args]
        if script == "flame_served.py" and not (shutil.which("py-spy", path=str(
                Path(sys.executable).parent)) or shutil.which("py-spy")):
            run = {"script": script, "args": script_args, "seconds": 0.0, "ok": False,
                   "reason": "py-spy not installed (pip install -e '.[dev]')", "last_line": ""}
        else:
            run = run_one(script, script_args, results / expected, env, args.timeout, log_dir)
        runs.append(run)
        status = "ok    " if run["ok"] else "FAILED"
        print(f"{status} {run['seconds']:6.1f} s  {script:<22} {run['reason'] or run['last_line']}",
              flush=True)
        if not run["ok"] and run.get("output_tail"):
            print("    " + run["output_tail"][-1500:].replace("\n", "\n    "), flush=True)
    total = time.perf_counter() - started
    failed = [r["script"] for r in runs if not r["ok"]]
    print(f"total {total:.0f} s ({total / 60:.1f} min) for {len(runs)} benchmarks; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all ok"), flush=True)
    summary = {"command": "benchmarks/run_all.py " + " ".join(argv or sys.argv[1:]),
               "total_seconds": round(total, 1), "failed": failed, "runs": runs,
               "loadavg_1_5_15_min": loadavg(), "cpu_count": os.cpu_count()}
    for run in runs:
        run.pop("output_tail", None)
    (results / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# make bench (benchmarks/run_all.py)", "",
             f"Total **{total:.0f} s** ({total / 60:.1f} min), load average at the end "
             f"{' '.join(loadavg())} on {os.cpu_count()} cores.", "",
             "| script | arguments | seconds | status | last line |", "|---|---|---|---|---|"]
    lines += [f"| {r['script']} | `{' '.join(r['args'])}` | {r['seconds']:.1f} | "
              f"{'ok' if r['ok'] else 'FAILED: ' + r['reason']} | "
              f"{r['last_line'].replace('|', '/')} |" for r in runs]
    (results / "run_all.md").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


def loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
