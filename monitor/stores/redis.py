"""Redis state store (``redis://host:port/db``): one verdict per client across hosts.

Atomic read-modify-write: a per-client lock (``SET lock token NX PX``, pipelined with the
``GET`` of the record) and a Lua script that writes the new record and releases the lock
only if the token still matches. Keys are ``<prefix>state:<client>``,
``<prefix>lock:<client>`` and ``<prefix>writes:<client>`` (the tokens of its last writes;
prefix ``extraction-monitor:``; Redis 6.0.6 or newer); idle clients expire through
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
expired); if another process changed it meanwhile (several workers through one outage),
the two are merged (:func:`~monitor.state_record.merge_records`): Redis' evidence is kept,
the queries this process counted are added, and a flag either raised is kept; counted in
``conflicts``. A write whose reply was lost (a timeout) may or may not have landed; each
commit lists its token among the client's last ``RECENT_WRITES`` writes
(``<prefix>writes:<client>``), so on recovery the buffered updates are merged onto that
write if it landed, and it is never counted twice (unless more writes than that followed it
before this process was back: ``unsettled``). Buffered clients are flushed eagerly on
recovery, and lazily by their next transaction. Updates lost because the buffer overflowed are counted in ``evicted``.

**Index.** Each commit also updates sorted sets by score, query count and client id, the
last-write times and the set of flagged clients, so :meth:`RedisStore.counts` is O(1) and
:meth:`RedisStore.page` reads one page; entries of expired records are swept lazily.
Flagged records get ``flag_ttl_seconds`` (default: no expiry) instead of ``ttl_seconds``.
Throttle buckets are one key per throttled client, updated by a Lua script on Redis' clock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from monitor.settings import (
    ON_ERROR_MODES,
    REDIS_BUFFER,
    REDIS_ON_ERROR,
    REDIS_PREFIX,
    REDIS_TIMEOUT,
)
from monitor.state_record import merge_records, record_summary
from monitor.stores.base import (
    RecordSummary,
    StateStore,
    StoreUnavailable,
    StripedLocks,
    Transaction,
    check_client_id,
    check_sort,
)

log = logging.getLogger("extraction_monitor")

COMMIT_LUA = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else redis.call('SET', KEYS[1], ARGV[2]) end
  local id = ARGV[4]
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  redis.call('ZADD', KEYS[4], ARGV[6], id)
  redis.call('ZADD', KEYS[5], 0, id)
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[6], tonumber(t[1]) + tonumber(t[2]) / 1e6, id)
  if ARGV[7] == '1' then redis.call('SADD', KEYS[7], id) else redis.call('SREM', KEYS[7], id) end
  redis.call('LPUSH', KEYS[8], ARGV[1])
  redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[8]) - 1)
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[8], ARGV[3])
  else redis.call('PERSIST', KEYS[8]) end
end
redis.call('DEL', KEYS[2])
return 1
"""
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cost, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, tolerance = 1 / rate, burst / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if ARGV[4] == '1' then tat = now + tolerance elseif tat < now then tat = now end
local new = tat + cost * interval
local wait = 0
if new - now > tolerance + 1e-9 then wait = new - now - tolerance else tat = new end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now + tolerance) * 1000) + 1000)
return tostring(wait)
"""
RECENT_WRITES = 64
"""Tokens of a client's last writes kept in Redis (``<prefix>writes:<client>``, ~3 KiB), so
that a writer whose reply was lost can tell whether its write landed."""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class _Buffered:
    blob: bytes | None  # the state this process continues from
    base: bytes | None  # Redis' copy when this process last saw it
    dirty: bool  # blob has updates Redis has not got
    unconfirmed: bytes | None = None
    """A write whose reply was lost (a timeout): Redis may hold it. If it does, it is the base
    the buffered updates are merged onto, so that write is not counted twice."""
    token: str | None = None
    """The unconfirmed write's token: its commit script, if it ran, listed it in the
    client's recent writes and deleted the lock it names."""


