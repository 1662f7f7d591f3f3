"""``ExtractionMonitorMiddleware``: pure ASGI middleware that watches a prediction API.

For each ``POST`` to a monitored route a :class:`MonitoredRequest` (one object per request,
like Starlette's responders) reads the request body (size-limited while streaming), extracts
the feature rows, lets the app answer, extracts the outputs from the response, runs
``monitor.observe`` in a worker thread (never on the event loop), and answers as the
:class:`~monitor.serving.policy.EnforcementPolicy` decides, from the flagging request onward.
Admin routes (``/monitor/...``) and ``/metrics`` are answered by
:class:`~monitor.serving.admin.AdminAPI`.

With a shared state store (``Monitor(..., store=...)``, several workers) the store is the only
source of truth for flags: a request is refused early (block / throttle) only if the client's
stored state is flagged, so a flag raised in one worker or an admin reset made through any
worker takes effect in all of them on the next request. A client counts as newly flagged
(log, alert, first 429) only in the request whose rows raised the flag, so each flag alerts
once however many workers there are. :class:`~monitor.stores.StoreUnavailable` (a store
configured to fail closed, or SQLite locked past its busy timeout) answers 503.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib

import anyio.to_thread
import numpy as np

from monitor.environment import Environment
from monitor.errors import InvalidInput
from monitor.serving.actions import degrade
from monitor.serving.admin import AdminAPI
from monitor.serving.alerts import Alerter
from monitor.serving.extractors import DEFAULT_EXTRACTORS, ExtractionError, extract_rows
from monitor.serving.identity import ClientIdentifier, resolve_salt
from monitor.serving.metrics import ServingMetrics
from monitor.serving.policy import Decision, EnforcementPolicy
from monitor.serving.responses import json_bytes, send_error
from monitor.settings import ServingConfig
from monitor.stores.base import StoreUnavailable

logger = logging.getLogger("extraction_monitor.serving")


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
                 feature_names: list[str] | None = None,
                 environment: Environment | None = None) -> None:
        env = environment or Environment.read()
        self.app = app
        self.monitor = monitor
        self.config = config or ServingConfig()
        self.routes = tuple(routes) if routes else self.config.routes
        self.extractors = tuple(extractors)
        salt = self.config.salt or resolve_salt("memory://", environ=env)
        self.identify = identifier or ClientIdentifier(
            salt, self.config.client_header, self.config.use_bearer, self.config.trusted_proxies)
        self.metrics = metrics or ServingMetrics()
        self.alerter = Alerter(self.config.webhook_url, self.config.webhook_retries,
                               self.config.webhook_backoff, self.config.webhook_timeout,
                               self.config.alerts_size, self.metrics)
        self.policy = EnforcementPolicy(self.config)
        self.n_features = monitor.n_features
        names = feature_names or monitor.feature_names
        self.feature_names = list(names) if names else None
        self.classes = monitor.classes
        token = admin_token if admin_token is not None else env.admin_token
        self.admin = AdminAPI(monitor, self.policy, self.alerter, self.metrics, token or None,
                              self.config.metrics_require_token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.admin.handles(path):
            await self.admin(scope, receive, send)
        elif scope.get("method") == "POST" and path in self.routes:
            await MonitoredRequest(self, scope, receive, send).run()
        else:
            await self.app(scope, receive, send)

    # ------------------------------------------------------------------ shared answers
    async def send_store_unavailable(self, send, exc: Exception) -> None:
        logger.error("state store unavailable: %s", exc)
        self.metrics.requests.labels(outcome="store_unavailable").inc()
        await send_error(send, 503, f"the extraction monitor's state store is unavailable "
                                    f"({exc}); retry later")

    async def send_blocked(self, send) -> None:
        self.metrics.requests.labels(outcome="blocked").inc()
        await send_error(send, 403, "access suspended: this client's query pattern was flagged "
                                    "as a possible model-extraction attack")

    async def send_throttled(self, send, wait: int) -> None:
        self.metrics.requests.labels(outcome="throttled").inc()
        await send_error(send, 429, f"rate limited: this client's query pattern was flagged; "
                                    f"retry after {wait} s",
                         headers=[(b"retry-after", str(wait).encode())])

    def record(self, client_id: str, verdict, n_rows: int, decision: Decision) -> None:
        """Update metrics; log and alert once, in the request that raised the flag."""
        self.metrics.queries.inc(n_rows)
        self.metrics.score.observe(float(verdict.score) if np.isfinite(verdict.score) else 1e9)
        self.metrics.sync(self.monitor.counters())
        if decision.newly_flagged:
            self.metrics.flags.inc()
            self._announce("client_flagged", verdict, self.policy.logs(verdict.peak_score),
                           self.policy.alerts(verdict.peak_score))
        if decision.newly_exposed:
            actions = set(self.config.exposure_actions)
            self._announce("exposure_limit_reached", verdict, "log" in actions,
                           "alert" in actions)

    def _announce(self, event: str, verdict, log: bool, alert: bool) -> None:
        summary = verdict.summary()
        if log:
            logger.warning(json.dumps({"event": event, **summary}))
        if alert:
            self.alerter.notify(summary, event)

    def reset(self, client_id: str) -> None:
        """Forget a client in the monitor and in the serving layer."""
        self.monitor.reset(client_id)
        self.policy.forget(client_id)


class MonitoredRequest:
    """One monitored request: its identity, body, rows, the app's captured answer, and how
    it is finally answered."""

    def __init__(self, middleware: ExtractionMonitorMiddleware, scope, receive, send) -> None:
        self.mw = middleware
        self.scope, self.receive, self.send = scope, receive, send
        self.started = time.perf_counter()
        self.client_id = middleware.identify(scope)

    async def run(self) -> None:
        mw = self.mw
        try:
            if await self._refused_early():
                return
        except StoreUnavailable as exc:
            await mw.send_store_unavailable(self.send, exc)
            return
        try:
            body = await read_body(self.scope, self.receive, mw.config.max_body_bytes)
        except BodyTooLarge:
            mw.metrics.requests.labels(outcome="rejected").inc()
            await send_error(self.send, 413, f"request body exceeds the limit of "
                                             f"{mw.config.max_body_bytes} bytes; send fewer rows")
            return
        if body is None:  # client went away
            return
        try:
            payload, extractor, X = extract_rows(body, mw.n_features, mw.feature_names,
                                                 mw.extractors)
        except ExtractionError as exc:
            if mw.config.unparseable == "pass" and exc.status == 400:
                mw.metrics.requests.labels(outcome="unmonitored").inc()
                await mw.app(self.scope, replay(body, self.receive), self.send)
                return
            mw.metrics.requests.labels(outcome="rejected").inc()
            await send_error(self.send, exc.status, str(exc))
            return

        captured = Captured()
        app_started = time.perf_counter()
        await mw.app(self.scope, replay(body, self.receive), captured.send)
        app_time = time.perf_counter() - app_started
        if not 200 <= captured.status < 300:  # unanswered queries leak nothing
            await captured.replay(self.send)
            return
        response_payload, outputs = self._outputs(captured, extractor, len(X))
        try:
            verdict = await anyio.to_thread.run_sync(self._observe, X, outputs)
        except InvalidInput as exc:
            mw.metrics.requests.labels(outcome="rejected").inc()
            await send_error(self.send, 422, str(exc))
            return
        except StoreUnavailable as exc:
            await mw.send_store_unavailable(self.send, exc)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", self.client_id)
            mw.metrics.observe_errors.inc()
            mw.metrics.requests.labels(outcome="error").inc()
            if mw.config.fail_mode == "closed":
                await send_error(self.send, 503,
                                 "the extraction monitor is unavailable; retry later")
            else:
                await captured.replay(self.send)
            return
        decision = mw.policy.after_verdict(self.client_id, verdict, len(X))
        mw.record(self.client_id, verdict, len(X), decision)
        await self._answer(decision, captured, extractor, response_payload, outputs)
        mw.metrics.added_latency.observe(max(0.0, time.perf_counter() - self.started - app_time))

    async def _refused_early(self) -> bool:
        """Answer 403/429 for an already-flagged client before its request reaches the app."""
        mw = self.mw
        if not mw.policy.refuses_early:
            return False
        if mw.monitor.store is None:  # in this process: a dict lookup
            status = mw.monitor.flag_status(self.client_id)
        else:
            status = await anyio.to_thread.run_sync(mw.monitor.flag_status, self.client_id)
        if status is None:
            return False
        decision = mw.policy.before_request(self.client_id, status.flagged, status.peak_score,
                                            status.exposure_exceeded)
        if decision.outcome == "block":
            await mw.send_blocked(self.send)
            return True
        if decision.outcome == "throttle":
            await mw.send_throttled(self.send, decision.retry_after)
            return True
        return False

    async def _answer(self, decision: Decision, captured: Captured, extractor,
                      response_payload, outputs) -> None:
        mw = self.mw
        if decision.outcome == "block":
            await mw.send_blocked(self.send)
        elif decision.outcome == "throttle":
            await mw.send_throttled(self.send, decision.retry_after)
        elif decision.outcome == "degrade" and response_payload is not None \
                and outputs is not None:
            mw.metrics.requests.labels(outcome="degraded").inc()
            cfg = mw.config
            new_outputs = degrade(outputs, cfg.degrade_mode, mw.classes, cfg.degrade_decimals,
                                  cfg.degrade_strength)
            await captured.replay(self.send, json_bytes(
                extractor.rewrite_response(response_payload, new_outputs)))
        else:
            mw.metrics.requests.labels(outcome="served").inc()
            await captured.replay(self.send)

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
                outputs.ndim == 2 and outputs.shape[1] != len(self.mw.classes))):
            outputs = None
        return payload, outputs

    def _observe(self, X: np.ndarray, outputs: np.ndarray | None):
        """``monitor.observe`` (in a worker thread); unusable outputs fall back to ``None``."""
        monitor = self.mw.monitor
        if outputs is not None:
            try:
                return monitor.observe(self.client_id, X, outputs)
            except InvalidInput:
                pass
        return monitor.observe(self.client_id, X, None)


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
