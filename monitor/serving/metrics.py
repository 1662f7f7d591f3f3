"""Prometheus metrics of the serving layer, in a registry of their own (never client ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "extraction_monitor"


class ServingMetrics:
    """Counters, gauges and histograms for one app; ``render()`` gives the exposition text.

    >>> m = ServingMetrics()
    >>> m.requests.labels(outcome="served").inc()
    >>> b'extraction_monitor_requests_total{outcome="served"} 1.0' in m.render()
    True
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Monitored requests by outcome "
            "(served, degraded, blocked, throttled, rejected, error).", ["outcome"], registry=r)
        self.queries = Counter(f"{PREFIX}_queries", "Query rows observed by the monitor.",
                               registry=r)
        self.flags = Counter(f"{PREFIX}_flags", "Clients newly flagged.", registry=r)
        self.flagged_clients = Gauge(f"{PREFIX}_flagged_clients",
                                     "Clients currently flagged.", registry=r)
        self.clients = Gauge(f"{PREFIX}_clients", "Clients the monitor tracks.", registry=r)
        self.score = Histogram(
            f"{PREFIX}_score", "Overall client score after each monitored request.",
            buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, float("inf")), registry=r)
        self.detector_errors = Counter(
            f"{PREFIX}_detector_errors", "Exceptions raised inside the monitor while observing.",
            registry=r)
        self.added_latency = Histogram(
            f"{PREFIX}_added_latency_seconds",
            "Time the monitor adds to a request (parsing, observing, acting).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, float("inf")),
            registry=r)
        self.alerts = Counter(f"{PREFIX}_alerts", "Webhook alert deliveries by result.",
                              ["result"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
