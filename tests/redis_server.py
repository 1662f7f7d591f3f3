"""A real ``redis-server`` for tests: free port on 127.0.0.1, data in a temp dir, AOF on.

Use the fixture factory in a test module::

    from redis_server import redis_server_fixture
    redis_server = redis_server_fixture()          # function scope; "module" also works

    def test_x(redis_server):
        store = open_store(redis_server.url)
        redis_server.stop(); redis_server.start()   # same port, same data (append-only file)

Tests skip with a clear reason only when no ``redis-server`` binary exists.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_BINARY = shutil.which("redis-server")
SKIP_REASON = ("redis-server binary not found: install the Debian package 'redis-server' "
               "(.ci/run does) to run the Redis store tests")
requires_redis = pytest.mark.skipif(REDIS_BINARY is None, reason=SKIP_REASON)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``stop()``/``start()`` keep the port and the data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if REDIS_BINARY is None:
            pytest.skip(SKIP_REASON)
        self.process = subprocess.Popen(
            [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--protected-mode", "no",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log")
                tail = log.read_text()[-500:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {tail}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM; the append-only file keeps the data)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def redis_server_fixture(scope: str = "function"):
    """A pytest fixture yielding a started :class:`RedisServer`, stopped afterwards."""

    @pytest.fixture(scope=scope)
    def redis_server(tmp_path_factory):
        if REDIS_BINARY is None:
            pytest.skip(SKIP_REASON)
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
        try:
            yield server
        finally:
            server.stop()

    return redis_server
