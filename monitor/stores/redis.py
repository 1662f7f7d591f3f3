"""Redis state store (``redis://host:port/db``): one verdict per client across hosts.

Atomic read-modify-write: a per-client lock (``SET lock token NX PX``, pipelined with the
``GET`` of the record) and a Lua script that writes the new record and releases the lock
only if the token still matches. Keys are ``<prefix>state:<client>`` and
``<prefix>lock:<client>`` (prefix ``extraction-monitor:``); idle clients expire through
the record's PX time-to-live.

This uses redis-py's *synchronous* client on purpose: the Monitor calls the store from
worker threads (the serving middleware runs ``Monitor.observe`` off the event loop), so
no call here ever blocks an event loop.

**When Redis is unreachable or slow** (socket timeout, default 0.5 s) the store enters an
outage, logged once (and once more when it ends):

* ``on_error="closed"``: operations raise :class:`StoreUnavailable` (serving answers 503);
* ``on_error="open"`` (default): transactions run on a bounded in-process buffer
  (LRU, ``buffer_size`` clients) and every update made there counts in
  ``missed_updates``. Redis is probed at most once per ``retry_seconds``.

The buffer always holds the last record this process read from or wrote to Redis for
its recently active clients, so during an outage a client continues from that state.
**Merge rule on recovery**: a client's buffered state is written back if Redis' copy
is unchanged since this process last saw it (or missing, e.g. Redis lost it or it
expired); if another process changed it meanwhile, Redis' copy wins, the buffered
updates are dropped and counted in ``conflicts``. Buffered clients are flushed eagerly
on recovery, and lazily by their next transaction.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from monitor.stores.base import (
    StateStore,
    StoreUnavailable,
    StripedLocks,
    Transaction,
    check_client_id,
)

log = logging.getLogger("extraction_monitor")

COMMIT_LUA = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else redis.call('SET', KEYS[1], ARGV[2]) end
end
redis.call('DEL', KEYS[2])
return 1
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class _Buffered:
    blob: bytes | None  # the state this process continues from
    base: bytes | None  # Redis' copy when this process last saw it
    dirty: bool  # blob has updates Redis has not got


class RedisStore(StateStore):
    """Client records in Redis, shared by every worker on every host.

    Parameters: ``on_error`` ``"open"`` or ``"closed"``; ``timeout`` socket (connect and
    read) timeout in seconds; ``buffer_size`` clients kept in the local buffer;
    ``lock_seconds`` how long a per-client lock lives if its holder dies;
    ``retry_seconds`` how often an outage probes Redis.

    >>> import numpy as np
    >>> store = RedisStore(port=1, timeout=0.05)          # nothing listens on port 1
    >>> with store.transaction("alice") as tx:             # fail-open: buffered locally
    ...     tx.save({"counters": np.array([1, 1, -1])})
    >>> store.missed_updates, store.get("alice")["counters"].tolist()
    (1, [1, 1, -1])
    """

    scheme = "redis"

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 password: str | None = None, ssl: bool = False,
                 ttl_seconds: float | None = None, on_error: str = "open",
                 timeout: float = 0.5, buffer_size: int = 10_000,
                 prefix: str = "extraction-monitor:", lock_seconds: float = 10.0,
                 retry_seconds: float = 1.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        super().__init__(ttl_seconds)
        if on_error not in ("open", "closed"):
            raise ValueError(f"on_error must be 'open' or 'closed', got {on_error!r}")
        if not timeout > 0 or buffer_size < 1 or not lock_seconds > 0:
            raise ValueError("timeout and lock_seconds must be > 0 and buffer_size >= 1")
        self.on_error = on_error
        self.prefix = prefix
        self.address = f"{host}:{port}/{db}"
        self.buffer_size = int(buffer_size)
        self.lock_ms = int(lock_seconds * 1000)
        self.lock_wait = 2 * lock_seconds
        self.retry_seconds = float(retry_seconds)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.redis = redis.Redis(host=host, port=port, db=db, password=password, ssl=ssl,
                                 socket_timeout=timeout, socket_connect_timeout=timeout,
                                 retry=Retry(NoBackoff(), 0))
        self._commit_script = self.redis.register_script(COMMIT_LUA)
        self._release_script = self.redis.register_script(RELEASE_LUA)
        self._buffer: OrderedDict[str, _Buffered] = OrderedDict()
        self._guard = threading.Lock()
        self._locks = StripedLocks()
        self._down_since: float | None = None
        self._next_probe = 0.0
        self.missed_updates = 0
        """Updates applied only to the local buffer because Redis was unreachable."""
        self.outages = 0
        self.flushed = 0
        """Buffered client states written back to Redis after an outage."""
        self.conflicts = 0
        """Buffered client states dropped because Redis' copy changed meanwhile."""
        self.lost_locks = 0
        """Updates not written because the per-client lock expired first (holder too slow)."""

    # ------------------------------------------------------------------ keys and buffer
    def _state_key(self, client_id: str) -> str:
        return f"{self.prefix}state:{client_id}"

    def _lock_key(self, client_id: str) -> str:
        return f"{self.prefix}lock:{client_id}"

    def _remember(self, client_id: str, entry: _Buffered) -> None:
        with self._guard:
            self._buffer[client_id] = entry
            self._buffer.move_to_end(client_id)
            while len(self._buffer) > self.buffer_size:
                self._buffer.popitem(last=False)

    def _buffered(self, client_id: str) -> _Buffered | None:
        with self._guard:
            return self._buffer.get(client_id)

    # ------------------------------------------------------------------ outages
    @property
    def down(self) -> bool:
        """Whether the store is in an outage (serving from the local buffer)."""
        return self._down_since is not None

    def _fail(self, exc: Exception) -> None:
        """Record an outage (logged once); raise StoreUnavailable when failing closed."""
        with self._guard:
            now = time.monotonic()
            self._next_probe = now + self.retry_seconds
            first = self._down_since is None
            if first:
                self._down_since = now
                self.outages += 1
        if first:
            log.warning("Redis state store %s unreachable (%s); %s until it returns",
                        self.address, exc.__class__.__name__,
                        "failing open on a local buffer" if self.on_error == "open"
                        else "failing closed (503)")
        if self.on_error == "closed":
            raise StoreUnavailable(f"Redis state store {self.address} is unreachable: "
                                   f"{exc}") from None

    def _reachable(self) -> bool:
        """False while in an outage, except for one probe per ``retry_seconds``."""
        with self._guard:
            if self._down_since is None:
                return True
            now = time.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.retry_seconds
        try:
            self.redis.ping()
        except self._errors:
            return False
        with self._guard:
            since, self._down_since = self._down_since, None
            dirty = [c for c, e in self._buffer.items() if e.dirty]
            flushed_before = self.flushed
        for client_id in dirty:  # eager flush; a failure here starts a new outage
            try:
                with self.transaction(client_id):
                    pass  # the transaction merges the buffered state and writes it
            except StoreUnavailable:
                break
            if self.down:
                break
        log.warning("Redis state store %s is back after %.1f s; flushed %d buffered clients "
                    "(%d conflicts so far)", self.address, time.monotonic() - (since or 0),
                    self.flushed - flushed_before, self.conflicts)
        return not self.down

    def _merged(self, client_id: str, blob: bytes | None) -> tuple[bytes | None, bool]:
        """Redis' record merged with a buffered one; (record, needs_write)."""
        entry = self._buffered(client_id)
        if entry is None or not entry.dirty or blob == entry.blob:
            return blob, False
        if blob == entry.base or blob is None:
            with self._guard:
                self.flushed += 1
            return entry.blob, True
        with self._guard:
            self.conflicts += 1
        log.warning("client %s changed in Redis during the outage; its buffered updates "
                    "are dropped", client_id)
        return blob, False

    # ------------------------------------------------------------------ transactions
    def _acquire(self, client_id: str, token: str) -> bytes | None:
        """Take the client's lock and read its record in one round trip (retrying)."""
        deadline = time.monotonic() + self.lock_wait
        delay = 0.0005
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self._lock_key(client_id), token, nx=True, px=self.lock_ms)
            pipe.get(self._state_key(client_id))
            got, blob = pipe.execute()
            if got:
                return blob
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"timed out after {self.lock_wait:.0f} s waiting for the "
                                       f"Redis lock of client {client_id!r}")
            time.sleep(delay)
            delay = min(2 * delay, 0.01)

    @contextmanager
    def transaction(self, client_id: str) -> Iterator[Transaction]:
        check_client_id(client_id)
        online = self._reachable()
        if not online and self.on_error == "closed":
            raise StoreUnavailable(f"Redis state store {self.address} is unreachable")
        with self._locks.hold(client_id):
            token = os.urandom(16).hex()
            if online:
                try:
                    redis_blob = self._acquire(client_id, token)
                except self._errors as exc:
                    self._fail(exc)
                    online = False
            if not online:  # fail-open: continue from the buffered state
                entry = self._buffered(client_id)
                tx = Transaction(client_id, None if entry is None else entry.blob)
                yield tx
                if tx.saved is not None:
                    with self._guard:
                        self.missed_updates += 1
                    self._remember(client_id, _Buffered(
                        tx.saved, None if entry is None else entry.base, dirty=True))
                return
            blob, must_write = self._merged(client_id, redis_blob)
            tx = Transaction(client_id, blob)
            try:
                yield tx
            except BaseException:
                self._release(client_id, token)
                raise
            saved = tx.saved if tx.saved is not None else (blob if must_write else None)
            ttl_ms = 0 if self.ttl_seconds is None else max(1, int(self.ttl_seconds * 1000))
            try:
                ok = self._commit_script(keys=[self._state_key(client_id),
                                               self._lock_key(client_id)],
                                         args=[token, saved or b"", ttl_ms])
            except self._errors as exc:
                self._fail(exc)
                with self._guard:
                    self.missed_updates += saved is not None
                self._remember(client_id, _Buffered(saved or blob, redis_blob,
                                                    dirty=saved is not None))
                return
            if not ok:
                with self._guard:
                    self.lost_locks += 1
                log.warning("client %s: Redis lock expired before the update was written; "
                            "the update is lost (raise lock_seconds)", client_id)
                return
            current = saved if saved is not None else blob
            self._remember(client_id, _Buffered(current, current, dirty=False))

    def _release(self, client_id: str, token: str) -> None:
        try:
            self._release_script(keys=[self._lock_key(client_id)], args=[token])
        except self._errors as exc:
            log.debug("could not release the Redis lock of %s: %s", client_id, exc)

    # ------------------------------------------------------------------ operator API
    def get_blob(self, client_id: str) -> bytes | None:
        if self._reachable():
            try:
                blob = self.redis.get(self._state_key(client_id))
            except self._errors as exc:
                self._fail(exc)
            else:
                return self._merged_view(client_id, blob)
        elif self.on_error == "closed":
            raise StoreUnavailable(f"Redis state store {self.address} is unreachable")
        entry = self._buffered(client_id)
        return None if entry is None else entry.blob

    def _merged_view(self, client_id: str, blob: bytes | None) -> bytes | None:
        entry = self._buffered(client_id)
        if entry is not None and entry.dirty and (blob is None or blob == entry.base):
            return entry.blob
        return blob

    def clients(self) -> list[str]:
        start = len(self._state_key(""))
        with self._guard:
            dirty = {c for c, e in self._buffer.items() if e.dirty}
        if self._reachable():
            try:
                keys = self.redis.scan_iter(match=self._state_key("*"), count=1000)
                return sorted({k.decode()[start:] for k in keys} | dirty)
            except self._errors as exc:
                self._fail(exc)
        elif self.on_error == "closed":
            raise StoreUnavailable(f"Redis state store {self.address} is unreachable")
        with self._guard:
            return sorted(c for c, e in self._buffer.items() if e.blob is not None)

    def delete(self, client_id: str) -> None:
        """Forget a client; raises StoreUnavailable if Redis cannot be reached."""
        check_client_id(client_id)
        with self._locks.hold(client_id):
            with self._guard:
                self._buffer.pop(client_id, None)
            try:
                self.redis.delete(self._state_key(client_id))
            except self._errors as exc:
                raise StoreUnavailable(f"cannot delete client {client_id!r}: Redis state "
                                       f"store {self.address} is unreachable ({exc})") from None

    def stats(self) -> dict[str, int]:
        with self._guard:
            buffered = sum(e.dirty for e in self._buffer.values())
        return {"missed_updates": self.missed_updates, "outages": self.outages,
                "flushed": self.flushed, "conflicts": self.conflicts,
                "lost_locks": self.lost_locks, "buffered_clients": buffered,
                "down": int(self.down)}

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return (f"RedisStore({self.address!r}, on_error={self.on_error!r}, "
                f"ttl_seconds={self.ttl_seconds})")
