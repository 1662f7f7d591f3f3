"""Helpers for the serving tests: run a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from monitor.serving.background import free_port, serve_in_background

__all__ = ["client", "free_port", "running", "serve_process", "wait_for"]


def running(app, port: int | None = None):
    """Serve ``app`` on 127.0.0.1 in a background thread; yield its base URL."""
    return serve_in_background(app, port, timeout=20)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def client(base: str, key: str | None = None) -> httpx.Client:
    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=30)


@contextlib.contextmanager
def serve_process(args: list[str], token: str, salt: str, startup_timeout: float = 150.0,
                  config: str | None = None, workdir: Path | None = None):
    """``extraction-monitor ARGS --port P`` as a subprocess (its own session); yields an
    httpx client to it with the admin token, once ``/monitor/clients`` answers."""
    port = free_port()
    env = {**os.environ, "EXTRACTION_MONITOR_SALT": salt,
           "EXTRACTION_MONITOR_ADMIN_TOKEN": token}
    extra = []
    scratch = None
    if config is not None:
        if workdir is None:  # never leave the config behind in the current folder
            scratch = tempfile.TemporaryDirectory(prefix="serve-config-")
            workdir = Path(scratch.name)
        path = Path(workdir) / f"serve-{port}.toml"
        path.write_text(config)
        extra = ["--config", str(path)]
    log = tempfile.TemporaryFile()  # never a pipe nobody drains
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", *args, "--port", str(port), "--log-level",
         "warning", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                     headers={"Authorization": f"Bearer {token}"})
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{args[0]} exited with {proc.returncode}: "
                                   f"{log.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if c.get("/monitor/clients").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not answer within the startup timeout")
            time.sleep(0.3)
        yield c
    finally:
        c.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
        if scratch is not None:
            scratch.cleanup()


def raw_request(base: str, method: str, path: str, body: bytes,
                headers: list[tuple[str, str]] = ()) -> int:
    """Send one HTTP/1.1 request exactly as written — method case, path spelling — over a
    socket (HTTP clients normalise both); return the status code."""
    import socket

    host, port = base.split("//")[1].split(":")
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close", *[f"{k}: {v}" for k, v in headers]]
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])
