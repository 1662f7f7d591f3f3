"""The admin API (``/monitor/...``, token required).

* ``GET /monitor/clients?offset=0&limit=50&sort=-score&flagged=true`` — one page of clients,
  read from the store's index (``sort``: ``score``, ``-score``, ``n_queries``,
  ``-n_queries``, ``client_id``); only the page's records are decoded;
* ``GET /monitor/clients/{id}`` — the verdict, per-detector scores and recent score history;
* ``POST /monitor/clients/{id}/reset`` — forget the client (monitor state, flag, throttle);
* ``GET /monitor/clients/{id}/state`` — the client's stored state record
  (``application/octet-stream``; :func:`monitor.stores.decode_state` reads it);
* ``DELETE /monitor/clients/{id}`` — delete the client's state (retention requests);
* ``POST /monitor/lookup`` with ``{"key": "<API key>"}`` (or ``{"address": "<ip>"}``) — the
  client id of a key and, if known, its verdict (the key travels in the body, never in a
  URL that logs would keep);
* ``GET /monitor/alerts?limit=100`` — recent flag alerts and their webhook delivery status;
* ``GET /monitor/metrics`` — Prometheus text, O(1) in the number of clients (token required
  unless ``[serving] metrics_require_token = false``);
* ``GET /monitor/health`` — ``{"status": "ok"}`` (200) or ``{"status": "degraded", ...}``
  (503) while state store writes fail; open, for load balancers; names no host.

The token comes from ``EXTRACTION_MONITOR_ADMIN_TOKEN`` (or ``--admin-token-file``) and is
sent as ``Authorization: Bearer <token>``. No token configured: the admin routes answer
404. With a shared state store every worker answers from the store, so any worker gives
the same answers and a reset or delete made through one holds for all. An unreachable
store answers 503 with a generic message.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio.to_thread

from monitor.monitor import GROUP_PREFIX
from monitor.serving.responses import send_bytes, send_error, send_json
from monitor.stores.base import SORTS, StoreUnavailable, StoreWriteError

logger = logging.getLogger("extraction_monitor.serving")

PREFIX = "/monitor/"
MAX_LOOKUP_BYTES = 16_384


class AdminAPI:
    """ASGI handler of the admin routes, built from what it administers.

    ``monitor`` answers verdicts, exports and resets (its store answers listings and
    counts); ``policy`` forgets a reset client's throttle; ``alerter`` lists recent alerts;
    ``metrics`` renders ``/monitor/metrics``; ``identifier`` maps keys to client ids;
    ``health`` says whether the store takes writes; ``flags`` is the worker's flag cache.

    >>> AdminAPI(monitor=None, policy=None, alerter=None, metrics=None,
    ...          token=None).handles("/monitor/clients")
    True
    """

    def __init__(self, monitor, policy, alerter, metrics, token: str | None,
                 metrics_require_token: bool = True, identifier=None, health=None,
                 flags=None) -> None:
        self.monitor = monitor
        self.policy = policy
        self.alerter = alerter
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.metrics_require_token = metrics_require_token
        self.identifier = identifier
        self.health = health
        self.flags = flags

    def handles(self, path: str) -> bool:
        return path.startswith(PREFIX) or path == PREFIX.rstrip("/")

    def _authorised(self, scope) -> bool:
        auth = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        if len(auth) != 1 or self.token is None:
            return False
        given = auth[0][7:].strip() if auth[0][:7].lower() == b"bearer " else b""
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope, receive, send) -> None:
        path = re.sub("/+", "/", scope["path"]).rstrip("/")
        path = PREFIX + path[len(PREFIX):] if path.lower().startswith(PREFIX) else path.lower()
        method = str(scope["method"]).upper()
        if path.lower() == "/monitor/health":
            report = self.health.report() if self.health is not None else {"status": "ok"}
            await send_json(send, 200 if report["status"] == "ok" else 503, report)
            return
        if path.lower() == "/monitor/metrics":
            if self.metrics_require_token and not self._authorised(scope):
                await (self._deny(send) if self.token is not None else self._disabled(send))
                return
            if method != "GET":
                await send_error(send, 405, "use GET /monitor/metrics")
                return
            await send_bytes(send, 200, await anyio.to_thread.run_sync(self._metrics),
                             content_type=self.metrics.content_type.encode())
            return
        if self.token is None:
            await self._disabled(send)
            return
        if not self._authorised(scope):
            await self._deny(send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        parts = [unquote(p) for p in path[len(PREFIX):].split("/")] if path.startswith(
            PREFIX) else []
        for i in (0, 2):  # route words are case-insensitive, client ids are not
            if len(parts) > i:
                parts[i] = parts[i].lower()
        try:
            if parts == ["clients"] and method == "GET":
                body = await anyio.to_thread.run_sync(self._list_clients, query)
            elif parts == ["lookup"] and method == "POST":
                request = await _read_json(receive)
                body = await anyio.to_thread.run_sync(self._lookup, request)
            elif len(parts) == 2 and parts[0] == "clients" and method == "GET":
                body = await anyio.to_thread.run_sync(self._client, parts[1])
            elif len(parts) == 3 and parts[0] == "clients" and parts[2] == "reset" \
                    and method == "POST":
                body = await anyio.to_thread.run_sync(self._reset, parts[1])
            elif len(parts) == 2 and parts[0] == "clients" and method == "DELETE":
                body = await anyio.to_thread.run_sync(self._delete, parts[1])
            elif len(parts) == 3 and parts[0] == "clients" and parts[2] == "state" \
                    and method == "GET":
                record = await anyio.to_thread.run_sync(self._export, parts[1])
                await send_bytes(send, 200, record, content_type=b"application/octet-stream",
                                 headers=[(b"content-disposition",
                                           b'attachment; filename="client-state.emstate"')])
                return
            elif parts == ["alerts"] and method == "GET":
                limit = _int_param(query, "limit", 100, 1, 10_000)
                body = {"alerts": self.alerter.recent(limit)}
            else:
                await send_error(send, 404, f"no admin route {method} {path[:100]}")
                return
        except _NotFound as exc:
            await send_error(send, 404, str(exc))
            return
        except (StoreUnavailable, StoreWriteError) as exc:
            logger.error("admin request failed: state store unavailable: %s", exc)
            await send_error(send, 503, "the state store is unavailable; retry later")
            return
        except ValueError as exc:
            await send_error(send, 400, str(exc))
            return
        await send_json(send, 200, body)

    async def _deny(self, send) -> None:
        await send_error(send, 401, "admin token required: send 'Authorization: Bearer <token>'",
                         headers=[(b"www-authenticate", b"Bearer")])

    async def _disabled(self, send) -> None:
        await send_error(send, 404, "not found (the admin API is disabled: no admin token "
                                    "configured)")

    def _metrics(self) -> bytes:
        """O(1) in clients: the store's two counts, then the counters."""
        m, monitor = self.metrics, self.monitor
        try:
            counts = monitor.store.counts()
            m.clients.set(counts["clients"])
            m.flagged_clients.set(counts["flagged"])
        except (StoreUnavailable, StoreWriteError):  # the other metrics still say why
            pass
        m.sync(monitor.counters())
        return m.render()

    def _list_clients(self, query: dict[str, list[str]]) -> dict[str, Any]:
        offset = _int_param(query, "offset", 0, 0, 10**9)
        limit = _int_param(query, "limit", 50, 1, 1000)
        sort = query.get("sort", ["-score"])[-1]
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        flagged = query.get("flagged", [None])[-1]
        if flagged not in (None, "true", "false"):
            raise ValueError(f"flagged must be true or false, got {flagged!r}")
        total, ids = self.monitor.store.page(offset, limit, sort,
                                             None if flagged is None else flagged == "true")
        return {"total": total, "offset": offset, "limit": limit, "sort": sort,
                "clients": [{**self.monitor.verdict(c).listed(),
                             "group": c.startswith(GROUP_PREFIX)} for c in ids]}

    def _lookup(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or len(request) != 1 or not isinstance(
                next(iter(request.values())), str) or next(iter(request)) not in (
                "key", "address"):
            raise ValueError('send {"key": "<API key or bearer token>"} or '
                             '{"address": "<client address>"}')
        kind, value = next(iter(request.items()))
        client_id = (self.identifier.hash_key(value) if kind == "key"
                     else self.identifier.hash_address(value))
        known = self.monitor.flag_status(client_id) is not None
        out: dict[str, Any] = {"client_id": client_id, "known": known}
        if known:
            out["verdict"] = self.monitor.verdict(client_id).listed()
        return out

    def _client(self, client_id: str) -> dict[str, Any]:
        if self.monitor.flag_status(client_id) is None:
            raise _NotFound(f"unknown client {client_id[:80]!r}")
        out = self.monitor.verdict(client_id).to_dict()
        out.pop("row_scores", None)
        out["action"] = self.policy.action_for(bool(out["flagged"]), float(out["peak_score"]),
                                               bool(out["exposure_exceeded"]))
        return out

    def _forget(self, client_id: str) -> None:
        if self.monitor.flag_status(client_id) is None:
            raise _NotFound(f"unknown client {client_id[:80]!r}")
        self.monitor.reset(client_id)
        self.monitor.store.forget_throttle(client_id)
        self.policy.forget(client_id)
        if self.flags is not None:
            self.flags.drop(client_id)

    def _reset(self, client_id: str) -> dict[str, Any]:
        self._forget(client_id)
        return {"client_id": client_id, "reset": True}

    def _delete(self, client_id: str) -> dict[str, Any]:
        self._forget(client_id)
        return {"client_id": client_id, "deleted": True}

    def _export(self, client_id: str) -> bytes:
        try:
            return self.monitor.export_state(client_id)
        except KeyError:
            raise _NotFound(f"unknown client {client_id[:80]!r}") from None


class _NotFound(Exception):
    pass


async def _read_json(receive) -> Any:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValueError("the request body was not sent")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_LOOKUP_BYTES:
            raise ValueError(f"request body exceeds {MAX_LOOKUP_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise ValueError("request body must be JSON") from None


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name, [None])[-1]
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value
