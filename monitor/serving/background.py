"""Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread (demos and tests).

>>> free_port() > 0
True
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_header_options(trusted_proxies=()) -> dict:
    """uvicorn's forwarding options: ``X-Forwarded-For`` rewrites the peer address only for
    the configured trusted proxies, and never by default (uvicorn's own default trusts
    loopback, which let a local client choose its identity).

    >>> proxy_header_options()
    {'proxy_headers': False}
    >>> proxy_header_options(["10.0.0.0/8"])
    {'proxy_headers': True, 'forwarded_allow_ips': '10.0.0.0/8'}
    """
    trusted = [str(t) for t in trusted_proxies]
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)}


@contextlib.contextmanager
def serve_in_background(app, port: int | None = None, log_level: str = "warning",
                        timeout: float = 30.0, trusted_proxies=()) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 while the block runs; yield its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level,
                                           lifespan="auto",
                                           **proxy_header_options(trusted_proxies)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
