"""How a serving worker calls the state store from its event loop, and reads client flags.

* :class:`StoreCalls` — a call on the event loop when the store's calls are local and short
  (memory, SQLite) and the request is small, else in a worker thread (Redis: always);
* :class:`FlagReader` — a client's flag from the store, or from this worker's
  :class:`~monitor.serving.health.FlagCache` whenever the store cannot answer, so a blocked
  client stays blocked through a store outage. The cache is refreshed from the store's index
  of flagged clients every ``flag_refresh_seconds`` (O(flagged)), and from every flag read or
  raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from monitor.serving.health import FlagCache
from monitor.stores.base import StoreUnavailable
from monitor.verdict import FlagStatus

logger = logging.getLogger("extraction_monitor.serving")


class StoreCalls:
    """Run calls that touch ``store`` on the event loop or in a worker thread.

    A call runs on the loop when the store is quick (``store.quick_calls``), the request has
    at most ``inline_rows`` rows and no other request's call is running in a thread (the
    loop must never wait for a client lock a thread holds).

    >>> import asyncio
    >>> from monitor.stores.memory import MemoryStore
    >>> calls = StoreCalls(MemoryStore(), inline_rows=8)
    >>> calls.quick, asyncio.run(calls.run(len, [1, 2], rows=1))
    (True, 2)
    """

    def __init__(self, store, inline_rows: int) -> None:
        self.store = store
        self.inline_rows = inline_rows
        self.quick = bool(getattr(store, "quick_calls", False))
        """Whether the store's calls are local and short enough to make on the event loop
        (memory, SQLite): small requests then skip the worker-thread hop (Redis: never)."""
        self._in_threads = 0  # requests' store calls now running in worker threads

    def inline(self, rows: int) -> bool:
        """Whether a call for a request of ``rows`` rows may run on the event loop: a few rows
        on a local store take well under a millisecond, less than a worker-thread hop and the
        GIL hand-over it costs; larger requests leave the loop free."""
        return self.quick and rows <= self.inline_rows

    async def run(self, fn: Callable[..., Any], *args: Any, rows: int = 0) -> Any:
        """``fn(*args)``, on the loop when :meth:`inline` allows and no call is running in a
        worker thread, else in a worker thread."""
        if self.inline(rows) and not self._in_threads:
            return fn(*args)
        self._in_threads += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._in_threads -= 1

    def down(self) -> bool:
        """Whether the store says it cannot be reached (a fail-open store buffering)."""
        return bool(getattr(self.store, "down", False))


class FlagReader:
    """A client's flag as this worker knows it: the store's, or the cache's in an outage.

    >>> import asyncio
    >>> from monitor.stores.memory import MemoryStore
    >>> class Unknown:  # a monitor that knows no client
    ...     store = MemoryStore()
    ...     def flag_status(self, client_id): return None
    >>> reader = FlagReader(Unknown(), StoreCalls(Unknown.store, 8), FlagCache(), 5.0)
    >>> reader.remember("a", FlagStatus(True, 9.0, 3, "why"))
    >>> reader.cached("a").peak_score, asyncio.run(reader.status("b"))
    (9.0, None)
    """

    def __init__(self, monitor, calls: StoreCalls, cache: FlagCache,
                 refresh_seconds: float) -> None:
        self.monitor = monitor
        self.calls = calls
        self.cache = cache
        self.refresh_seconds = refresh_seconds
        self._refresh_task: asyncio.Task | None = None

    async def status(self, client_id: str) -> FlagStatus | None:
        """The client's flag: from the store, or this worker's cache when the store cannot
        answer (raises StoreUnavailable only when neither knows)."""
        self._maybe_refresh()
        try:
            status = await self.calls.run(self.monitor.flag_status, client_id)
        except StoreUnavailable:
            cached = self.cache.get(client_id)
            if cached is not None:
                return cached
            raise
        if self.calls.down():  # a fail-open store answers from a partial local buffer
            cached = self.cache.get(client_id)
            if cached is not None and (status is None or not status.flagged):
                return cached
        else:
            self.cache.put(client_id, status)
        return status

    def cached(self, client_id: str) -> FlagStatus | None:
        """What this worker's cache holds for the client (flagged or over-exposed only)."""
        return self.cache.get(client_id)

    def remember(self, client_id: str, status: FlagStatus) -> None:
        """Cache a flag this worker raised (or forget the client if ``status`` is clear)."""
        self.cache.put(client_id, status)

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now < self.cache.next_refresh or (self._refresh_task is not None
                                             and not self._refresh_task.done()):
            return
        self.cache.next_refresh = now + self.refresh_seconds
        self._refresh_task = asyncio.get_running_loop().create_task(
            anyio.to_thread.run_sync(self._refresh))

    def _refresh(self) -> None:
        """Load the store's flagged clients into this worker's cache (O(flagged))."""
        if self.calls.down():
            return
        store, cache = self.calls.store, self.cache
        try:
            flagged = set(store.flagged(cache.size))
            for client_id in flagged - cache.ids():
                cache.put(client_id, self.monitor.flag_status(client_id))
            for client_id in cache.ids() - flagged:  # reset through another worker
                cache.put(client_id, self.monitor.flag_status(client_id))
        except Exception as exc:  # an outage: keep what we have
            logger.debug("flag refresh failed: %s", exc)


__all__ = ["FlagReader", "StoreCalls"]
