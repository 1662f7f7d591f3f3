"""Prometheus metrics of the serving layer (never client ids, nothing that moves with one
client's score).

They live in a registry of their own, served at ``/monitor/metrics`` (admin token required by
default) so that the app's own ``/metrics`` is never replaced; pass the app's registry
(``registry=prometheus_client.REGISTRY``) to merge them into it instead. A scrape costs
O(1) in the number of clients: the two client counts come from the store's index.
No metric exports a client's score or an aggregate of scores (a histogram of scores after
each request told a client its own score after every query).

With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``serve``/``proxy`` do it
for ``--workers`` > 1) and every worker's ``/metrics`` reports the sum over all workers
(prometheus_client's multiprocess mode); otherwise each process reports its own.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.environment import Environment

PREFIX = "extraction_monitor"
STORE_COUNTERS = {
    "missed_updates": "Updates kept only in a worker's local buffer during a store outage.",
    "outages": "State store outages this worker entered.",
    "flushed": "Buffered client states written back to the store after an outage.",
    "conflicts": "Buffered client states merged after an outage into a copy another worker "
                 "changed meanwhile (counts and flags kept).",
    "lost_locks": "Updates lost because a store lock expired before the write.",
    "unsettled": "Writes whose reply was lost, not known to have landed (counted twice if so).",
    "evicted": "Buffered updates lost because the outage buffer was full.",
    "optimistic_retries": "SQLite updates recomputed because another writer won the race.",
}
"""Cumulative ``store.stats()`` keys, exported as ``extraction_monitor_store_<key>_total``."""
STORE_GAUGES = {
    "buffered_clients": "Clients whose latest state only this worker holds (store outage).",
    "down": "1 while this worker cannot reach the state store.",
}


def multiprocess_mode(env: Environment | None = None) -> bool:
    """Whether metric values go to ``PROMETHEUS_MULTIPROC_DIR`` files in this process
    (prometheus_client decides once, when first imported)."""
    from prometheus_client import values

    env = env or Environment.read()
    return values.ValueClass is not values.MutexValue and bool(env.metrics_dir)


class ServingMetrics:
    """Counters, gauges and histograms for one app; ``render()`` gives the exposition text.

    >>> m = ServingMetrics()
    >>> m.requests.labels(outcome="served").inc()
    >>> b'extraction_monitor_requests_total{outcome="served"} 1.0' in m.render()
    True
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess: bool | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = multiprocess_mode() if multiprocess is None else multiprocess
        self.registry = registry if registry is not None else CollectorRegistry(
            auto_describe=True)
        r = self.registry
        shared = {"multiprocess_mode": "mostrecent"}  # same value in every worker (the store's)
        summed = {"multiprocess_mode": "livesum"}  # per-worker values, added up
        self.requests = Counter(
            f"{PREFIX}_requests", "Monitored requests by outcome (served, degraded, blocked, "
            "throttled, rejected, unobserved, degrade_failed, error, store_unavailable).",
            ["outcome"], registry=r)
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests", "Requests refused as malformed, by reason.",
            ["reason"], registry=r)
        self.unobserved = Counter(
            f"{PREFIX}_unobserved_requests", "Requests passed to the app without being "
            "observed, by reason (unrecognised_format, unwatched_route).", ["reason"],
            registry=r)
        self.unread_answers = Counter(
            f"{PREFIX}_unread_answers", "Answers whose model outputs the monitor could not "
            "read (observed without them), by reason (not_json, no_outputs, "
            "unusable_outputs).", ["reason"], registry=r)
        self.silences = Counter(
            f"{PREFIX}_silence_warnings", "Warnings that requests flowed but none was "
            "observed for silence_seconds.", registry=r)
        self.without_evidence = Gauge(
            f"{PREFIX}_detector_without_evidence", "1 when a detector gets no evidence "
            "(e.g. boundary: the API answers labels only and no model was given).",
            ["detector"], registry=r, multiprocess_mode="livemax")
        self.store_degraded = Gauge(
            f"{PREFIX}_store_degraded", "1 while writes to the state store fail or it is "
            "unreachable (updates buffered or lost; see /monitor/health).", registry=r,
            multiprocess_mode="livemax")
        self.store_lost_updates = Counter(
            f"{PREFIX}_store_lost_updates", "Updates that could not be written to the state "
            "store (a write failed).", registry=r)
        self.queries = Counter(f"{PREFIX}_queries", "Query rows observed by the monitor.",
                               registry=r)
        self.flags = Counter(f"{PREFIX}_flags", "Clients newly flagged.", registry=r)
        self.group_flags = Counter(f"{PREFIX}_group_flags",
                                   "Groups ([serving] group_by) newly flagged.", registry=r)
        self.flagged_clients = Gauge(f"{PREFIX}_flagged_clients",
                                     "Clients currently flagged.", registry=r, **shared)
        self.clients = Gauge(f"{PREFIX}_clients", "Clients the monitor tracks.", registry=r,
                             **shared)
        self.detector_errors = Counter(
            f"{PREFIX}_detector_errors", "Exceptions raised by a detector (its evidence was "
            "skipped for that request).", ["detector"], registry=r)
        self.observe_errors = Counter(
            f"{PREFIX}_observe_errors", "Monitored requests whose observe call failed outside "
            "the detectors (answered per fail_mode).", registry=r)
        self.evidence_resets = Counter(
            f"{PREFIX}_evidence_resets", "Stored client states whose evidence was written for "
            "other detectors or tests (evidence reset, flag kept).", registry=r)
        self.added_latency = Histogram(
            f"{PREFIX}_added_latency_seconds",
            "Time the monitor adds to a request (parsing, observing, acting).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, float("inf")),
            registry=r)
        self.alerts = Counter(f"{PREFIX}_alerts", "Webhook alert deliveries by result.",
                              ["result"], registry=r)
        self.corrupt_records = Counter(
            f"{PREFIX}_store_corrupt_records", "Unreadable stored client states (each reset "
            "that client).", registry=r)
        self.reused_states = Counter(
            f"{PREFIX}_reused_states", "Observes that continued from the client state this "
            "worker wrote last, without decoding the stored record.", registry=r)
        self.decoded_states = Counter(
            f"{PREFIX}_decoded_states", "Observes that decoded the stored client record.",
            registry=r)
        self.store_counters = {key: Counter(f"{PREFIX}_store_{key}", doc, registry=r)
                               for key, doc in STORE_COUNTERS.items()}
        self.store_gauges = {key: Gauge(f"{PREFIX}_store_{key}", doc, registry=r, **summed)
                             for key, doc in STORE_GAUGES.items()}
        self._seen: dict[str, float] = {}
        self._detector_children: dict[str, object] = {}
        self._sync_lock = threading.Lock()

    def sync(self, counters) -> None:
        """Bring the metrics up to a monitor's cumulative :class:`~monitor.monitor.MonitorCounters`
        (cheap; call often)."""
        with self._sync_lock:
            for name, value in counters.detector_errors.items():
                child = self._detector_children.get(name)
                if child is None:  # the labelled series exists (at 0) from the first sync
                    child = self._detector_children[name] = self.detector_errors.labels(
                        detector=name)
                self._advance(f"detector:{name}", child, value)
            self._advance("corrupt_records", self.corrupt_records, counters.corrupt_records)
            self._advance("evidence_resets", self.evidence_resets, counters.evidence_resets)
            self._advance("reused_states", self.reused_states, counters.reused_states)
            self._advance("decoded_states", self.decoded_states, counters.decoded_states)
            for key, value in counters.store.items():
                if key in self.store_counters:
                    self._advance(f"store:{key}", self.store_counters[key], value)
                elif key in self.store_gauges:
                    self.store_gauges[key].set(float(value))

    def _advance(self, key: str, counter, value: float) -> None:
        delta = float(value) - self._seen.get(key, 0.0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = float(value)

    def render(self) -> bytes:
        """The Prometheus text exposition (summed over workers in multiprocess mode)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