class RedisStore(StateStore):
    """Client records in Redis, shared by every worker on every host.

    Parameters: ``on_error`` ``"open"`` or ``"closed"``; ``timeout`` socket (connect and
    read) timeout in seconds; ``buffer_size`` clients kept in the local buffer;
    ``lock_seconds`` how long a per-client lock lives if its holder dies;
    ``retry_seconds`` how often an outage probes Redis.

    >>> from monitor.state_record import RecordSummary, StateRecord
    >>> store = RedisStore(port=1, timeout=0.05)          # nothing listens on port 1
    >>> with store.transaction("alice") as tx:             # fail-open: buffered locally
    ...     tx.save(StateRecord(b"record", RecordSummary(n_queries=1)))
    >>> store.missed_updates, store.get_blob("alice")
    (1, b'record')
    """

    scheme = "redis"

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 password: str | None = None, ssl: bool = False,
                 ttl_seconds: float | None = None, on_error: str = REDIS_ON_ERROR,
                 timeout: float = REDIS_TIMEOUT, buffer_size: int = REDIS_BUFFER,
                 prefix: str = REDIS_PREFIX, lock_seconds: float = 10.0,
                 retry_seconds: float = 1.0, flag_ttl_seconds: float | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        super().__init__(ttl_seconds, flag_ttl_seconds)
        if on_error not in ON_ERROR_MODES:
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
        self._gcra_script = self.redis.register_script(GCRA_LUA)
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
        """Buffered client states merged into a copy another worker changed meanwhile
        (counts and flags kept, the store's evidence kept)."""
        self.evicted = 0
        """Buffered updates lost because the local buffer was full (``buffer_size``)."""
        self._next_sweep = 0.0
        self.unsettled = 0
        """Writes whose reply was lost and that could not be told landed or not (more than
        ``RECENT_WRITES`` writes followed); if one landed, its queries are counted twice
        (never lost)."""
        self.lost_locks = 0
        """Updates not written because the per-client lock expired first (holder too slow)."""

    # ------------------------------------------------------------------ keys and buffer
    def _state_key(self, client_id: str) -> str:
        return f"{self.prefix}state:{client_id}"

    def _lock_key(self, client_id: str) -> str:
        return f"{self.prefix}lock:{client_id}"

    def _writes_key(self, client_id: str) -> str:
        return f"{self.prefix}writes:{client_id}"

    def _index_keys(self) -> list[str]:
        """score, n_queries and client-id sorted sets, last-write times, the flagged set."""
        p = self.prefix
        return [f"{p}index:score", f"{p}index:n_queries", f"{p}index:client_id",
                f"{p}index:seen", f"{p}index:flagged"]

    def _remember(self, client_id: str, entry: _Buffered) -> None:
        with self._guard:
            self._buffer[client_id] = entry
            self._buffer.move_to_end(client_id)
            while len(self._buffer) > self.buffer_size:
                _, dropped = self._buffer.popitem(last=False)
                self.evicted += dropped.dirty

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

    def _settle(self, client_id: str) -> None:
        """Find out whether a write whose reply was lost landed.

        Every commit lists its token in the client's last ``RECENT_WRITES`` writes. If the
        lost write's token is there, it landed: Redis' copy descends from it even if other
        workers wrote since, and the buffered updates are merged onto it rather than onto
        the older base (which would count the landed write twice). If not, it never ran
        (its lock, if still ours, is released, so nobody waits for it to expire). Only when
        more writes than that followed it can the two not be told apart: the record's
        bytes decide, as before, and a landed write is then counted twice, never lost
        (``unsettled``)."""
        entry = self._buffered(client_id)
        if entry is None or entry.unconfirmed is None or entry.token is None:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._lock_key(client_id))
        pipe.lpos(self._writes_key(client_id), entry.token)
        pipe.llen(self._writes_key(client_id))
        holder, position, listed = pipe.execute()  # an error: the caller fails over
        if position is not None:
            settled = replace(entry, base=entry.unconfirmed, unconfirmed=None, token=None)
        elif listed < RECENT_WRITES:
            settled = replace(entry, unconfirmed=None, token=None)
        else:
            with self._guard:
                self.unsettled += 1
            settled = replace(entry, token=None)
        if holder is not None and holder.decode() == entry.token:
            self._release(client_id, entry.token)
        with self._guard:
            if self._buffer.get(client_id) is entry:
                self._buffer[client_id] = settled

    def _merged(self, client_id: str, blob: bytes | None) -> tuple[bytes | None, bool]:
        """Redis' record merged with a buffered one; (record, needs_write)."""
        entry = self._buffered(client_id)
        if entry is None or not entry.dirty or blob == entry.blob:
            return blob, False
        base = entry.base
        if blob is not None and blob == entry.unconfirmed:  # the lost reply's write landed
            base = blob
        if blob == base or blob is None:
            with self._guard:
                self.flushed += 1
            return entry.blob, True
        with self._guard:
            self.conflicts += 1
        try:
            merged = merge_records(blob, base, entry.blob).blob
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("client %s changed in Redis during the outage and the buffered "
                        "updates cannot be merged (%s); they are dropped", client_id, exc)
            return blob, False
        return merged, True

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
                    self._settle(client_id)
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
                    self._remember(client_id, _Buffered(tx.saved, None, dirty=True) if entry is None
                                   else replace(entry, blob=tx.saved, dirty=True))
                return
            blob, must_write = self._merged(client_id, redis_blob)
            tx = Transaction(client_id, blob)
            try:
                yield tx
            except BaseException:
                self._release(client_id, token)
                raise
            saved = tx.saved if tx.saved is not None else (blob if must_write else None)
            summary = (tx.summary if tx.saved is not None else
                       record_summary(saved) if saved is not None else RecordSummary())
            ttl = self.flag_ttl_seconds if summary.flagged else self.ttl_seconds
            ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
            try:
                ok = self._commit_script(
                    keys=[self._state_key(client_id), self._lock_key(client_id),
                          *self._index_keys(), self._writes_key(client_id)],
                    args=[token, saved or b"", ttl_ms, client_id, summary.score,
                          summary.n_queries, int(summary.flagged), RECENT_WRITES])
            except self._errors as exc:
                self._fail(exc)
                with self._guard:
                    self.missed_updates += saved is not None
                self._remember(client_id, _Buffered(
                    saved or blob, redis_blob, dirty=saved is not None, unconfirmed=saved,
                    token=None if saved is None else token))
                return
            if not ok:
                with self._guard:
                    self.lost_locks += 1
                log.warning("client %s: Redis lock expired before the update was written; "
                            "the update is lost (raise lock_seconds)", client_id)
                return
            current = saved if saved is not None else blob
            self._remember(client_id, _Buffered(current, current, dirty=False))
        if self.ttl_seconds is not None and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + 60.0
            self.sweep()

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
        if entry is not None and entry.dirty and (
                blob is None or blob == entry.base or blob == entry.unconfirmed):
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
                pipe = self.redis.pipeline()
                pipe.delete(self._state_key(client_id), self._throttle_key(client_id),
                            self._writes_key(client_id))
                for key in self._index_keys()[:-1]:
                    pipe.zrem(key, client_id)
                pipe.srem(self._index_keys()[-1], client_id)
                pipe.execute()
            except self._errors as exc:
                raise StoreUnavailable(f"cannot delete client {client_id!r}: Redis state "
                                       f"store {self.address} is unreachable ({exc})") from None

    # ------------------------------------------------------------------ the index
    def sweep(self) -> int:
        """Drop index entries of records that expired (their keys are gone); O(expired)."""
        if self.ttl_seconds is None:
            return 0
        score, n_queries, ids, seen, flagged = self._index_keys()
        cutoff = time.time() - min(self.ttl_seconds, self.flag_ttl_seconds or float("inf"))
        try:
            stale = self.redis.zrangebyscore(seen, "-inf", cutoff, start=0, num=10_000)
            if not stale:
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for member in stale:
                pipe.exists(self._state_key(member.decode()))
            gone = [m for m, alive in zip(stale, pipe.execute(), strict=True) if not alive]
            if gone:
                pipe = self.redis.pipeline()
                for key in (score, n_queries, ids, seen):
                    pipe.zrem(key, *gone)
                pipe.srem(flagged, *gone)
                pipe.execute()
            return len(gone)
        except self._errors as exc:
            self._fail(exc)
            return 0

    def _online(self, what: str) -> bool:
        if self._reachable():
            return True
        if self.on_error == "closed":
            raise StoreUnavailable(f"Redis state store is unreachable ({what})")
        return False

    def counts(self) -> dict[str, int]:
        if self._online("counts"):
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.zcard(self._index_keys()[2])
                pipe.scard(self._index_keys()[4])
                clients, flagged = pipe.execute()
                return {"clients": int(clients), "flagged": int(flagged)}
            except self._errors as exc:
                self._fail(exc)
        raise StoreUnavailable("Redis state store is unreachable (counts)")

    def flagged(self, limit: int = 100_000) -> list[str]:
        if self._online("flagged"):
            try:
                members = self.redis.sscan_iter(self._index_keys()[4], count=1000)
                return [m.decode() for _, m in zip(range(limit), members, strict=False)]
            except self._errors as exc:
                self._fail(exc)
        raise StoreUnavailable("Redis state store is unreachable (flagged clients)")

    def page(self, offset: int = 0, limit: int = 50, sort: str = "-score",
             flagged: bool | None = None) -> tuple[int, list[str]]:
        check_sort(sort)
        if not self._online("listing"):
            raise StoreUnavailable("Redis state store is unreachable (listing)")
        self.sweep()
        score, n_queries, ids, _, flagged_set = self._index_keys()
        key = {"score": score, "n_queries": n_queries, "client_id": ids}[sort.lstrip("-")]
        desc = sort.startswith("-")
        try:
            if flagged:
                members = [m.decode() for m in self.redis.smembers(flagged_set)]
                pipe = self.redis.pipeline(transaction=False)
                for m in members:
                    pipe.zscore(key, m)
                keyed = sorted(zip(members, pipe.execute(), strict=True),
                               key=lambda r: (-(r[1] or 0) if desc else (r[1] or 0), r[0]))
                return len(members), [m for m, _ in keyed[offset:offset + limit]]
            total = int(self.redis.zcard(ids))
            if flagged is False:
                total -= int(self.redis.scard(flagged_set))
            out: list[str] = []
            start, skipped = 0, 0
            while len(out) < limit:  # skipping flagged ones only for flagged=false
                chunk = (self.redis.zrevrange if desc else self.redis.zrange)(
                    key, start, start + max(limit, 500) - 1)
                if not chunk:
                    break
                start += len(chunk)
                names = [m.decode() for m in chunk]
                if flagged is False:
                    pipe = self.redis.pipeline(transaction=False)
                    for m in names:
                        pipe.sismember(flagged_set, m)
                    names = [m for m, f in zip(names, pipe.execute(), strict=True) if not f]
                for m in names:
                    if skipped < offset:
                        skipped += 1
                    elif len(out) < limit:
                        out.append(m)
            return total, out
        except self._errors as exc:
            self._fail(exc)
            raise StoreUnavailable("Redis state store is unreachable (listing)") from None

    # ------------------------------------------------------------------ shared throttle
    def _throttle_key(self, client_id: str) -> str:
        return f"{self.prefix}throttle:{client_id}"

    def take(self, client_id: str, cost: float, rate: float, burst: float,
             start: bool = False) -> float:
        if self._reachable():
            try:
                return float(self._gcra_script(keys=[self._throttle_key(client_id)],
                                               args=[cost, rate, burst, int(start)]))
            except self._errors as exc:
                self._fail(exc)
        return super().take(client_id, cost, rate, burst, start)  # this worker's bucket

    def forget_throttle(self, client_id: str) -> None:
        super().forget_throttle(client_id)
        try:
            self.redis.delete(self._throttle_key(client_id))
        except self._errors:
            pass

    def stats(self) -> dict[str, int]:
        with self._guard:
            buffered = sum(e.dirty for e in self._buffer.values())
        return {"missed_updates": self.missed_updates, "outages": self.outages,
                "flushed": self.flushed, "conflicts": self.conflicts,
                "lost_locks": self.lost_locks, "unsettled": self.unsettled, "evicted": self.evicted,
                "buffered_clients": buffered, "down": int(self.down)}

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return (f"RedisStore({self.address!r}, on_error={self.on_error!r}, "
                f"ttl_seconds={self.ttl_seconds})")
