"""The load generator and server handling shared by the served benchmarks.

``drive`` sends pre-encoded HTTP/1.1 requests over ``concurrency`` keep-alive connections
(plain asyncio streams, no HTTP library: the client shares the machine's cores with the
servers it measures, so it should cost as little CPU per request as possible) and returns
throughput and latency percentiles. Every answer must be a 200, or the run fails.

``Server`` starts a command as a subprocess in its own session, waits until it answers,
can wait until its CPU use has gone quiet (shadow observes still running after the last
answer), and stops it by its process group. Not a benchmark itself; run_all.py skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    """Where results go: ``benchmarks/results``, or ``$EXTRACTION_MONITOR_BENCH_RESULTS``
    (run_all.py points it at ``benchmarks/results/quick`` so that quick runs never replace
    the committed full-size figures)."""
    return Path(os.environ.get("EXTRACTION_MONITOR_BENCH_RESULTS")
                or ROOT / "benchmarks" / "results")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def command_line() -> str:
    """This script's command line, relative to the repository (for the results files)."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join([str(script), *sys.argv[1:]])


# --------------------------------------------------------------------------- requests
def post_request(port: int, path: str, payload, key: str,
                 content_type: str = "application/json") -> bytes:
    """One keep-alive ``POST`` with a JSON body and an ``X-API-Key``, as raw bytes."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"X-API-Key: {key}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response: Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # trailers
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    else:
        body, keep = await reader.read(), False
    return status, body, keep


async def _drive(port: int, requests: list[bytes], concurrency: int,
                 duration: float | None) -> dict:
    latencies: list[float] = []
    state = {"next": 0}
    deadline = None if duration is None else time.perf_counter() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                if deadline is None:
                    if state["next"] >= len(requests):
                        return
                elif time.perf_counter() >= deadline:
                    return
                i = state["next"]
                state["next"] += 1
                started = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status, body, keep = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"unexpected status {status}: {body[:300]!r}")
                if not keep:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "rps": len(lat) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean())}


def drive(port: int, requests: list[bytes], concurrency: int,
          duration: float | None = None) -> dict:
    """Send ``requests`` (each once, or cycled for ``duration`` seconds) over
    ``concurrency`` connections: ``{requests, rps, p50_ms, p99_ms, mean_ms}``."""
    return asyncio.run(_drive(port, requests, concurrency, duration))


# --------------------------------------------------------------------------- servers
class Server:
    """A server subprocess on 127.0.0.1:``port``, in its own process group."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict | None = None,
                 ready_path: str = "/openapi.json"):
        self.name, self.cmd, self.port, self.ready_path = name, cmd, port, ready_path
        self.log = tempfile.TemporaryFile()  # never a pipe nobody drains
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.output()[-3000:]}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(f"GET {self.ready_path} HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n".encode())
                    if s.recv(64).startswith(b"HTTP/1.1 "):
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_quiet(self, below: float = 0.05, window: float = 0.3,
                   timeout: float = 60.0) -> float:
        """Wait until the server uses under ``below`` of a core over ``window`` seconds
        (work still running after its last answer, e.g. shadow observes); seconds waited."""
        started = time.perf_counter()
        try:
            last = self.cpu_seconds()
            while time.perf_counter() - started < timeout:
                time.sleep(window)
                now = self.cpu_seconds()
                if now - last < below * window:
                    break
                last = now
        except OSError:  # no /proc: nothing to wait for
            pass
        return max(0.0, time.perf_counter() - started - window)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def start_all(servers: list[Server], timeout: float = 300.0) -> None:
    """Wait for every server (started in parallel); stop them all if one fails."""
    try:
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise


def median_of_rounds(runs: list[dict]) -> dict:
    """Each figure's median over the rounds."""
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def server_env() -> dict:
    """A fixed salt (memory:// and several stores alike) and one BLAS thread."""
    return {"EXTRACTION_MONITOR_SALT": "benchmark-salt", "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def code_state(tree: Path = ROOT) -> dict:
    """The commit measured, and whether monitor/ had uncommitted changes (the servers run
    the work tree's code); of this checkout, or of ``tree``."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "monitor_uncommitted_changes": bool(git("status", "--porcelain", "--", "monitor"))}
