"""``ExtractionMonitorMiddleware``: pure ASGI middleware that watches a prediction API.

The middleware wires the serving layer together once and routes each request:

* admin routes (``/monitor/...``, including ``/monitor/metrics``) go to
  :class:`~monitor.serving.admin.AdminAPI`; the app's own ``/metrics`` is left alone;
* a request that carries no body and uses GET/HEAD/OPTIONS goes to the app;
* a request with a body on a path no route watches (:mod:`monitor.serving.routes`:
  case-insensitive, on the normalised path) is passed and counted
  (``extraction_monitor_unobserved_requests_total{reason="unwatched_route"}``), or refused
  with ``[serving] unwatched = "refuse"``;
* every other request on a watched route — ``POST``, ``post``, ``PUT``, ``PATCH``, a GET
  with a body — is handled by one :class:`~monitor.serving.responder.MonitoredRequest`
  (identity, flags, rows, the app's answer, observe, enforcement: see
  :mod:`monitor.serving.responder`), given the :class:`~monitor.serving.responder.RequestContext`
  built here. HTTP plumbing (body reading, response capture, content decoding) lives in
  :mod:`monitor.serving.http`.
"""

from __future__ import annotations

import logging

from monitor.environment import Environment
from monitor.hashing import digest_key
from monitor.serving.admin import AdminAPI
from monitor.serving.alerts import Alerter
from monitor.serving.extractors import DEFAULT_EXTRACTORS
from monitor.serving.health import FlagCache, Silence, StoreHealth
from monitor.serving.http import carries_body
from monitor.serving.identity import ClientIdentifier, GroupResolver, resolve_salt
from monitor.serving.metrics import ServingMetrics
from monitor.serving.policy import EnforcementPolicy
from monitor.serving.responder import MonitoredRequest, Notices, RequestContext, RowReader
from monitor.serving.responses import send_error
from monitor.serving.routes import RouteTable, normalise_path
from monitor.serving.store_calls import FlagReader, StoreCalls
from monitor.settings import DEFAULT_TTL, ServingConfig

logger = logging.getLogger("extraction_monitor.serving")


class ExtractionMonitorMiddleware:
    """Monitor a prediction API's ``routes`` with ``monitor`` and act on its verdicts.

    ``app.add_middleware(ExtractionMonitorMiddleware, monitor=mon, config=ServingConfig(...))``.
    ``routes`` (default: ``config.routes``, the well-known inference paths) are paths,
    globs or ``{param}`` patterns. The admin token comes from ``admin_token`` or the
    ``EXTRACTION_MONITOR_ADMIN_TOKEN`` environment variable (none: admin API disabled).
    ``feature_names`` (default: the profile's) map named columns. ``metrics_registry``
    merges the monitor's metrics into the app's prometheus-client registry. A monitor
    without a store is given an in-process ``memory://`` store (evidence TTL 30 days).

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from monitor import Monitor, Profile
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    >>> model = LogisticRegression().fit(X, y)
    >>> async def app(scope, receive, send): ...
    >>> mw = ExtractionMonitorMiddleware(app, monitor=Monitor(Profile().fit(model, X, y)),
    ...                                  routes=["/predict"], config=ServingConfig(salt="s"))
    >>> mw.routes.routes, mw.context.reader.n_features
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
        self.config = config = config or ServingConfig()
        self.routes = RouteTable(routes or config.routes)
        salt = config.salt or resolve_salt("memory://", environ=env)
        if monitor.digest_key is None:  # every worker of the deployment agrees on retries
            monitor.digest_key = digest_key(salt)
        if monitor.store_is_default:  # the deployment's evidence TTL
            monitor.use_store(MemoryStore(ttl_seconds=DEFAULT_TTL))
        identify = identifier or ClientIdentifier(
            salt, config.client_header, trusted_proxies=config.trusted_proxies,
            sources=config.identity_sources)
        self.metrics = metrics or ServingMetrics(registry=metrics_registry)
        alerter = Alerter(config.webhook_url, config.webhook_retries, config.webhook_backoff,
                          config.webhook_timeout, config.alerts_size, self.metrics)
        policy = EnforcementPolicy(config, limiter=monitor.store.take)
        calls = StoreCalls(monitor.store, config.inline_rows)
        cache = FlagCache()
        health = StoreHealth(self.metrics)
        self.silence = Silence(config.silence_seconds, self.metrics)
        names = feature_names or monitor.feature_names
        extractors = tuple(extractors)
        reader = RowReader(monitor.n_features, list(names) if names else None, extractors,
                           getattr(getattr(monitor, "profile", None), "schema_", None),
                           config.max_rows, config.max_body_bytes)
        self.context = RequestContext(
            app=app, monitor=monitor, options=config, policy=policy, identify=identify,
            reader=reader, calls=calls,
            flags=FlagReader(monitor, calls, cache, config.flag_refresh_seconds),
            health=health, silence=self.silence, metrics=self.metrics, alerter=alerter,
            notices=Notices(self.metrics), group_of=None if config.grouping is None else
            GroupResolver(config.grouping, ClientIdentifier(
                salt, config.client_header, trusted_proxies=config.trusted_proxies,
                sources=config.identity_sources)))
        token = admin_token if admin_token is not None else env.admin_token
        self.admin = AdminAPI(monitor, policy, alerter, self.metrics, token or None,
                              config.metrics_require_token, identifier=identify,
                              health=health, flags=cache)
        formats = [e.name for e in extractors] + ["csv"]
        for line in self.routes.banner(formats):
            logger.info(line)
        logger.info("identity: %s; unwatched requests: %s; unreadable bodies: %s",
                    " > ".join(config.identity_sources), config.unwatched,
                    config.unparseable)

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
            await MonitoredRequest(self.context, scope, receive, send, route, method).run()
