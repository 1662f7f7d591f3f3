"""Flag alerts: a bounded in-memory record plus webhook delivery in the background."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

import httpx

from monitor.serving.metrics import ServingMetrics

logger = logging.getLogger("extraction_monitor.serving.alerts")


class Alerter:
    """Record alerts and POST them to the operator's webhook with retries and backoff.

    ``notify`` never blocks: delivery runs as an asyncio task (attempts ``1 + retries``, waiting
    ``backoff * 2**i`` seconds between them). Without ``webhook_url`` alerts are only recorded.

    >>> a = Alerter(webhook_url=None)
    >>> rec = a.record({"client_id": "key-ab", "score": 4.2})
    >>> a.recent()[0]["status"], a.recent()[0]["verdict"]["score"]
    ('recorded', 4.2)
    """

    def __init__(self, webhook_url: str | None, retries: int = 3, backoff: float = 0.5,
                 timeout: float = 5.0, size: int = 1000,
                 metrics: ServingMetrics | None = None) -> None:
        self.webhook_url = webhook_url
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.metrics = metrics
        self._alerts: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._seq = 0

    def record(self, verdict: dict[str, Any], event: str = "client_flagged") -> dict[str, Any]:
        """Store an alert for ``GET /monitor/alerts`` and return its record."""
        with self._lock:
            self._seq += 1
            rec = {"id": self._seq, "time": time.time(), "event": event, "verdict": verdict,
                   "status": "pending" if self.webhook_url else "recorded", "attempts": 0}
            self._alerts.append(rec)
        return rec

    def notify(self, verdict: dict[str, Any], event: str = "client_flagged") -> dict[str, Any]:
        """Record an alert and, with a webhook, start delivering it (call from the loop)."""
        rec = self.record(verdict, event)
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._deliver(rec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return rec

    async def _deliver(self, rec: dict[str, Any]) -> None:
        body = {"event": rec["event"], "alert_id": rec["id"], "verdict": rec["verdict"]}
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                rec["attempts"] = attempt + 1
                try:
                    resp = await client.post(self.webhook_url, json=body)
                    if resp.status_code < 300:
                        rec["status"] = "sent"
                        self._count("sent")
                        return
                    error = f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                rec["last_error"] = error
                if attempt < self.retries:
                    await asyncio.sleep(self.backoff * 2**attempt)
        rec["status"] = "failed"
        self._count("failed")
        logger.warning("alert %s to webhook failed after %d attempts: %s",
                       rec["id"], rec["attempts"], rec.get("last_error"))

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(result=result).inc()

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` alerts, newest first."""
        with self._lock:
            items = list(self._alerts)[-limit:]
        return [dict(r) for r in reversed(items)]

    async def drain(self) -> None:
        """Wait for deliveries in flight (for shutdown and tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
