"""Helpers for the serving tests: run a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import time

import httpx

from monitor.serving.background import free_port, serve_in_background

__all__ = ["client", "free_port", "running", "wait_for"]


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
