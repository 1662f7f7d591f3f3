"""Watched routes: which requests the monitor reads, matched on a normalised path.

A route is a path (``/invocations``), a glob (``*`` matches within one path segment, ``**``
across segments) or a pattern with ``{param}`` placeholders (one segment each, e.g.
``/v1/models/{name}:predict``). Matching is case-insensitive and runs on the path as
:func:`normalise_path` rewrites it — percent-decoded until stable, duplicate slashes
collapsed, ``.`` and ``..`` segments resolved, a trailing slash dropped — so no spelling of a
watched path an upstream server would still route to its model slips past unread.

>>> table = RouteTable(["/v1/models/{name}:predict", "/predict", "/api/**/score"])
>>> [table.match(p) for p in ["/v1/models/iris:predict", "//PREDICT/", "/pred%69ct",
...                           "/api/a/b/score", "/v1/models/a/b:predict", "/other"]]
['/v1/models/{name}:predict', '/predict', '/predict', '/api/**/score', None, None]
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from urllib.parse import unquote

from monitor.settings import DEFAULT_ROUTES

SERVERS = {
    "/invocations": "MLflow",
    "/v1/models/{name}:predict": "KServe v1 / TF Serving",
    "/v1/models/{name}/versions/{version}:predict": "TF Serving",
    "/v1/models/{name}/labels/{label}:predict": "TF Serving",
    "/v2/models/{name}/infer": "KServe v2 / Open Inference Protocol",
    "/v2/models/{name}/versions/{version}/infer": "KServe v2 / Open Inference Protocol",
    "/predictions/{name}": "TorchServe",
    "/predictions/{name}/{version}": "TorchServe",
    "/predict": "plain JSON",
}
"""Which server each default route is for (startup banner)."""

PATHS_CACHED = 1024
_TOKEN = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}|\*\*|\*")


@lru_cache(maxsize=PATHS_CACHED)
def normalise_path(path: str) -> str:
    """The path an upstream could route a request to, in one canonical spelling (the last
    ``PATHS_CACHED`` paths are kept: clients send a handful).

    >>> normalise_path("/a//b/./c/../d/%2570redict/")
    '/a/b/d/predict'
    """
    for _ in range(4):  # %2570 -> %70 -> p: decode until nothing changes
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = "/" + path.replace("\\", "/").lstrip("/")
    path = posixpath.normpath(path)
    if path.startswith("//"):  # posixpath keeps a leading double slash
        path = "/" + path.lstrip("/")
    return path.lower()


def compile_route(route: str) -> re.Pattern:
    """A case-insensitive regular expression for one route pattern."""
    if not route.startswith("/"):
        raise ValueError(f"route {route!r} must start with '/'")
    parts, last = [], 0
    for m in _TOKEN.finditer(route):
        parts.append(re.escape(route[last:m.start()]))
        token = m.group()
        parts.append(".*" if token == "**" else "[^/]*" if token == "*" else "[^/]+")
        last = m.end()
    parts.append(re.escape(route[last:]))
    literal = normalise_path(route) if not _TOKEN.search(route) else None
    if literal is not None:
        return re.compile(re.escape(literal), re.IGNORECASE)
    return re.compile("".join(parts).rstrip("/") or "/", re.IGNORECASE)


class RouteTable:
    """The watched routes of one app; :meth:`match` gives the route a path falls under."""

    def __init__(self, routes=DEFAULT_ROUTES) -> None:
        self.routes = tuple(routes)
        self._compiled = [(r, compile_route(r)) for r in self.routes]
        self._matched: dict[str, str | None] = {}

    def match(self, path: str) -> str | None:
        """The first watched route ``path`` (raw or normalised) falls under, else ``None``."""
        try:
            return self._matched[path]
        except KeyError:
            pass
        normalised = normalise_path(path)
        route = next((route for route, pattern in self._compiled
                      if pattern.fullmatch(normalised)), None)
        if len(self._matched) >= PATHS_CACHED:  # bounded: paths are the client's to choose
            self._matched.clear()
        self._matched[path] = route
        return route

    def banner(self, formats: list[str]) -> list[str]:
        """One line per watched route and the request formats read there."""
        fmt = ", ".join(formats)
        return [f"watching {route}" + (f" ({SERVERS[route]})" if route in SERVERS else "")
                + f": formats {fmt}" for route in self.routes]


__all__ = ["SERVERS", "RouteTable", "compile_route", "normalise_path"]
