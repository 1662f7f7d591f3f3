"""``ReverseProxy``: an ASGI app forwarding every request to an upstream prediction API.

Bodies are streamed both ways, status codes and headers preserved. Request headers are
forwarded as the client sent them — hop-by-hop headers dropped, nothing added (no
``Accept-Encoding`` or ``User-Agent`` of the HTTP client) — except one standard
``X-Forwarded-For`` entry appended to the client's own (one header). Wrap it in
:class:`~monitor.serving.middleware.ExtractionMonitorMiddleware` to monitor it (see
:func:`build_proxy_app`). An unreachable upstream gives 502, a slow one 504, each with a
JSON message that names no host.
"""

from __future__ import annotations

import logging

import httpx

from monitor.serving.middleware import ExtractionMonitorMiddleware
from monitor.serving.responses import send_error
from monitor.settings import ServingConfig

logger = logging.getLogger("extraction_monitor.serving.proxy")

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host",
})


class ReverseProxy:
    """Forward HTTP requests to ``upstream`` (e.g. ``http://127.0.0.1:8000``).

    >>> ReverseProxy("http://127.0.0.1:9").upstream
    'http://127.0.0.1:9'
    """

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            for name in list(self._client.headers):  # forward the client's headers only
                del self._client.headers[name]
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        url = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = forwarded_headers(scope)

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        method = str(scope["method"])
        has_body = method.upper() not in ("GET", "HEAD", "OPTIONS", "TRACE") or any(
            k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers)
        request = self.client.build_request(method, url, headers=headers,
                                            content=body() if has_body else None)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            logger.warning("upstream %s did not answer within %g s", self.upstream, self.timeout)
            await send_error(send, 504, f"the upstream prediction service did not answer "
                                        f"within {self.timeout:g} s")
            return
        except httpx.HTTPError as exc:
            logger.warning("upstream %s unreachable: %s", self.upstream, exc)
            await send_error(send, 502, "the upstream prediction service is unreachable")
            return
        try:
            out_headers = [(k.lower(), v) for k, v in response.headers.raw
                           if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out_headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

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
