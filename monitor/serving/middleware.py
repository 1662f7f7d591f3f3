"""``ExtractionMonitorMiddleware``: pure ASGI middleware that watches a prediction API.

For each ``POST`` to a monitored route it reads the request body (size-limited while
streaming), extracts the feature rows, lets the app answer, extracts the outputs from the
response, runs ``monitor.observe`` in a worker thread (never on the event loop), and applies
the configured actions from the flagging request onward. Admin routes (``/monitor/...``) and
``/metrics`` are answered by :class:`~monitor.serving.admin.AdminAPI`.

With a shared state store (``Monitor(..., store=...)``, several workers) the store is the
only source of truth for flags: a request is refused early (block / throttle) only if the
client's stored state is flagged, so a flag raised in one worker or an admin reset made
through any worker takes effect in all of them on the next request. A client counts as newly
flagged (log, alert, first 429) only in the request whose rows raised the flag, so each flag
alerts once however many workers there are. :class:`~monitor.stores.StoreUnavailable` (a
store configured to fail closed, or SQLite locked past its busy timeout) answers 503.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import zlib
from typing import Any

import anyio.to_thread
import numpy as np

from monitor.errors import InvalidInput
from monitor.serving.actions import Throttle, degrade, enforcement
from monitor.serving.admin import ADMIN_TOKEN_ENV, AdminAPI
from monitor.serving.alerts import Alerter
from monitor.serving.config import ServingConfig
from monitor.serving.extractors import DEFAULT_EXTRACTORS, ExtractionError, extract_rows
from monitor.serving.identity import ClientIdentifier
from monitor.serving.metrics import ServingMetrics
from monitor.serving.responses import json_bytes, send_error
from monitor.stores.base import StoreUnavailable

logger = logging.getLogger("monitor.serving")


class BodyTooLarge(Exception):
    """The request body exceeded ``ServingConfig.max_body_bytes``."""


class ExtractionMonitorMiddleware:
    """Monitor a prediction API's ``routes`` with ``monitor`` and act on its verdicts.

    ``app.add_middleware(ExtractionMonitorMiddleware, monitor=mon, routes=["/predict"],
    config=ServingConfig(...))``. The admin token comes from ``admin_token`` or the
    ``EXTRACTION_MONITOR_ADMIN_TOKEN`` environment variable (none: admin API disabled).
    ``feature_names`` (default: the profile's) map named records to columns.

    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor import Monitor, Profile
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    >>> model = LogisticRegression().fit(X, y)
    >>> async def app(scope, receive, send): ...
    >>> mw = ExtractionMonitorMiddleware(app, monitor=Monitor(Profile().fit(model, X, y)),
    ...                                  config=ServingConfig(salt="s"))
    >>> mw.routes, mw.n_features
    (('/predict',), 3)
    """

    def __init__(self, app, monitor, routes: list[str] | None = None,
                 config: ServingConfig | None = None, admin_token: str | None = None,
                 extractors=DEFAULT_EXTRACTORS, identifier=None,
                 metrics: ServingMetrics | None = None,
                 feature_names: list[str] | None = None) -> None:
        self.app = app
        self.monitor = monitor
        self.config = config or ServingConfig()
        self.routes = tuple(routes) if routes else self.config.routes
        self.extractors = tuple(extractors)
        self.identify = identifier or ClientIdentifier(
            self.config.salt, self.config.client_header, self.config.use_bearer,
            self.config.trusted_proxies)
        self.metrics = metrics or ServingMetrics()
        self.alerter = Alerter(self.config.webhook_url, self.config.webhook_retries,
                               self.config.webhook_backoff, self.config.webhook_timeout,
                               self.config.alerts_size, self.metrics)
        self.throttle = Throttle(self.config.throttle_rate, self.config.throttle_burst)
        profile = monitor.profile
        self.n_features = int(profile.n_features_)
        names = feature_names or getattr(profile, "feature_names_", None)
        self.feature_names = list(names) if names else None
        self.classes = np.asarray(profile.classes_)
        self.flagged: dict[str, float] = {}  # this worker's view; with a store, only a hint
        self.store = getattr(monitor, "store", None)
        self._refuses_early = bool(self.config.levels("block") or self.config.levels("throttle"))
        self._lock = threading.Lock()
        token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
        self.admin = AdminAPI(self, token or None)

    # ------------------------------------------------------------------ dispatch
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.admin.handles(path):
            await self.admin(scope, receive, send)
        elif scope.get("method") == "POST" and path in self.routes:
            await self._monitored(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # ------------------------------------------------------------------ the monitored path
    async def _monitored(self, scope, receive, send) -> None:
        started = time.perf_counter()
        client_id = self.identify(scope)
        try:
            if await self._refuse_flagged(client_id, send):
                return
        except StoreUnavailable as exc:
            await self._send_store_unavailable(send, exc)
            return
        try:
            body = await read_body(scope, receive, self.config.max_body_bytes)
        except BodyTooLarge:
            self.metrics.requests.labels(outcome="rejected").inc()
            await send_error(send, 413, f"request body exceeds the limit of "
                                        f"{self.config.max_body_bytes} bytes; send fewer rows")
            return
        if body is None:  # client went away
            return
        try:
            payload, extractor, X = extract_rows(body, self.n_features, self.feature_names,
                                                 self.extractors)
        except ExtractionError as exc:
            if self.config.unparseable == "pass" and exc.status == 400:
                self.metrics.requests.labels(outcome="unmonitored").inc()
                await self.app(scope, replay(body, receive), send)
                return
            self.metrics.requests.labels(outcome="rejected").inc()
            await send_error(send, exc.status, str(exc))
            return

        captured = Captured()
        app_started = time.perf_counter()
        await self.app(scope, replay(body, receive), captured.send)
        app_time = time.perf_counter() - app_started
        if not 200 <= captured.status < 300:  # unanswered queries leak nothing
            await captured.replay(send)
            return
        response_payload, outputs = self._outputs(captured, extractor, len(X))
        try:
            verdict = await anyio.to_thread.run_sync(self._observe, client_id, X, outputs)
        except InvalidInput as exc:
            self.metrics.requests.labels(outcome="rejected").inc()
            await send_error(send, 422, str(exc))
            return
        except StoreUnavailable as exc:
            await self._send_store_unavailable(send, exc)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", client_id)
            self.metrics.detector_errors.inc()
            self.metrics.requests.labels(outcome="error").inc()
            if self.config.fail_mode == "closed":
                await send_error(send, 503, "the extraction monitor is unavailable; retry later")
            else:
                await captured.replay(send)
            return
        newly = self._record(client_id, verdict, len(X))
        action = enforcement(self.config, verdict.flagged, verdict.peak_score)
        if action == "block":
            await self._send_blocked(send)
        elif action == "throttle" and newly:
            await self._send_throttled(send, self.throttle.take(client_id) or 1)
        elif action == "degrade" and response_payload is not None and outputs is not None:
            self.metrics.requests.labels(outcome="degraded").inc()
            cfg = self.config
            new_outputs = degrade(outputs, cfg.degrade_mode, self.classes, cfg.degrade_decimals,
                                  cfg.degrade_strength)
            await captured.replay(send, json_bytes(
                extractor.rewrite_response(response_payload, new_outputs)))
        else:
            self.metrics.requests.labels(outcome="served").inc()
            await captured.replay(send)
        self.metrics.added_latency.observe(max(0.0, time.perf_counter() - started - app_time))

    async def _refuse_flagged(self, client_id: str, send) -> bool:
        """Answer 403/429 for an already-flagged client before its request reaches the app."""
        if not self._refuses_early:
            return False
        if self.store is not None:
            peak = await anyio.to_thread.run_sync(self._stored_peak, client_id)
        else:
            peak = self.flagged.get(client_id)
        if peak is None:
            return False
        action = enforcement(self.config, True, peak)
        if action == "block":
            await self._send_blocked(send)
            return True
        if action == "throttle":
            wait = self.throttle.take(client_id)
            if wait:
                await self._send_throttled(send, wait)
                return True
        return False

    def _stored_peak(self, client_id: str) -> float | None:
        """The client's peak score if its stored state is flagged, else ``None``."""
        state = self.monitor.state(client_id)
        if state is None or state.flag_at is None:
            with self._lock:
                self.flagged.pop(client_id, None)
            return None
        return float(state.peak_score)

    async def _send_store_unavailable(self, send, exc: Exception) -> None:
        logger.error("state store unavailable: %s", exc)
        self.metrics.requests.labels(outcome="store_unavailable").inc()
        await send_error(send, 503, f"the extraction monitor's state store is unavailable "
                                    f"({exc}); retry later")

    async def _send_blocked(self, send) -> None:
        self.metrics.requests.labels(outcome="blocked").inc()
        await send_error(send, 403, "access suspended: this client's query pattern was flagged "
                                    "as a possible model-extraction attack")

    async def _send_throttled(self, send, wait: int) -> None:
        self.metrics.requests.labels(outcome="throttled").inc()
        await send_error(send, 429, f"rate limited: this client's query pattern was flagged; "
                                    f"retry after {wait} s",
                         headers=[(b"retry-after", str(wait).encode())])

    def _outputs(self, captured: Captured, extractor, n: int):
        """``(payload, outputs)`` from the app's response; ``(None, None)`` if unreadable."""
        try:
            payload = json.loads(captured.decoded_body())
        except (ValueError, UnicodeDecodeError, OSError, zlib.error):
            return None, None
        try:
            outputs = extractor.parse_response(payload)
        except Exception:  # a custom extractor must not fail the request
            logger.exception("response extractor %s failed", getattr(extractor, "name", "?"))
            outputs = None
        if outputs is not None and (len(outputs) != n or (
                outputs.ndim == 2 and outputs.shape[1] != len(self.classes))):
            outputs = None
        return payload, outputs

    def _observe(self, client_id: str, X: np.ndarray, outputs: np.ndarray | None):
        """``monitor.observe`` (in a worker thread); unusable outputs fall back to ``None``."""
        if outputs is not None:
            try:
                return self.monitor.observe(client_id, X, outputs)
            except InvalidInput:
                pass
        return self.monitor.observe(client_id, X, None)

    def _record(self, client_id: str, verdict, n_rows: int) -> bool:
        """Update metrics and flag bookkeeping; fire log/alert once. True if newly flagged."""
        self.metrics.queries.inc(n_rows)
        self.metrics.score.observe(float(verdict.score) if np.isfinite(verdict.score) else 1e9)
        if self.store is not None:
            self.metrics.sync_store(self.store.stats(), getattr(self.monitor, "state_errors", 0))
        if not verdict.flagged:
            return False
        with self._lock:
            self.flagged[client_id] = float(verdict.peak_score)
        # newly flagged iff the flag was raised by one of the rows of this request
        newly = verdict.flag_at is not None and \
            verdict.n_queries - n_rows <= verdict.flag_at < verdict.n_queries
        if not newly:
            return False
        self.metrics.flags.inc()
        if self.config.levels("throttle"):
            self.throttle.start(client_id)
        summary = verdict_summary(verdict)
        if any(a.applies(True, verdict.peak_score) for a in self.config.levels("log")):
            logger.warning(json.dumps({"event": "client_flagged", **summary}))
        if any(a.applies(True, verdict.peak_score) for a in self.config.levels("alert")):
            self.alerter.notify(summary)
        return True

    def reset(self, client_id: str) -> None:
        """Forget a client in the monitor and in the serving layer."""
        self.monitor.reset(client_id)
        with self._lock:
            self.flagged.pop(client_id, None)
        self.throttle.forget(client_id)


def verdict_summary(verdict) -> dict[str, Any]:
    """The verdict fields worth logging and alerting (no raw rows)."""
    return {k: getattr(verdict, k) for k in (
        "client_id", "n_queries", "score", "peak_score", "threshold", "flagged", "flag_at",
        "reason", "detectors")}


async def read_body(scope, receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` on disconnect; :class:`BodyTooLarge` past ``limit``."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """A ``receive`` that yields ``body`` once, then defers to the real ``receive``."""
    sent = False

    async def receive_again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


class Captured:
    """A buffered ASGI response (status, headers, body) that can be replayed or rewritten."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def decoded_body(self) -> bytes:
        """The body with any gzip/deflate content-encoding undone."""
        encoding = (self.header(b"content-encoding") or b"").lower().strip()
        if encoding == b"gzip":
            return gzip.decompress(self.body)
        if encoding == b"deflate":
            return zlib.decompress(self.body)
        return self.body

    async def replay(self, send, new_body: bytes | None = None) -> None:
        """Send the response as captured, or with ``new_body`` (JSON, uncompressed)."""
        headers = self.headers
        body = self.body
        if new_body is not None:
            body = new_body
            headers = [(k, v) for k, v in headers
                       if k.lower() not in (b"content-length", b"content-encoding")]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
