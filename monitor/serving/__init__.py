"""Serving: watch a live prediction API over HTTP.

* :class:`ExtractionMonitorMiddleware` — pure ASGI middleware for any ASGI app;
* :class:`~monitor.settings.ServingConfig` — the ``[serving]`` table (identity, actions,
  limits, webhook);
* :class:`EnforcementPolicy` — what to do with a request before and after its verdict;
* :class:`ReverseProxy` / :func:`build_proxy_app` — monitor an API you cannot modify;
* :func:`extractor` — read your own request schema (a function from body to DataFrame);
* :class:`RouteTable` — which paths are watched (patterns, normalised paths).

A reference victim served over HTTP (demos, tests) lives in the test range, not here.
"""

from monitor.serving.actions import Throttle, degrade
from monitor.serving.admin import AdminAPI
from monitor.serving.extractors import (
    DEFAULT_EXTRACTORS,
    ExtractedRows,
    ExtractionError,
    FunctionExtractor,
    extract,
    extract_rows,
    extractor,
)
from monitor.serving.identity import ClientIdentifier, IdentityError, resolve_salt
from monitor.serving.metrics import ServingMetrics
from monitor.serving.middleware import ExtractionMonitorMiddleware
from monitor.serving.policy import Decision, EnforcementPolicy
from monitor.serving.proxy import ReverseProxy, build_proxy_app
from monitor.serving.routes import RouteTable
from monitor.settings import ActionLevel, ServingConfig

__all__ = [
    "DEFAULT_EXTRACTORS", "ActionLevel", "AdminAPI", "ClientIdentifier", "Decision",
    "EnforcementPolicy", "ExtractedRows", "ExtractionError", "ExtractionMonitorMiddleware",
    "FunctionExtractor", "IdentityError", "ReverseProxy", "RouteTable", "ServingConfig",
    "ServingMetrics", "Throttle", "build_proxy_app", "degrade", "extract", "extract_rows",
    "extractor", "resolve_salt",
]
