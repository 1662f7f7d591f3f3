"""``ExtractionMonitorMiddleware``: pure ASGI middleware that watches a prediction API.

**What is watched.** Every request on a watched route (:mod:`monitor.serving.routes`:
case-insensitive, on the normalised path) that carries a body or uses a method other than
GET/HEAD/OPTIONS — ``POST``, ``post``, ``PUT``, ``PATCH``, a GET with a body — is read by one
:class:`MonitoredRequest` (one object per request, like Starlette's responders). A request
with a body on a path no route watches is passed and counted
(``extraction_monitor_unobserved_requests_total{reason="unwatched_route"}``), or refused
with ``[serving] unwatched = "refuse"``.

**One request, in order.** Its identity (:class:`~monitor.serving.identity.ClientIdentifier`:
an ambiguous identity is a 400); a flagged client is blocked before its body is read; the
body is read (size-limited while streaming) and parsed strictly into rows
(:mod:`monitor.serving.extractors`: duplicate keys, two formats, too deep → 400; bad values
→ 422; each rejection a one-line log and a metric by reason); a throttled client pays one
token per row; the app answers the *same bytes* the monitor parsed, asked for an
``identity``-encoded response; the outputs are read from the response (gzip, deflate and,
with ``brotli`` installed, br are decoded); ``monitor.observe`` runs in a worker thread; and
the :class:`~monitor.serving.policy.EnforcementPolicy` decides the answer. A degraded client
whose answer cannot be read (an encoding or format the monitor cannot rewrite) is refused:
degrading fails closed.

**A body no extractor understands** passes to the app unobserved (counted, and logged
naming the route), per ``[serving] unparseable``; a flagged client's such body is refused.

**Flags across workers and outages.** The store is the source of truth for flags; each
worker also keeps a :class:`~monitor.serving.health.FlagCache` of flagged clients
(refreshed from the store's index), used whenever the store cannot answer, so a blocked
client stays blocked through a store outage. A failing store write raises an alarm
(:class:`~monitor.serving.health.StoreHealth`). A client counts as newly flagged (log,
alert, first 429) only in the request whose rows raised the flag, so each flag alerts once
however many workers there are.

**Shadow mode** (``[serving] shadow = true``): an answer the client is entitled to (it was
not flagged before this request) is sent as soon as the app gives it, and the monitor
observes afterwards; a flag raised by that request acts once that observe has finished, so
the flagging request, and any the client sent while it ran, are answered in full. It trades
those answers for an answer that never waits for the monitor.

Admin routes (``/monitor/...``, including ``/monitor/metrics``) are answered by
:class:`~monitor.serving.admin.AdminAPI`; the app's own ``/metrics`` is left alone.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import zlib

import anyio.to_thread
import numpy as np

from monitor.environment import Environment
from monitor.errors import InvalidInput
from monitor.eventlog import log_event, verdict_fields
from monitor.hashing import digest_key
from monitor.serving.actions import degrade
from monitor.serving.admin import AdminAPI
from monitor.serving.alerts import Alerter
from monitor.serving.extractors import (
    DEFAULT_EXTRACTORS,
    REQUEST_ROWS_KEY,
    Extraction,
    ExtractionError,
    Unrecognised,
    extract,
)
from monitor.serving.health import FlagCache, Silence, StoreHealth
from monitor.serving.identity import ClientIdentifier, IdentityError, resolve_salt
from monitor.serving.metrics import ServingMetrics
from monitor.serving.policy import SERVE, Decision, EnforcementPolicy
from monitor.serving.responses import json_bytes, send_error
from monitor.serving.routes import RouteTable, normalise_path
from monitor.settings import DEFAULT_TTL, ServingConfig
from monitor.stores.base import StoreUnavailable, StoreWriteError

logger = logging.getLogger("extraction_monitor.serving")

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
UNAVAILABLE = "the extraction monitor's state store is unavailable; retry later"


class BodyTooLarge(Exception):
    """The request body exceeded ``ServingConfig.max_body_bytes``."""


def carries_body(scope, method: str) -> bool:
    """Whether a request may carry a body the app would read."""
    if method not in BODYLESS_METHODS:
        return True
    for name, value in scope.get("headers", []):
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length"
                                            and value.strip() not in (b"", b"0")):
            return True
    return False


class ExtractionMonitorMiddleware:
    """Monitor a prediction API's ``routes`` with ``monitor`` and act on its verdicts.

    ``app.add_middleware(ExtractionMonitorMiddleware, monitor=mon, config=ServingConfig(...))``.
    ``routes`` (default: ``config.routes``, the well-known inference paths) are paths,
    globs or ``{param}`` patterns. The admin token comes from ``admin_token`` or the
    ``EXTRACTION_MONITOR_ADMIN_TOKEN`` environment variable (none: admin API disabled).
    ``feature_names`` (default: the profile's) map named columns. ``metrics_registry``
    merges the monitor's metrics into the app's prometheus-client registry. A monitor
    without a store is given an in-process ``memory://`` store (evidence TTL 30 days).

    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor import Monitor, Profile
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    >>> model = LogisticRegression().fit(X, y)
    >>> async def app(scope, receive, send): ...
    >>> mw = ExtractionMonitorMiddleware(app, monitor=Monitor(Profile().fit(model, X, y)),
    ...                                  routes=["/predict"], config=ServingConfig(salt="s"))
    >>> mw.routes.routes, mw.n_features
    (('/predict',), 3)
    """

    def __init__(self, app, monitor, routes: list[str] | None = None,
                 config: ServingConfig | None = None, admin_token: str | None = None,
                 extractors=DEFAULT_EXTRACTORS, identifier=None,
                 metrics: ServingMetrics | None = None,
                 feature_names: list[str] | None = None,
                 environment: Environment | None = None,
                 metrics_registry=None) -> None:
        from monitor.stores.memory import MemoryStore

        env = environment or Environment.read()
        self.app = app
        self.monitor = monitor
        self.config = config or ServingConfig()
        self.routes = RouteTable(routes or self.config.routes)
        self.extractors = tuple(extractors)
        salt = self.config.salt or resolve_salt("memory://", environ=env)
        if monitor.digest_key is None:  # every worker of the deployment agrees on retries
            monitor.digest_key = digest_key(salt)
        if monitor.store_is_default:  # the deployment's evidence TTL
            monitor.use_store(MemoryStore(ttl_seconds=DEFAULT_TTL))
        self.store = monitor.store
        self.identify = identifier or ClientIdentifier(
            salt, self.config.client_header, trusted_proxies=self.config.trusted_proxies,
            sources=self.config.identity_sources)
        self.metrics = metrics or ServingMetrics(registry=metrics_registry)
        self.alerter = Alerter(self.config.webhook_url, self.config.webhook_retries,
                               self.config.webhook_backoff, self.config.webhook_timeout,
                               self.config.alerts_size, self.metrics)
        self.policy = EnforcementPolicy(self.config, limiter=self.store.take)
        self.inline = bool(getattr(self.store, "quick_calls", False))
        """Whether the store's calls are local and short enough to make on the event loop
        (memory, SQLite): small requests then skip the worker-thread hop (Redis: never)."""
        self._in_threads = 0  # requests' store calls now running in worker threads
        self.flags = FlagCache()
        self.health = StoreHealth(self.metrics)
        self.silence = Silence(self.config.silence_seconds, self.metrics)
        self.n_features = monitor.n_features
        names = feature_names or monitor.feature_names
        self.feature_names = list(names) if names else None
        self.classes = monitor.classes
        self.schema = getattr(getattr(monitor, "profile", None), "schema_", None)
        self._warned_labels = False
        self._logged_unread: dict[str, float] = {}
        self._refresh_task: asyncio.Task | None = None
        token = admin_token if admin_token is not None else env.admin_token
        self.admin = AdminAPI(monitor, self.policy, self.alerter, self.metrics, token or None,
                              self.config.metrics_require_token, identifier=self.identify,
                              health=self.health, flags=self.flags)
        formats = [e.name for e in self.extractors] + ["csv"]
        for line in self.routes.banner(formats):
            logger.info(line)
        logger.info("identity: %s; unwatched requests: %s; unreadable bodies: %s",
                    " > ".join(self.config.identity_sources), self.config.unwatched,
                    self.config.unparseable)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = normalise_path(scope.get("path", "") or "/")
        if self.admin.handles(path):
            await self.admin(scope, receive, send)
            return
        self.silence.request()
        method = str(scope.get("method", "GET")).upper()
        route = self.routes.match(path)
        if not carries_body(scope, method):
            await self.app(scope, receive, send)
        elif route is None:
            self.metrics.unobserved.labels(reason="unwatched_route").inc()
            if self.config.unwatched == "refuse":
                await send_error(send, 403, "this path is not a monitored prediction route")
            else:
                await self.app(scope, receive, send)
        else:
            await MonitoredRequest(self, scope, receive, send, route, method).run()

    async def call(self, inline: bool, fn, *args):
        """``fn(*args)`` on the event loop when ``inline`` and no request's call is running
        in a worker thread (the loop must never wait for a client lock a thread holds),
        else in a worker thread."""
        if inline and not self._in_threads:
            return fn(*args)
        self._in_threads += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._in_threads -= 1

    # ------------------------------------------------------------------ flags
    async def flag_status(self, client_id: str):
        """The client's flag: from the store, or this worker's cache when the store cannot
        answer (raises StoreUnavailable only when neither knows)."""
        self._maybe_refresh()
        try:
            status = await self.call(self.inline, self.monitor.flag_status, client_id)
        except StoreUnavailable:
            cached = self.flags.get(client_id)
            if cached is not None:
                return cached
            raise
        if self._store_down():  # a fail-open store answers from a partial local buffer
            cached = self.flags.get(client_id)
            if cached is not None and (status is None or not status.flagged):
                return cached
        else:
            self.flags.put(client_id, status)
        return status

    def _store_down(self) -> bool:
        return bool(getattr(self.store, "down", False))

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now < self.flags.next_refresh or (self._refresh_task is not None
                                             and not self._refresh_task.done()):
            return
        self.flags.next_refresh = now + self.config.flag_refresh_seconds
        self._refresh_task = asyncio.get_running_loop().create_task(
            anyio.to_thread.run_sync(self._refresh_flags))

    def _refresh_flags(self) -> None:
        """Load the store's flagged clients into this worker's cache (O(flagged))."""
        if self._store_down():
            return
        try:
            flagged = set(self.store.flagged(self.flags.size))
            for client_id in flagged - self.flags.ids():
                self.flags.put(client_id, self.monitor.flag_status(client_id))
            for client_id in self.flags.ids() - flagged:  # reset through another worker
                self.flags.put(client_id, self.monitor.flag_status(client_id))
        except Exception as exc:  # an outage: keep what we have
            logger.debug("flag refresh failed: %s", exc)

    # ------------------------------------------------------------------ shared answers
    async def send_store_unavailable(self, send, exc: Exception) -> None:
        logger.error("state store unavailable: %s", exc)
        self.health.failed("state store unreachable")
        self.metrics.requests.labels(outcome="store_unavailable").inc()
        await send_error(send, 503, UNAVAILABLE)

    async def send_blocked(self, send) -> None:
        self.metrics.requests.labels(outcome="blocked").inc()
        await send_error(send, 403, "access suspended: this client's query pattern was flagged "
                                    "as a possible model-extraction attack")

    async def send_throttled(self, send, wait: int, message: str | None = None) -> None:
        self.metrics.requests.labels(outcome="throttled").inc()
        detail = f"; {message}" if message else ""
        await send_error(send, 429, f"rate limited: this client's query pattern was flagged; "
                                    f"retry after {wait} s{detail}",
                         headers=[(b"retry-after", str(wait).encode())])

    async def send_rejected(self, send, status: int, reason: str, message: str,
                            route: str, headers=None) -> None:
        self.metrics.requests.labels(outcome="rejected").inc()
        self.metrics.rejected.labels(reason=reason).inc()
        logger.info("rejected request on %s: %s (%s)", route, reason, message[:200])
        await send_error(send, status, message, headers=headers)

    def record(self, client_id: str, verdict, n_rows: int, decision: Decision) -> None:
        """Update metrics; log and alert once, in the request that raised the flag."""
        self.metrics.queries.inc(n_rows)
        self.metrics.sync(self.monitor.counters())
        if decision.newly_flagged:
            self.metrics.flags.inc()
            self._announce("client_flagged", verdict, self.policy.logs(verdict.peak_score),
                           self.policy.alerts(verdict.peak_score), decision.outcome)
        if decision.newly_exposed:
            actions = set(self.config.exposure_actions)
            self._announce("exposure_limit_reached", verdict, "log" in actions,
                           "alert" in actions)

    def _announce(self, event: str, verdict, log: bool, alert: bool,
                  action: str | None = None) -> None:
        """Log (the event schema of :mod:`monitor.eventlog`, as offline) and alert once."""
        summary = verdict.summary()
        if log:
            log_event(logger, event, **verdict_fields(verdict, action))
        if alert:
            self.alerter.notify(summary, event)

    def log_unread(self, route: str, reason: str) -> None:
        """One line naming the route, at most once a minute per route."""
        now = time.monotonic()
        if now - self._logged_unread.get(route, -1e9) >= 60:
            self._logged_unread[route] = now
            logger.warning("a request on watched route %s passed unobserved: %s (set "
                           "[serving] unparseable, or add an extractor for this schema)",
                           route, reason)

    def warn_labels_only(self) -> None:
        """Say once that the boundary detector gets no evidence from label-only answers."""
        if self._warned_labels:
            return
        self._warned_labels = True
        if "boundary" in self.monitor.config.detectors:
            self.metrics.without_evidence.labels(detector="boundary").set(1)
            logger.warning("the API answers labels only and the monitor has no model: the "
                           "boundary detector gets no evidence (pass --model / "
                           "Monitor(model=...))")

    def reset(self, client_id: str) -> None:
        """Forget a client in the monitor and in the serving layer."""
        self.monitor.reset(client_id)
        self.policy.forget(client_id)
        self.flags.drop(client_id)


class MonitoredRequest:
    """One monitored request: its identity, body, rows, the app's captured answer, and how
    it is finally answered."""

    def __init__(self, middleware: ExtractionMonitorMiddleware, scope, receive, send,
                 route: str, method: str) -> None:
        self.mw = middleware
        self.scope, self.receive, self.send = scope, receive, send
        self.route, self.method = route, method
        self.started = time.perf_counter()
        self.client_id: str | None = None

    async def reject(self, status: int, reason: str, message: str) -> None:
        await self.mw.send_rejected(self.send, status, reason, message, self.route)

    async def run(self) -> None:
        mw = self.mw
        try:
            self.client_id = mw.identify(self.scope)
        except IdentityError as exc:
            await self.reject(400, "identity", str(exc))
            return
        early = SERVE
        if mw.policy.refuses_early:
            try:
                status = await mw.flag_status(self.client_id)
            except StoreUnavailable as exc:
                await mw.send_store_unavailable(self.send, exc)
                return
            if status is not None:
                early = mw.policy.before_request(self.client_id, status.flagged,
                                                 status.peak_score, status.exposure_exceeded)
        if early.outcome == "block":
            await mw.send_blocked(self.send)
            return
        try:
            body = await read_body(self.scope, self.receive, mw.config.max_body_bytes)
        except BodyTooLarge:
            await self.reject(413, "too_large", f"request body exceeds the limit of "
                                                f"{mw.config.max_body_bytes} bytes; send "
                                                "fewer rows")
            return
        if body is None:  # client went away
            return
        try:
            readable = decode_request(body, header(self.scope, b"content-encoding"),
                                      mw.config.max_body_bytes)
            ex = extract(readable, mw.n_features, mw.feature_names, mw.extractors,
                         max_rows=mw.config.max_rows,
                         content_type=_text(header(self.scope, b"content-type")),
                         schema=mw.schema)
        except Unrecognised as exc:
            await self._unrecognised(exc, body, early)
            return
        except ExtractionError as exc:
            await self.reject(exc.status, exc.reason, str(exc))
            return
        except Exception as exc:  # an extractor bug must not break the app: read as unreadable
            logger.exception("reading a request on %s failed", self.route)
            mw.metrics.observe_errors.inc()
            await self._unrecognised(Unrecognised(f"the monitor could not read this request "
                                                  f"({type(exc).__name__})",
                                                  reason="extractor_failed"), body, early)
            return

        if early.outcome == "throttle":
            admitted = await anyio.to_thread.run_sync(mw.policy.admit, self.client_id,
                                                      "throttle", ex.n_rows)
            if admitted.outcome == "throttle":
                await mw.send_throttled(self.send, admitted.retry_after, admitted.message)
                return

        captured = Captured()
        app_started = time.perf_counter()
        await mw.app(with_rows(identity_encoded(self.scope), ex), replay(body, self.receive),
                     captured.send)
        app_time = time.perf_counter() - app_started
        if not 200 <= captured.status < 300:  # unanswered queries leak nothing
            await captured.replay(self.send)
            return
        response_payload, outputs = self._outputs(captured, ex.extractor, ex.n_rows)
        if mw.config.shadow and early.outcome == SERVE.outcome:
            await captured.replay(self.send)  # the answer first; enforcement from the next one
            mw.metrics.added_latency.observe(
                max(0.0, time.perf_counter() - self.started - app_time))
            await self._observe_in_shadow(ex, outputs)
            return
        try:
            verdict, decision = await mw.call(self._inline(ex.n_rows), self._observe_and_decide,
                                              ex.observed, outputs, ex.n_rows)
        except InvalidInput as exc:
            await self.reject(422, "invalid_outputs", str(exc))
            return
        except StoreUnavailable as exc:
            cached = mw.flags.get(self.client_id)
            if cached is not None:
                await mw.send_blocked(self.send)
                return
            await mw.send_store_unavailable(self.send, exc)
            return
        except StoreWriteError as exc:
            mw.health.failed("state store writes failing", lost=1)
            logger.debug("store write failed: %s", exc)
            await self._unobserved_answer(early, captured, ex.extractor, response_payload,
                                          outputs)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", self.client_id)
            mw.metrics.observe_errors.inc()
            await self._unobserved_answer(early, captured, ex.extractor, response_payload,
                                          outputs)
            return
        if mw._store_down():
            mw.health.failed("state store unreachable; updates buffered in this worker")
        else:
            mw.health.ok()
        self._act_on(verdict, decision, ex.n_rows)
        await self._answer(decision, captured, ex.extractor, response_payload, outputs)
        mw.metrics.added_latency.observe(max(0.0, time.perf_counter() - self.started - app_time))

    async def _observe_in_shadow(self, ex, outputs) -> None:
        """Shadow mode: observe after the answer was sent (see the module docstring); the
        verdict acts from this client's next request. Nothing is sent from here."""
        mw = self.mw
        try:
            verdict, decision = await mw.call(self._inline(ex.n_rows), self._observe_and_decide,
                                              ex.observed, outputs, ex.n_rows)
        except (InvalidInput, StoreUnavailable, StoreWriteError) as exc:
            if isinstance(exc, StoreWriteError):
                mw.health.failed("state store writes failing", lost=1)
            logger.info("shadow observe for client %s skipped: %s", self.client_id,
                        type(exc).__name__)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", self.client_id)
            mw.metrics.observe_errors.inc()
            return
        self._act_on(verdict, decision, ex.n_rows)

    def _inline(self, n_rows: int) -> bool:
        """Whether this request's observe runs on the event loop: a few rows on a local
        store take well under a millisecond, less than a worker-thread hop and the GIL
        hand-over it costs; larger requests leave the loop free (``[serving] inline_rows``)."""
        return self.mw.inline and n_rows <= self.mw.config.inline_rows

    def _act_on(self, verdict, decision: Decision, n_rows: int) -> None:
        """What follows the policy's decision on ``verdict``: flags cached, metrics, log and
        alert."""
        mw = self.mw
        mw.silence.observed()
        if verdict.flagged or getattr(verdict, "exposure_exceeded", False):
            mw.flags.put(self.client_id, _status_of(verdict))
        mw.record(self.client_id, verdict, n_rows, decision)

    async def _unrecognised(self, exc: Unrecognised, body: bytes, early: Decision) -> None:
        """A body no extractor understands: per ``unparseable`` (flagged clients refused)."""
        mw = self.mw
        if early.outcome in ("throttle", "degrade"):  # cannot count or degrade it: refuse
            await self.reject(403 if early.outcome == "degrade" else 429, "unreadable_flagged",
                              "this client's answers are limited and this request's format "
                              "cannot be read by the monitor; send a supported format")
            return
        if mw.config.unparseable == "reject":
            await self.reject(400, exc.reason, str(exc))
            return
        mw.metrics.unobserved.labels(reason=exc.reason).inc()
        mw.metrics.requests.labels(outcome="unobserved").inc()
        if mw.config.unparseable == "pass":
            mw.log_unread(self.route, str(exc))
        await mw.app(self.scope, replay(body, self.receive), self.send)

    async def _unobserved_answer(self, early: Decision, captured, extractor, payload,
                                 outputs) -> None:
        """The monitor could not record this request: answer per ``fail_mode``."""
        mw = self.mw
        mw.metrics.requests.labels(outcome="error").inc()
        if mw.config.fail_mode == "closed":
            await send_error(self.send, 503, "the extraction monitor is unavailable; retry "
                                             "later")
            return
        await self._answer(Decision(early.outcome if early.outcome == "degrade" else "serve"),
                           captured, extractor, payload, outputs)

    async def _answer(self, decision: Decision, captured: Captured, extractor,
                      response_payload, outputs) -> None:
        mw = self.mw
        if decision.outcome == "block":
            await mw.send_blocked(self.send)
        elif decision.outcome == "throttle":
            await mw.send_throttled(self.send, decision.retry_after, decision.message)
        elif decision.outcome == "degrade":
            body = None
            if response_payload is not None and outputs is not None:
                cfg = mw.config
                new = degrade(outputs, cfg.degrade_mode, mw.classes, cfg.degrade_decimals,
                              cfg.degrade_strength,
                              regression=mw.monitor.task == "regression")
                try:
                    body = json_bytes(extractor.rewrite_response(response_payload, new))
                except Exception:
                    logger.exception("could not rewrite a %s response", extractor.name)
            if body is None:  # an answer we cannot degrade is not sent: fail closed
                mw.metrics.requests.labels(outcome="degrade_failed").inc()
                await send_error(self.send, 403, "this client's answers are limited and this "
                                                 "answer could not be limited; request an "
                                                 "uncompressed JSON answer")
                return
            mw.metrics.requests.labels(outcome="degraded").inc()
            await captured.replay(self.send, body)
        else:
            mw.metrics.requests.labels(outcome="served").inc()
            await captured.replay(self.send)

    def _outputs(self, captured: Captured, extractor, n: int):
        """``(payload, outputs)`` from the app's response; ``(None, None)`` if unreadable."""
        try:
            payload = json.loads(captured.decoded_body())
        except (ValueError, UnicodeDecodeError, OSError, EOFError, zlib.error, RecursionError):
            return None, None
        try:
            outputs = extractor.parse_response(payload)
        except Exception:  # a custom extractor must not fail the request
            logger.exception("response extractor %s failed", getattr(extractor, "name", "?"))
            outputs = None
        regression = self.mw.monitor.task == "regression"
        if regression and outputs is not None and outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]  # a regressor answering [[value], ...]
        if outputs is not None and (len(outputs) != n or (
                outputs.ndim == 2 and (regression
                                       or outputs.shape[1] != len(self.mw.classes)))):
            outputs = None
        if (outputs is not None and outputs.ndim == 1 and not regression
                and self.mw.monitor.model is None):
            self.mw.warn_labels_only()
        return payload, outputs

    def _observe_and_decide(self, X, outputs: np.ndarray | None, n_rows: int
                            ) -> tuple[object, Decision]:
        """The verdict on these rows and the policy's decision on it, in one call (a
        decision that starts a throttle writes to the store)."""
        verdict = self._observe(X, outputs)
        return verdict, self.mw.policy.after_verdict(self.client_id, verdict, n_rows)

    def _observe(self, X, outputs: np.ndarray | None):
        """``monitor.observe``; unusable outputs fall back to ``None``."""
        monitor = self.mw.monitor
        if outputs is not None:
            try:
                return monitor.observe(self.client_id, X, outputs)
            except InvalidInput:
                pass
        return monitor.observe(self.client_id, X, None)


