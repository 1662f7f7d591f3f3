"""``ReverseProxy``: an ASGI app forwarding every request to an upstream prediction API.

Bodies are streamed both ways, status codes and headers preserved (hop-by-hop headers
dropped); wrap it in :class:`~monitor.serving.middleware.ExtractionMonitorMiddleware` to
monitor it (see :func:`build_proxy_app`). An unreachable upstream gives 502, a slow one 504,
each with a JSON message.
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
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in HOP_BY_HOP]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", client[0].encode()))

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS")
        request = self.client.build_request(scope["method"], url, headers=headers,
                                            content=body() if has_body else None)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            await send_error(send, 504, f"upstream {self.upstream} did not answer within "
                                        f"{self.timeout:g} s")
            return
        except httpx.HTTPError as exc:
            logger.warning("upstream %s unreachable: %s", self.upstream, exc)
            await send_error(send, 502, f"upstream {self.upstream} is unreachable "
                                        f"({type(exc).__name__}); is it running?")
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


def build_proxy_app(upstream: str, monitor, config: ServingConfig | None = None,
                    admin_token: str | None = None, timeout: float = 30.0):
    """A monitored reverse proxy: ``ExtractionMonitorMiddleware(ReverseProxy(upstream))``."""
    return ExtractionMonitorMiddleware(ReverseProxy(upstream, timeout), monitor=monitor,
                                       config=config, admin_token=admin_token)
