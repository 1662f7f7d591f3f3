"""Serving: watch a live prediction API over HTTP.

* :class:`ExtractionMonitorMiddleware` — pure ASGI middleware for any ASGI app;
* :class:`ServingConfig` — the ``[serving]`` table (identity, actions, limits, webhook);
* :class:`ReverseProxy` / :func:`build_proxy_app` — monitor an API you cannot modify;
* :func:`build_victim_app` — a reference victim served over HTTP (demos, tests).
"""

from monitor.serving.actions import degrade, enforcement
from monitor.serving.admin import ADMIN_TOKEN_ENV, AdminAPI
from monitor.serving.app import build_victim_app, build_victim_monitor
from monitor.serving.config import ActionLevel, ServingConfig
from monitor.serving.extractors import DEFAULT_EXTRACTORS, ExtractionError, extract_rows
from monitor.serving.identity import ClientIdentifier
from monitor.serving.metrics import ServingMetrics
from monitor.serving.middleware import ExtractionMonitorMiddleware
from monitor.serving.proxy import ReverseProxy, build_proxy_app

__all__ = [
    "ADMIN_TOKEN_ENV", "DEFAULT_EXTRACTORS", "ActionLevel", "AdminAPI", "ClientIdentifier",
    "ExtractionError", "ExtractionMonitorMiddleware", "ReverseProxy", "ServingConfig",
    "ServingMetrics", "build_proxy_app", "build_victim_app", "build_victim_monitor", "degrade",
    "enforcement", "extract_rows",
]
