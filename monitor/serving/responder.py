"""One monitored request, from its identity to its answer (Starlette's responder pattern:
one :class:`MonitoredRequest` per request, given the :class:`RequestContext` its middleware
shares with every request).

**One request, in order.** Its identity (:class:`~monitor.serving.identity.ClientIdentifier`:
an ambiguous identity is a 400); a flagged client is blocked before its body is read; the
body is read (size-limited while streaming, :mod:`monitor.serving.http`) and parsed strictly
into rows (:mod:`monitor.serving.extractors`: duplicate keys, two formats, too deep → 400;
bad values → 422; each rejection a one-line log and a metric by reason); a throttled client
pays one token per row; the app answers the *same bytes* the monitor parsed, asked for an
``identity``-encoded response; the outputs are read from the response (gzip, deflate and,
with ``brotli`` installed, br are decoded) and checked by
:func:`monitor.answers.check_outputs` (outputs that cannot be read or do not fit the model:
observed without them); ``monitor.observe`` runs on the event loop or in a worker thread
(:class:`~monitor.serving.store_calls.StoreCalls`); and the
:class:`~monitor.serving.policy.EnforcementPolicy` decides the answer. A degraded client
whose answer cannot be read (an encoding or format the monitor cannot rewrite) is refused:
degrading fails closed.

**A body no extractor understands** passes to the app unobserved (counted, and logged
naming the route), per ``[serving] unparseable``; a flagged client's such body is refused.

**Flags across workers and outages.** The store is the source of truth for flags; a worker
reads them through a :class:`~monitor.serving.store_calls.FlagReader`, which falls back to
the worker's flag cache when the store cannot answer. A failing store write raises an alarm
(:class:`~monitor.serving.health.StoreHealth`). A client counts as newly flagged (log,
alert, first 429) only in the request whose rows raised the flag, so each flag alerts once
however many workers there are.

**Shadow mode** (``[serving] shadow = true``): an answer the client is entitled to (it was
not flagged before this request) is sent as soon as the app gives it, and the monitor
observes afterwards; a flag raised by that request acts once that observe has finished, so
the flagging request, and any the client sent while it ran, are answered in full. It trades
those answers for an answer that never waits for the monitor.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from monitor.answers import Answers, check_outputs
from monitor.errors import InvalidInput
from monitor.eventlog import log_event, verdict_fields
from monitor.serving.actions import degrade
from monitor.serving.alerts import Alerter
from monitor.serving.extractors import (
    REQUEST_ROWS_KEY,
    Extraction,
    ExtractionError,
    Unrecognised,
    extract,
)
from monitor.serving.health import Silence, StoreHealth
from monitor.serving.http import (
    BodyTooLarge,
    Captured,
    ContentDecodingError,
    DecodedTooLarge,
    UnsupportedEncoding,
    decode_content,
    header,
    header_text,
    identity_encoded,
    read_body,
    replay,
    with_state,
)
from monitor.serving.identity import IdentityError
from monitor.serving.metrics import ServingMetrics
from monitor.serving.policy import SERVE, Decision, EnforcementPolicy
from monitor.serving.responses import json_bytes, send_error
from monitor.serving.store_calls import FlagReader, StoreCalls
from monitor.settings import ServingConfig
from monitor.stores.base import StoreUnavailable, StoreWriteError

logger = logging.getLogger("extraction_monitor.serving")

UNAVAILABLE = "the extraction monitor's state store is unavailable; retry later"
RESPONSE_DECODE_LIMIT = 1 << 30
"""Most bytes an app's answer may decode to for the monitor to read it (the app is trusted;
the bound only stops a runaway answer)."""

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


@dataclass(frozen=True)
class RowReader:
    """How a request's rows are read: the profile's columns and feature schema, the
    extractors, and the limits on a body.

    >>> from monitor.serving.extractors import DEFAULT_EXTRACTORS
    >>> reader = RowReader(n_features=2, feature_names=["a", "b"], schema=None,
    ...                    extractors=DEFAULT_EXTRACTORS, max_rows=10, max_body_bytes=1000)
    >>> reader.extract(b'{"instances": [{"b": 2, "a": 1}]}', None).X.tolist()
    [[1.0, 2.0]]
    """

    n_features: int
    feature_names: list[str] | None
    extractors: tuple
    schema: Any
    max_rows: int
    max_body_bytes: int

    def decode(self, body: bytes, content_encoding: bytes | None) -> bytes:
        """A request body with its ``Content-Encoding`` undone (4xx saying what to fix)."""
        try:
            return decode_content(body, content_encoding, self.max_body_bytes)
        except UnsupportedEncoding as exc:
            raise ExtractionError(f"request {exc}", status=415, reason="bad_encoding") from None
        except DecodedTooLarge:
            raise ExtractionError(f"decoded request body exceeds {self.max_body_bytes} bytes",
                                  status=413, reason="too_large") from None
        except ContentDecodingError:
            raise ExtractionError("request body does not match its Content-Encoding",
                                  reason="bad_encoding") from None

    def extract(self, body: bytes, content_type: str | None) -> Extraction:
        """The rows of a (decoded) request body (:func:`~monitor.serving.extractors.extract`)."""
        return extract(body, self.n_features, self.feature_names, self.extractors,
                       max_rows=self.max_rows, content_type=content_type, schema=self.schema)


class Notices:
    """Warnings a worker gives once (or once a minute) rather than on every request.

    >>> notices = Notices(ServingMetrics())
    >>> notices.unread_answer("/predict", "no_outputs", "no outputs"), \\
    ...     notices.unread_answer("/predict", "no_outputs", "no outputs")
    (True, False)
    """

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self._warned_labels = False
        self._logged_unread: dict[str, float] = {}
        self._unread_answers: set[str] = set()

    def unread_body(self, route: str, reason: str) -> None:
        """One line naming the route, at most once a minute per route."""
        now = time.monotonic()
        if now - self._logged_unread.get(route, -1e9) >= 60:
            self._logged_unread[route] = now
            logger.warning("a request on watched route %s passed unobserved: %s (set "
                           "[serving] unparseable, or add an extractor for this schema)",
                           route, reason)

    def unread_answer(self, route: str, reason: str, detail: str,
                      model_called: bool = False) -> bool:
        """Count an answer whose outputs the monitor cannot use; warn once per route per
        process, naming the route and the fix. True when this call warned."""
        self.metrics.unread_answers.labels(reason=reason).inc()
        if route in self._unread_answers:
            return False
        self._unread_answers.add(route)
        logger.warning("answers on watched route %s cannot be read by the monitor (%s): its "
                       "queries are observed without the model's outputs%s; tell the "
                       "extractor where the answer is with @extractor(outputs=...)",
                       route, detail[:200],
                       ", and the model is called again for each" if model_called else "")
        return True

    def labels_only(self, monitor) -> None:
        """Say once that the boundary detector gets no evidence from label-only answers."""
        if self._warned_labels:
            return
        self._warned_labels = True
        if "boundary" in monitor.config.detectors:
            self.metrics.without_evidence.labels(detector="boundary").set(1)
            logger.warning("the API answers labels only and the monitor has no model: the "
                           "boundary detector gets no evidence (pass --model / "
                           "Monitor(model=...))")


def newly_flagged_group(group: dict[str, Any], n_rows: int) -> bool:
    """Whether the ``n_rows`` rows just observed raised the flag of ``group`` (a verdict's
    ``group`` entry): each group flag is announced once, by the request that raised it.

    >>> newly_flagged_group({"flagged": True, "flag_at": 9, "n_queries": 10}, 3)
    True
    >>> newly_flagged_group({"flagged": True, "flag_at": 4, "n_queries": 10}, 3)
    False
    """
    flag_at = group.get("flag_at")
    return bool(group.get("flagged") and flag_at is not None
                and group["n_queries"] - n_rows <= flag_at < group["n_queries"])


@dataclass(frozen=True)
class RequestContext:
    """What a monitored request needs from its middleware, and nothing else: the app, the
    monitor, the options and policy, how rows are read, how the store and flags are reached,
    and where metrics, alerts and warnings go."""

    app: ASGIApp
    monitor: Any
    options: ServingConfig
    policy: EnforcementPolicy
    identify: Callable[[dict], str]
    reader: RowReader
    calls: StoreCalls
    flags: FlagReader
    health: StoreHealth
    silence: Silence
    metrics: ServingMetrics
    alerter: Alerter
    notices: Notices
    group_of: Callable[[dict], str | None] | None = None
    """The request's group (``[serving] group_by``: a
    :class:`~monitor.serving.identity.GroupResolver`), or ``None``: no groups."""


@dataclass(frozen=True)
class AppAnswer:
    """The app's answer as the monitor read it: the parsed JSON ``payload`` (``None`` if it is
    not JSON), the model's ``outputs`` as the app sent them (what a degraded answer is made
    from) and the same ``answers`` checked against the model, which the monitor observes
    (both ``None`` if unusable)."""

    payload: Any = None
    outputs: np.ndarray | None = None
    answers: Answers | None = None


class MonitoredRequest:
    """One monitored request: its identity, body, rows, the app's captured answer, and how
    it is finally answered (see the module docstring)."""

    def __init__(self, context: RequestContext, scope, receive, send, route: str,
                 method: str) -> None:
        self.ctx = context
        self.scope, self.receive, self.send = scope, receive, send
        self.route, self.method = route, method
        self.started = time.perf_counter()
        self.client_id: str | None = None
        self.group: str | None = None

    async def run(self) -> None:
        ctx = self.ctx
        try:
            self.client_id = ctx.identify(self.scope)
            if ctx.group_of is not None:
                self.group = ctx.group_of(self.scope)
        except IdentityError as exc:
            await self.reject(400, "identity", str(exc))
            return
        early = SERVE
        if ctx.policy.refuses_early:
            try:
                status = await ctx.flags.status(self.client_id)
            except StoreUnavailable as exc:
                await self.send_store_unavailable(exc)
                return
            if status is not None:
                early = ctx.policy.before_request(self.client_id, status.flagged,
                                                  status.peak_score, status.exposure_exceeded)
        if early.outcome == "block":
            await self.send_blocked()
            return
        limit = ctx.reader.max_body_bytes
        try:
            body = await read_body(self.scope, self.receive, limit)
        except BodyTooLarge:
            await self.reject(413, "too_large", f"request body exceeds the limit of {limit} "
                                                "bytes; send fewer rows")
            return
        if body is None:  # client went away
            return
        try:
            readable = ctx.reader.decode(body, header(self.scope, b"content-encoding"))
            ex = ctx.reader.extract(readable, header_text(self.scope, b"content-type"))
        except Unrecognised as exc:
            await self._unrecognised(exc, body, early)
            return
        except ExtractionError as exc:
            await self.reject(exc.status, exc.reason, str(exc))
            return
        except Exception as exc:  # an extractor bug must not break the app: read as unreadable
            logger.exception("reading a request on %s failed", self.route)
            ctx.metrics.observe_errors.inc()
            await self._unrecognised(Unrecognised(f"the monitor could not read this request "
                                                  f"({type(exc).__name__})",
                                                  reason="extractor_failed"), body, early)
            return

        if early.outcome == "throttle":
            admitted = await anyio.to_thread.run_sync(ctx.policy.admit, self.client_id,
                                                      "throttle", ex.n_rows)
            if admitted.outcome == "throttle":
                await self.send_throttled(admitted.retry_after, admitted.message)
                return

        captured = Captured()
        app_started = time.perf_counter()
        await ctx.app(with_state(identity_encoded(self.scope), REQUEST_ROWS_KEY, ex),
                      replay(body, self.receive), captured.send)
        app_time = time.perf_counter() - app_started
        if not 200 <= captured.status < 300:  # unanswered queries leak nothing
            await captured.replay(self.send)
            return
        answer = self._read_answer(captured, ex.extractor, ex.n_rows)
        if ctx.options.shadow and early.outcome == SERVE.outcome:
            await captured.replay(self.send)  # the answer first; enforcement from the next one
            ctx.metrics.added_latency.observe(
                max(0.0, time.perf_counter() - self.started - app_time))
            await self._observe_in_shadow(ex, answer.answers)
            return
        try:
            verdict, decision = await ctx.calls.run(self._observe_and_decide, ex.observed,
                                                    answer.answers, ex.n_rows, rows=ex.n_rows)
        except InvalidInput as exc:
            await self.reject(422, "invalid_outputs", str(exc))
            return
        except StoreUnavailable as exc:
            if ctx.flags.cached(self.client_id) is not None:
                await self.send_blocked()
                return
            await self.send_store_unavailable(exc)
            return
        except StoreWriteError as exc:
            ctx.health.failed("state store writes failing", lost=1)
            logger.debug("store write failed: %s", exc)
            await self._unobserved_answer(early, captured, ex.extractor, answer)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", self.client_id)
            ctx.metrics.observe_errors.inc()
            await self._unobserved_answer(early, captured, ex.extractor, answer)
            return
        if ctx.calls.down():
            ctx.health.failed("state store unreachable; updates buffered in this worker")
        else:
            ctx.health.ok()
        self._act_on(verdict, decision, ex.n_rows)
        await self._answer(decision, captured, ex.extractor, answer)
        ctx.metrics.added_latency.observe(max(0.0, time.perf_counter() - self.started - app_time))

    # ------------------------------------------------------------------ refusals
    async def reject(self, status: int, reason: str, message: str) -> None:
        """A malformed request: ``status`` with ``message``, one log line, counted by reason."""
        self.ctx.metrics.requests.labels(outcome="rejected").inc()
        self.ctx.metrics.rejected.labels(reason=reason).inc()
        logger.info("rejected request on %s: %s (%s)", self.route, reason, message[:200])
        await send_error(self.send, status, message)

    async def send_store_unavailable(self, exc: Exception) -> None:
        logger.error("state store unavailable: %s", exc)
        self.ctx.health.failed("state store unreachable")
        self.ctx.metrics.requests.labels(outcome="store_unavailable").inc()
        await send_error(self.send, 503, UNAVAILABLE)

    async def send_blocked(self) -> None:
        self.ctx.metrics.requests.labels(outcome="blocked").inc()
        await send_error(self.send, 403, self.ctx.options.refusal_message)

    async def send_throttled(self, wait: int, message: str | None = None) -> None:
        self.ctx.metrics.requests.labels(outcome="throttled").inc()
        detail = f"; {message}" if message else ""
        await send_error(self.send, 429, f"rate limited: this client's query pattern was "
                                         f"flagged; retry after {wait} s{detail}",
                         headers=[(b"retry-after", str(wait).encode())])

    # ------------------------------------------------------------------ observing
    async def _observe_in_shadow(self, ex: Extraction, answers: Answers | None) -> None:
        """Shadow mode: observe after the answer was sent (see the module docstring); the
        verdict acts from this client's next request. Nothing is sent from here."""
        ctx = self.ctx
        try:
            verdict, decision = await ctx.calls.run(self._observe_and_decide, ex.observed,
                                                    answers, ex.n_rows, rows=ex.n_rows)
        except (InvalidInput, StoreUnavailable, StoreWriteError) as exc:
            if isinstance(exc, StoreWriteError):
                ctx.health.failed("state store writes failing", lost=1)
            logger.info("shadow observe for client %s skipped: %s", self.client_id,
                        type(exc).__name__)
            return
        except Exception:
            logger.exception("monitor.observe failed for client %s", self.client_id)
            ctx.metrics.observe_errors.inc()
            return
        self._act_on(verdict, decision, ex.n_rows)

    def _observe_and_decide(self, X, answers: Answers | None, n_rows: int
                            ) -> tuple[Any, Decision]:
        """The verdict on these rows and the policy's decision on it, in one call (a
        decision that starts a throttle writes to the store)."""
        if self.ctx.group_of is None:
            verdict = self.ctx.monitor.observe(self.client_id, X, answers)
        else:
            verdict = self.ctx.monitor.observe(self.client_id, X, answers, group=self.group)
        return verdict, self.ctx.policy.after_verdict(self.client_id, verdict, n_rows)

    def _act_on(self, verdict, decision: Decision, n_rows: int) -> None:
        """What follows the policy's decision on ``verdict``: flags cached, metrics, and a
        log line and alert once, in the request that raised the flag."""
        ctx = self.ctx
        ctx.silence.observed()
        if verdict.flagged or getattr(verdict, "exposure_exceeded", False):
            ctx.flags.remember(self.client_id, verdict.flag_status())
        ctx.metrics.queries.inc(n_rows)
        ctx.metrics.sync(ctx.monitor.counters())
        if decision.newly_flagged:
            ctx.metrics.flags.inc()
            self._announce("client_flagged", verdict, ctx.policy.logs(verdict.peak_score),
                           ctx.policy.alerts(verdict.peak_score), decision.outcome)
        if decision.newly_exposed:
            actions = set(ctx.options.exposure_actions)
            self._announce("exposure_limit_reached", verdict, "log" in actions,
                           "alert" in actions)
        group = getattr(verdict, "group", None)
        if group is not None and newly_flagged_group(group, n_rows):
            self._announce_group(verdict, group)

    def _announce_group(self, verdict, group: dict[str, Any]) -> None:
        """A group newly flagged by this request: logged and alerted as the ``log`` and
        ``alert`` levels say for its peak score; its members are not refused for it."""
        ctx = self.ctx
        ctx.metrics.group_flags.inc()
        peak = float(group["peak_score"])
        if ctx.policy.logs(peak):
            log_event(logger, "group_flagged", client_id=self.client_id,
                      group_id=group["group_id"], score=peak,
                      threshold=float(verdict.threshold), reason=group["reason"],
                      action="alert", n_queries=int(group["n_queries"]),
                      flag_at=group["flag_at"], exposure=group["exposure"])
        if ctx.policy.alerts(peak):
            ctx.alerter.notify({**group, "client_id": self.client_id,
                                "threshold": float(verdict.threshold)}, "group_flagged")

    def _announce(self, event: str, verdict, log: bool, alert: bool,
                  action: str | None = None) -> None:
        """Log (the event schema of :mod:`monitor.eventlog`, as offline) and alert."""
        summary = verdict.summary()
        if log:
            log_event(logger, event, **verdict_fields(verdict, action))
        if alert:
            self.ctx.alerter.notify(summary, event)

    # ------------------------------------------------------------------ answering
    def _read_answer(self, captured: Captured, extractor, n: int) -> AppAnswer:
        """The app's answer: its JSON and the outputs it holds, checked against the model
        (:func:`monitor.answers.check_outputs`); outputs that cannot be used are ``None``
        (observed without them, warned once per route)."""
        monitor = self.ctx.monitor
        try:
            payload = json.loads(captured.decoded_body(RESPONSE_DECODE_LIMIT))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self._unread_answer("not_json", f"the answer is not JSON: {type(exc).__name__}")
            return AppAnswer()
        try:
            outputs = extractor.parse_response(payload)
        except Exception:  # a custom extractor must not fail the request
            logger.exception("response extractor %s failed", getattr(extractor, "name", "?"))
            outputs = None
        if outputs is None:
            self._unread_answer("no_outputs", f"the {getattr(extractor, 'name', '?')!r} "
                                              "extractor finds no outputs in the answer")
            return AppAnswer(payload)
        try:
            answers = check_outputs(monitor.profile, outputs, n)
        except InvalidInput as exc:
            self._unread_answer("unusable_outputs", str(exc))
            return AppAnswer(payload)
        if monitor.task == "regression":
            return AppAnswer(payload, answers.labels, answers)  # values, [[v], ...] flattened
        if answers.proba is None and monitor.model is None:
            self.ctx.notices.labels_only(monitor)
        return AppAnswer(payload, np.asarray(outputs), answers)

    def _unread_answer(self, reason: str, detail: str) -> None:
        self.ctx.notices.unread_answer(self.route, reason, detail,
                                       model_called=self.ctx.monitor.model is not None)

    async def _unrecognised(self, exc: Unrecognised, body: bytes, early: Decision) -> None:
        """A body no extractor understands: per ``unparseable`` (flagged clients refused)."""
        ctx = self.ctx
        if early.outcome in ("throttle", "degrade"):  # cannot count or degrade it: refuse
            await self.reject(403 if early.outcome == "degrade" else 429, "unreadable_flagged",
                              "this client's answers are limited and this request's format "
                              "cannot be read by the monitor; send a supported format")
            return
        if ctx.options.unparseable == "reject":
            await self.reject(400, exc.reason, str(exc))
            return
        ctx.metrics.unobserved.labels(reason=exc.reason).inc()
        ctx.metrics.requests.labels(outcome="unobserved").inc()
        if ctx.options.unparseable == "pass":
            ctx.notices.unread_body(self.route, str(exc))
        await ctx.app(self.scope, replay(body, self.receive), self.send)

    async def _unobserved_answer(self, early: Decision, captured: Captured, extractor,
                                 answer: AppAnswer) -> None:
        """The monitor could not record this request: answer per ``fail_mode``."""
        self.ctx.metrics.requests.labels(outcome="error").inc()
        if self.ctx.options.fail_mode == "closed":
            await send_error(self.send, 503, "the extraction monitor is unavailable; retry "
                                             "later")
            return
        await self._answer(Decision(early.outcome if early.outcome == "degrade" else "serve"),
                           captured, extractor, answer)

    async def _answer(self, decision: Decision, captured: Captured, extractor,
                      answer: AppAnswer) -> None:
        ctx = self.ctx
        if decision.outcome == "block":
            await self.send_blocked()
        elif decision.outcome == "throttle":
            await self.send_throttled(decision.retry_after, decision.message)
        elif decision.outcome == "degrade":
            body = None
            if answer.payload is not None and answer.outputs is not None:
                cfg = ctx.options
                new = degrade(answer.outputs, cfg.degrade_mode, ctx.monitor.classes,
                              cfg.degrade_decimals, cfg.degrade_strength,
                              regression=ctx.monitor.task == "regression")
                try:
                    body = json_bytes(extractor.rewrite_response(answer.payload, new))
                except Exception:
                    logger.exception("could not rewrite a %s response", extractor.name)
            if body is None:  # an answer we cannot degrade is not sent: fail closed
                ctx.metrics.requests.labels(outcome="degrade_failed").inc()
                await send_error(self.send, 403, "this client's answers are limited and this "
                                                 "answer could not be limited; request an "
                                                 "uncompressed JSON answer")
                return
            ctx.metrics.requests.labels(outcome="degraded").inc()
            await captured.replay(self.send, body)
        else:
            ctx.metrics.requests.labels(outcome="served").inc()
            await captured.replay(self.send)


__all__ = ["AppAnswer", "MonitoredRequest", "Notices", "RequestContext", "RowReader"]
