"""``ReverseProxy``: an ASGI app forwarding every request to an upstream prediction API.

Bodies are streamed both ways, status codes and headers preserved. Request headers are
forwarded as the client sent them — hop-by-hop headers dropped, nothing added (no
``Accept-Encoding`` or ``User-Agent`` of the HTTP client) — except one standard
``X-Forwarded-For`` entry appended to the client's own (one header). Wrap it in
:class:`~monitor.serving.middleware.ExtractionMonitorMiddleware` to monitor it (see
:func:`build_proxy_app`). An unreachable upstream gives 502, a slow one 504, each with a
JSON message that names no host.

The upstream is reached through one pooled keep-alive :class:`aiohttp.ClientSession` per
worker (no per-request client, DNS lookup or TLS handshake once a connection is open):
forwarding a small request costs about a fifth of the CPU that ``httpx.AsyncClient`` took
(``benchmarks/proxy_latency.py``). Bodies are forwarded as sent: no decompression, no
re-encoding, the path and query byte for byte.
"""

from __future__ import annotations

import logging

import aiohttp
from yarl import URL

from monitor.serving.middleware import ExtractionMonitorMiddleware
from monitor.serving.responses import send_error
from monitor.settings import ServingConfig

logger = logging.getLogger("extraction_monitor.serving.proxy")

_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
"""Headers aiohttp would add on its own; the proxy sends only what the client sent."""

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host",
})


class ReverseProxy:
    """Forward HTTP requests to ``upstream`` (e.g. ``http://127.0.0.1:8000``).

    >>> ReverseProxy("http://127.0.0.1:9").upstream
    'http://127.0.0.1:9'
    """

    def __init__(self, upstream: str, timeout: float = 30.0, max_connections: int = 100
                 ) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.timeout = timeout
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session (made on first use, inside the server's event loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections,
                                               ttl_dns_cache=300),
                # like a per-operation timeout: connecting, then each read; a long
                # streamed answer that keeps coming is not cut off
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                              sock_read=self.timeout),
                # no cookie jar: one client's Set-Cookie must never ride on another's request
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # forward the upstream's bytes as they are
                skip_auto_headers=_AUTO_HEADERS)  # forward the client's headers only
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        target = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in forwarded_headers(scope)]

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        method = str(scope["method"])
        has_body = method.upper() not in ("GET", "HEAD", "OPTIONS", "TRACE") or any(
            k.lower() in (b"content-length", b"transfer-encoding")  # as the client sent them
            for k, _ in scope.get("headers", []))
        try:
            response = await self.session.request(
                method, URL(target, encoded=True), headers=headers,
                data=body() if has_body else None, allow_redirects=False)
        except TimeoutError:  # aiohttp's ServerTimeoutError is one too
            logger.warning("upstream %s did not answer within %g s", self.upstream, self.timeout)
            await send_error(send, 504, f"the upstream prediction service did not answer "
                                        f"within {self.timeout:g} s")
            return
        except (aiohttp.ClientError, OSError) as exc:
            logger.warning("upstream %s unreachable: %s", self.upstream, exc)
            await send_error(send, 502, "the upstream prediction service is unreachable")
            return
        try:
            out_headers = [(k.lower(), v) for k, v in response.raw_headers
                           if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status,
                        "headers": out_headers})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.release()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def forwarded_headers(scope) -> list[tuple[bytes, bytes]]:
    """The request headers to forward: as sent, hop-by-hop ones dropped, and the peer
    appended to the client's ``X-Forwarded-For`` (one header, one entry added).

    >>> forwarded_headers({"headers": [(b"x-forwarded-for", b"1.2.3.4"), (b"te", b"x"),
    ...                                (b"Accept", b"*/*")], "client": ("10.0.0.1", 5)})
    [(b'Accept', b'*/*'), (b'x-forwarded-for', b'1.2.3.4, 10.0.0.1')]
    """
    headers, chain = [], []
    for name, value in scope.get("headers", []):
        low = name.lower()
        if low == b"x-forwarded-for":
            chain.append(value.strip())
        elif low not in HOP_BY_HOP:
            headers.append((name, value))
    client = scope.get("client")
    if client:
        chain.append(client[0].encode())
    if chain:
        headers.append((b"x-forwarded-for", b", ".join(c for c in chain if c)))
    return headers


def build_proxy_app(upstream: str, monitor, config: ServingConfig | None = None,
                    admin_token: str | None = None, timeout: float = 30.0, **options):
    """A monitored reverse proxy: ``ExtractionMonitorMiddleware(ReverseProxy(upstream))``."""
    return ExtractionMonitorMiddleware(ReverseProxy(upstream, timeout), monitor=monitor,
                                       config=config, admin_token=admin_token, **options)