def _status_of(verdict):
    from monitor.monitor import FlagStatus

    return FlagStatus(bool(verdict.flagged), float(verdict.peak_score), verdict.flag_at,
                      verdict.reason, bool(getattr(verdict, "exposure_exceeded", False)))


def header(scope, name: bytes) -> bytes | None:
    """The last value of request header ``name`` (lower case), or ``None``."""
    value = None
    for key, val in scope.get("headers", []):
        if key.lower() == name:
            value = val
    return value


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def identity_encoded(scope):
    """``scope`` asking the app for an uncompressed answer (the monitor must read it)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
    headers.append((b"accept-encoding", b"identity"))
    return {**scope, "headers": headers}


def with_rows(scope, extraction: Extraction):
    """``scope`` with the rows the middleware read in its ``state``
    (:data:`~monitor.serving.extractors.REQUEST_ROWS_KEY`): the app need not parse again."""
    return {**scope, "state": {**scope.get("state", {}), REQUEST_ROWS_KEY: extraction}}


def decode_request(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """A request body with its ``Content-Encoding`` undone (at most ``limit`` bytes)."""
    codings = [c.strip().lower() for c in (encoding or b"").split(b",") if c.strip()]
    for coding in reversed(codings):
        if coding == b"identity":
            continue
        try:
            body = _decompress(coding, body, limit)
        except (OSError, EOFError, zlib.error, ValueError):
            raise ExtractionError("request body does not match its Content-Encoding",
                                  reason="bad_encoding") from None
        if body is None:
            raise ExtractionError(f"request Content-Encoding {coding.decode('latin-1')!r} is "
                                  "not supported", status=415, reason="bad_encoding")
    return body


def _decompress(coding: bytes, body: bytes, limit: int) -> bytes | None:
    if coding in (b"gzip", b"x-gzip"):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == b"deflate":
        d = zlib.decompressobj(zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
    elif coding == b"br":
        try:
            import brotli
        except ImportError:
            return None
        out = brotli.Decompressor().process(body)
        if len(out) > limit:
            raise ValueError("too large")
        return out
    else:
        return None
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise ExtractionError(f"decoded request body exceeds {limit} bytes", status=413,
                              reason="too_large")
    return out


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
        """The body with its content-encoding undone (gzip, deflate, br with ``brotli``);
        ``ValueError`` for an encoding the monitor cannot read."""
        body = self.body
        codings = [c.strip().lower() for c in (self.header(b"content-encoding") or b"")
                   .split(b",") if c.strip()]
        for coding in reversed(codings):
            if coding == b"identity":
                continue
            if coding in (b"gzip", b"x-gzip"):
                body = gzip.decompress(body)
                continue
            out = _decompress(coding, body, 1 << 30)
            if out is None:
                raise ValueError(f"cannot decode a {coding!r} response")
            body = out
        return body

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
