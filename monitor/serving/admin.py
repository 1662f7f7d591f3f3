"""The admin API (``/monitor/...``, token required) and ``GET /metrics``.

* ``GET /monitor/clients?offset=0&limit=50&sort=-score&flagged=true`` — paginated verdicts;
  ``sort`` is one of ``score``, ``-score``, ``n_queries``, ``-n_queries``, ``client_id``;
* ``GET /monitor/clients/{id}`` — the verdict, per-detector scores and recent score history;
* ``POST /monitor/clients/{id}/reset`` — forget the client (monitor state, flag, throttle);
* ``GET /monitor/clients/{id}/state`` — the client's stored state record
  (``application/octet-stream``; :func:`monitor.stores.decode_state` reads it);
* ``DELETE /monitor/clients/{id}`` — delete the client's state (retention requests);
* ``GET /monitor/alerts?limit=100`` — recent flag alerts and their webhook delivery status;
* ``GET /metrics`` — Prometheus text (open unless ``metrics_require_token``).

The token comes from ``EXTRACTION_MONITOR_ADMIN_TOKEN`` (or ``--admin-token``) and is sent
as ``Authorization: Bearer <token>``. No token configured: the admin routes answer 404.
With a shared state store every worker answers from the store, so any worker gives the same
answers and a reset or delete made through one holds for all. An unreachable store
(:class:`~monitor.stores.StoreUnavailable`) answers 503.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio.to_thread

from monitor.serving.responses import send_bytes, send_error, send_json
from monitor.stores.base import StoreUnavailable

PREFIX = "/monitor/"
SORTS = {"score": ("score", False), "-score": ("score", True),
         "n_queries": ("n_queries", False), "-n_queries": ("n_queries", True),
         "client_id": ("client_id", False)}


class AdminAPI:
    """ASGI handler of the admin routes, built from what it administers.

    ``monitor`` answers verdicts, exports and resets; ``policy`` forgets a reset client's
    throttle; ``alerter`` lists recent alerts; ``metrics`` renders ``/metrics``.

    >>> AdminAPI(monitor=None, policy=None, alerter=None, metrics=None,
    ...          token=None).handles("/monitor/clients")
    True
    """

    def __init__(self, monitor, policy, alerter, metrics, token: str | None,
                 metrics_require_token: bool = False) -> None:
        self.monitor = monitor
        self.policy = policy
        self.alerter = alerter
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.metrics_require_token = metrics_require_token

    def handles(self, path: str) -> bool:
        return path == "/metrics" or path.startswith(PREFIX) or path == PREFIX.rstrip("/")

    def _authorised(self, scope) -> bool:
        auth = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                auth = value
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        return self.token is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/metrics":
            if self.metrics_require_token and not self._authorised(scope):
                await self._deny(send)
                return
            if method != "GET":
                await send_error(send, 405, "use GET /metrics")
                return
            await send_bytes(send, 200, await anyio.to_thread.run_sync(self._metrics),
                             content_type=self.metrics.content_type.encode())
            return
        if self.token is None:
            await send_error(send, 404, "not found (the admin API is disabled: no admin token "
                                        "configured)")
            return
        if not self._authorised(scope):
            await self._deny(send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        parts = [unquote(p) for p in path[len(PREFIX):].split("/")] if path.startswith(
            PREFIX) else []
        try:
            if parts == ["clients"] and method == "GET":
                body = await anyio.to_thread.run_sync(self._list_clients, query)
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
                await send_error(send, 404, f"no admin route {method} {path}")
                return
        except _NotFound as exc:
            await send_error(send, 404, str(exc))
            return
        except StoreUnavailable as exc:
            await send_error(send, 503, f"the state store is unavailable ({exc}); retry later")
            return
        except ValueError as exc:
            await send_error(send, 400, str(exc))
            return
        await send_json(send, 200, body)

    async def _deny(self, send) -> None:
        await send_error(send, 401, "admin token required: send 'Authorization: Bearer <token>'",
                         headers=[(b"www-authenticate", b"Bearer")])

    def _metrics(self) -> bytes:
        m, monitor = self.metrics, self.monitor
        try:
            clients = monitor.clients()
            flagged = 0
            for client_id in clients:  # the store's truth, shared by all workers
                status = monitor.flag_status(client_id)
                flagged += status is not None and status.flagged
            m.clients.set(len(clients))
            m.flagged_clients.set(flagged)
        except StoreUnavailable:  # still export the other metrics (store_down says why)
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
        rows = [_listed(self.monitor.verdict(c)) for c in self.monitor.clients()]
        if flagged is not None:
            rows = [r for r in rows if r["flagged"] == (flagged == "true")]
        key, reverse = SORTS[sort]
        rows.sort(key=lambda r: r[key], reverse=reverse)
        return {"total": len(rows), "offset": offset, "limit": limit, "sort": sort,
                "clients": rows[offset:offset + limit]}

    def _client(self, client_id: str) -> dict[str, Any]:
        if self.monitor.flag_status(client_id) is None:
            raise _NotFound(f"unknown client {client_id!r}")
        out = self.monitor.verdict(client_id).to_dict()
        out.pop("row_scores", None)
        out["action"] = self.policy.action_for(bool(out["flagged"]), float(out["peak_score"]),
                                               bool(out["exposure_exceeded"]))
        return out

    def _forget(self, client_id: str) -> None:
        if self.monitor.flag_status(client_id) is None:
            raise _NotFound(f"unknown client {client_id!r}")
        self.monitor.reset(client_id)
        self.policy.forget(client_id)

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
            raise _NotFound(f"unknown client {client_id!r}") from None


class _NotFound(Exception):
    pass


def _listed(verdict) -> dict[str, Any]:
    """A verdict as the client list shows it."""
    summary = verdict.summary()
    return {k: summary[k] for k in ("client_id", "n_queries", "score", "peak_score", "flagged",
                                    "flag_at", "reason", "exposure", "exposure_exceeded")}


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name, [None])[-1]
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value
