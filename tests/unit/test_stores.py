"""State stores: record format, the store interface on all three back ends, TTL, restarts,
corrupt records, and Redis outages (fail-open buffer and fail-closed)."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time

import numpy as np
import pytest
from redis_server import redis_server_fixture

from monitor import Monitor, MonitorConfig
from monitor.state_record import (
    MAGIC,
    RECORD_FORMAT_VERSION,
    StateRecord,
    decode_state,
    encode_state,
    state_size_bound,
)
from monitor.stores import MemoryStore, SQLiteStore, StoreUnavailable, open_store

redis_server = redis_server_fixture()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def attack(victim):
    return np.random.default_rng(7).uniform(victim.lower, victim.upper, size=(120, 30))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        yield open_store("memory://")
    elif request.param == "sqlite":
        store = open_store(f"sqlite://{tmp_path}/state.db")
        yield store
        store.close()
    else:
        server = request.getfixturevalue("redis_server")
        store = open_store(server.url)
        yield store
        store.close()


def loaded(blob: bytes | None):
    """The arrays of stored bytes (``None`` for none): stores keep records opaque."""
    return None if blob is None else decode_state(blob)


def arrays(n: int = 3) -> dict[str, np.ndarray]:
    return {"counters": np.array([n, n, -1]), "scores": np.array([0.5, 1.5]),
            "hashes": np.arange(n, dtype=np.uint64), "flag_reason": np.array(["because"]),
            "window_density": np.ones(4, dtype=np.uint8),
            "chain": np.zeros((0, 30), dtype=np.float32)}


# ------------------------------------------------------------------ record format
def test_encode_decode_round_trip_keeps_dtypes_and_shapes():
    original = arrays(5)
    decoded = decode_state(encode_state(original))
    assert set(decoded) == set(original)
    for name, value in original.items():
        assert decoded[name].dtype == value.dtype and decoded[name].shape == value.shape
        assert np.array_equal(decoded[name], value)


@pytest.mark.parametrize("blob, message", [
    (b"", "not an extraction-monitor state record"),
    (b"\x93NUMPY garbage that is long enough", "not an extraction-monitor state record"),
    (MAGIC + bytes([RECORD_FORMAT_VERSION]) + b"\xff\xff\xff\x00{", "unreadable header"),
])
def test_decode_rejects_garbage_with_a_clear_value_error(blob, message):
    with pytest.raises(ValueError, match=message):
        decode_state(blob)


def test_decode_rejects_truncated_trailing_old_version_and_object_dtypes():
    blob = encode_state(arrays())
    with pytest.raises(ValueError, match="truncated"):
        decode_state(blob[:-3])
    with pytest.raises(ValueError, match="trailing"):
        decode_state(blob + b"xx")
    old = blob[:7] + bytes([0]) + blob[8:]
    with pytest.raises(ValueError, match="format version 0; this release reads version 1"):
        decode_state(old)
    evil = encode_state({"a": np.zeros(1)}).replace(b'"<f8"', b'"|O8"')
    with pytest.raises(ValueError, match="unsupported dtype"):
        decode_state(evil)
    with pytest.raises(TypeError, match="unsupported dtype"):
        encode_state({"a": np.array([object()])})


def test_real_client_state_fits_the_documented_size_bound(profile, attack):
    for config in (MonitorConfig(), MonitorConfig(detectors=("density", "boundary", "chain"))):
        mon = Monitor(profile, config=config, store=MemoryStore())
        mon.observe("mallory", attack)
        mon.observe("alice", attack[:1])
        bound = state_size_bound(config, n_features=30)
        for client in ("mallory", "alice"):
            size = len(mon.store.export(client))
            assert size <= bound, (client, size, bound)
    assert state_size_bound(MonitorConfig(), 64) <= 16 * 1024  # the issue-11 budget, 64 features


# ------------------------------------------------------------------ URIs
@pytest.mark.parametrize("uri, message", [
    ("postgres://x", "unsupported state store URI"),
    ("state.db", "must look like"),
    ("memory://?tll=5", "unknown state store option 'tll'"),
    ("memory://?ttl=soon", "ttl='soon' is not a valid float"),
    ("memory://?ttl=-1", "ttl must be >= 0"),
    ("sqlite://relative.db", "absolute path with three slashes"),
    ("sqlite:///no/such/dir/state.db", "directory /no/such/dir does not exist"),
    ("redis://localhost:6379/zero", "database must be a number"),
    ("redis://localhost:6379/0?on_error=maybe", "on_error must be 'open' or 'closed'"),
])
def test_bad_uris_give_one_line_errors(uri, message):
    with pytest.raises(ValueError, match=message):
        open_store(uri)


def test_uris_configure_the_stores(tmp_path):
    sqlite_store = open_store(f"sqlite://{tmp_path}/s.db?ttl=60&busy_timeout=2")
    assert isinstance(sqlite_store, SQLiteStore)
    assert (sqlite_store.ttl_seconds, sqlite_store.busy_timeout) == (60.0, 2.0)
    redis_store = open_store("redis://127.0.0.1:1/3?ttl=86400&on_error=closed&timeout=0.1")
    assert (redis_store.address, redis_store.on_error, redis_store.ttl_seconds) == (
        "127.0.0.1:1/3", "closed", 86400.0)


def test_sqlite_rejects_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="cannot open the SQLite state store"):
        open_store(f"sqlite://{path}")


# ------------------------------------------------------------------ the interface
def test_store_transaction_get_list_export_delete(store):
    assert loaded(store.get_blob("alice")) is None and store.clients() == []
    with store.transaction("alice") as tx:
        assert loaded(tx.blob) is None
        tx.save(StateRecord.of(arrays(1)))
    with store.transaction("alice") as tx:
        assert loaded(tx.blob)["counters"].tolist() == [1, 1, -1]
        tx.save(StateRecord.of(arrays(2)))
    with store.transaction("bob") as tx:
        tx.save(StateRecord.of(arrays(7)))
    assert store.clients() == ["alice", "bob"]
    assert loaded(store.get_blob("alice"))["counters"].tolist() == [2, 2, -1]
    assert decode_state(store.export("bob"))["counters"].tolist() == [7, 7, -1]
    store.delete("alice")
    assert store.clients() == ["bob"] and loaded(store.get_blob("alice")) is None
    with pytest.raises(KeyError, match="no stored state for client 'alice'"):
        store.export("alice")
    with pytest.raises(ValueError, match="non-empty string"):
        store.export("")


def test_failed_transaction_body_writes_nothing_and_releases_the_client(store):
    with store.transaction("carol") as tx:
        tx.save(StateRecord.of(arrays(1)))
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction("carol") as tx:
            tx.save(StateRecord.of(arrays(9)))
            raise RuntimeError("boom")
    with store.transaction("carol") as tx:  # not deadlocked: the lock was released
        assert loaded(tx.blob)["counters"][0] == 1


def test_ttl_expires_idle_clients_memory_and_sqlite(tmp_path):
    for make in (lambda c: MemoryStore(ttl_seconds=60, clock=c),
                 lambda c: SQLiteStore(tmp_path / "ttl.db", ttl_seconds=60, clock=c)):
        clock = FakeClock()
        store = make(clock)
        for client in ("idle", "busy"):
            with store.transaction(client) as tx:
                tx.save(StateRecord.of(arrays(1)))
        clock.now += 50
        with store.transaction("busy") as tx:
            tx.save(StateRecord.of(arrays(2)))
        clock.now += 20  # idle: 70 s since its update, busy: 20 s
        assert store.clients() == ["busy"] and loaded(store.get_blob("idle")) is None
        with store.transaction("idle") as tx:
            assert loaded(tx.blob) is None  # starts over
        assert store.expire() == 0 or store.clients() == ["busy"]
        store.close()


def test_ttl_expires_idle_clients_redis(redis_server):
    store = open_store(redis_server.url + "?ttl=0.3")
    with store.transaction("idle") as tx:
        tx.save(StateRecord.of(arrays(1)))
    assert store.clients() == ["idle"]
    time.sleep(0.6)
    assert store.clients() == [] and loaded(store.get_blob("idle")) is None


# ------------------------------------------------------------------ Monitor on stores
def test_monitor_on_each_store_equals_the_in_memory_monitor(store, profile, victim, attack):
    plain = Monitor(profile, model=victim.model)
    stored = Monitor(profile, model=victim.model, store=store)
    for lo in range(0, 60, 20):
        a = plain.observe("mallory", attack[lo:lo + 20])
        b = stored.observe("mallory", attack[lo:lo + 20])
        np.testing.assert_allclose(a.row_scores, b.row_scores)
        assert (a.n_queries, a.flagged, a.flag_at) == (b.n_queries, b.flagged, b.flag_at)
    assert stored.verdict("mallory").to_dict() == plain.verdict("mallory").to_dict()
    assert stored.clients() == ["mallory"]
    stored.reset("mallory")
    assert stored.verdict("mallory").n_queries == 0 and stored.clients() == []


def test_sqlite_state_and_flag_survive_reopening(tmp_path, profile, victim, attack):
    uri = f"sqlite://{tmp_path}/state.db"
    first = Monitor(profile, model=victim.model, store=open_store(uri))
    before = first.observe("mallory", attack[:60])
    first.observe("alice", victim.X_public[:30])
    assert before.flagged
    first.store.close()
    second = Monitor(profile, model=victim.model, store=open_store(uri))
    after = second.verdict("mallory")
    assert (after.n_queries, after.flagged, after.flag_at, after.reason) == (
        60, True, before.flag_at, before.reason)
    assert second.verdict("alice").n_queries == 30 and not second.verdict("alice").flagged
    assert second.observe("mallory", attack[60:70]).n_queries == 70


def test_redis_state_and_flag_survive_a_server_restart(redis_server, profile, victim, attack):
    first = Monitor(profile, model=victim.model, store=open_store(redis_server.url))
    before = first.observe("mallory", attack[:60])
    assert before.flagged
    first.store.close()
    redis_server.stop()
    redis_server.start()
    second = Monitor(profile, model=victim.model, store=open_store(redis_server.url))
    after = second.verdict("mallory")
    assert (after.n_queries, after.flagged, after.flag_at) == (60, True, before.flag_at)


@pytest.mark.parametrize("garbage, undecodable", [
    (b"\x00junk", True),
    (encode_state(arrays())[:7] + b"\x00" + b"x" * 40, True),  # older record format
    (encode_state({"version": np.array([99])}), False),  # decodable, but not a v1 ClientState
], ids=["garbage", "old-format", "other-state-version"])
def test_corrupt_or_old_sqlite_record_resets_only_that_client(tmp_path, profile, victim, attack,
                                                             garbage, undecodable, caplog):
    path = tmp_path / "state.db"
    mon = Monitor(profile, model=victim.model, store=open_store(f"sqlite://{path}"))
    mon.observe("alice", victim.X_public[:20])
    mon.observe("mallory", attack[:10])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE client_state SET blob = ? WHERE client_id = 'mallory'", (garbage,))
    with pytest.raises(ValueError) if undecodable else contextlib.nullcontext():
        decode_state(mon.store.get_blob("mallory"))
    with caplog.at_level(logging.ERROR, logger="extraction_monitor"):
        verdict = mon.observe("mallory", attack[10:15])
    assert verdict.n_queries == 5  # reset, then counted afresh
    assert mon.counters().corrupt_records == 1
    assert "client mallory: unreadable stored state" in caplog.text
    assert mon.verdict("alice").n_queries == 20  # untouched


# ------------------------------------------------------------------ Redis outages
def test_redis_outage_fails_open_counts_logs_once_and_catches_up(redis_server, profile, victim,
                                                                 attack, caplog):
    store = open_store(redis_server.url + "?timeout=0.2")
    store.retry_seconds = 0.2
    mon = Monitor(profile, model=victim.model, store=store)
    for lo in range(0, 40, 10):
        mon.observe("mallory", attack[lo:lo + 10])
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="extraction_monitor"):
        for lo in range(40, 80, 10):  # still answered, from the local buffer
            verdict = mon.observe("mallory", attack[lo:lo + 10])
            assert verdict.n_queries == lo + 10
    assert store.down and store.missed_updates == 4 and store.outages == 1
    assert caplog.text.count("unreachable") == 1  # once per outage, not per request
    assert store.stats()["buffered_clients"] == 1
    redis_server.start()  # same port, same data
    time.sleep(0.25)
    verdict = mon.observe("mallory", attack[80:90])
    assert not store.down and verdict.n_queries == 90
    assert store.flushed == 1 and store.conflicts == 0
    fresh = Monitor(profile, model=victim.model, store=open_store(redis_server.url))
    caught_up = fresh.verdict("mallory")
    replay = Monitor(profile, model=victim.model).observe("mallory", attack[:90])
    assert (caught_up.n_queries, caught_up.flagged, caught_up.flag_at) == (
        90, replay.flagged, replay.flag_at)


def client_arrays(n: int, flag_at: int | None = None) -> dict[str, np.ndarray]:
    from monitor.state import ClientState

    return ClientState(n_queries=n, n_distinct=n, flag_at=flag_at,
                       flag_reason="why" if flag_at is not None else None).to_arrays()


def client_record(n: int, flag_at: int | None = None) -> StateRecord:
    return StateRecord.of(client_arrays(n, flag_at))


def test_redis_recovery_merges_counts_and_flags_when_redis_changed_meanwhile(redis_server):
    ours, theirs = open_store(redis_server.url), open_store(redis_server.url)
    ours.retry_seconds = 0.0
    with ours.transaction("c") as tx:
        tx.save(client_record(1))
    redis_server.stop()
    with ours.transaction("c") as tx:
        tx.save(client_record(3, flag_at=2))  # buffered: two more queries, and a flag
    redis_server.start()
    with theirs.transaction("c") as tx:  # another host updates first: four more queries
        tx.save(client_record(5))
    with ours.transaction("c") as tx:  # recovery: Redis' evidence, both hosts' counts
        merged = loaded(tx.blob)
        assert merged["counters"][0] == 5 + 2 and merged["counters"][2] == 5 + 1
    assert ours.conflicts == 1 and loaded(theirs.get_blob("c"))["counters"][0] == 7
    assert theirs.counts() == {"clients": 1, "flagged": 1} and theirs.flagged() == ["c"]


def test_a_write_whose_reply_was_lost_is_not_counted_twice(redis_server):
    """Redis applied a write but its reply timed out; later updates were buffered in the
    outage. Recovery merges them onto the write that landed: every query counted once."""
    import redis

    store = open_store(redis_server.url)
    store.retry_seconds = 0.0
    with store.transaction("c") as tx:
        tx.save(client_record(1))
    real = store._commit_script

    def lands_then_times_out(**kwargs):  # the real script runs; only its reply is lost
        real(**kwargs)
        raise redis.exceptions.TimeoutError("reply lost")

    store._commit_script = lands_then_times_out
    with store.transaction("c") as tx:
        tx.save(client_record(2))  # landed in Redis, but this process cannot know
    store._commit_script = real
    redis_server.stop()
    with store.transaction("c") as tx:
        tx.save(client_record(3))  # buffered in the outage
    redis_server.start()
    with store.transaction("c") as tx:
        assert loaded(tx.blob)["counters"][0] == 3  # not 4: the landed write counted once
    assert loaded(open_store(redis_server.url).get_blob("c"))["counters"][0] == 3


def test_a_landed_write_whose_reply_was_lost_is_counted_once_after_another_worker_wrote(
        redis_server):
    """As above, but Redis goes down with the write applied, and another worker, back
    first, writes on top: Redis' copy no longer equals either record this process knows,
    so only the write's token, listed by its commit script, tells that it landed. Every
    query counted once; a write that did not land leaves this process' lock, which
    recovery releases; past ``RECENT_WRITES`` later writes it cannot be told (counted
    twice, never lost)."""
    import redis

    from monitor.stores.redis import RECENT_WRITES

    ours, theirs = open_store(redis_server.url), open_store(redis_server.url)
    ours.retry_seconds = theirs.retry_seconds = 0.0
    with ours.transaction("c") as tx:
        tx.save(client_record(1))
    with theirs.transaction("c"):
        pass  # theirs sees 1
    real = ours._commit_script

    def lands_then_times_out(**kwargs):
        real(**kwargs)
        raise redis.exceptions.TimeoutError("reply lost")

    ours._commit_script = lands_then_times_out
    with ours.transaction("c") as tx:
        tx.save(client_record(2))  # landed: Redis counts 2
    ours._commit_script = real
    redis_server.stop()
    with ours.transaction("c") as tx:
        tx.save(client_record(3))  # buffered: one more query of ours
    with theirs.transaction("c") as tx:
        tx.save(client_record(3))  # theirs last saw 1: two queries of theirs, buffered
    redis_server.start()
    with theirs.transaction("c") as tx:  # back first: 2 (landed) + 2 (theirs) = 4
        assert loaded(tx.blob)["counters"][0] == 4
    with ours.transaction("c") as tx:  # then ours: + 1 = 5, not 6
        assert loaded(tx.blob)["counters"][0] == 5
    assert loaded(theirs.get_blob("c"))["counters"][0] == 5 and ours.unsettled == 0

    def never_runs(**kwargs):
        raise redis.exceptions.TimeoutError("request lost")

    ours._commit_script = never_runs
    with ours.transaction("c") as tx:
        tx.save(client_record(6))  # did not land; our lock stays in Redis
    ours._commit_script = real
    started = time.monotonic()
    with ours.transaction("c") as tx:  # no wait for the stale lock; our 6th query kept
        assert loaded(tx.blob)["counters"][0] == 6
    assert time.monotonic() - started < 1.0 and ours.unsettled == 0

    ours._commit_script = lands_then_times_out
    with ours.transaction("c") as tx:
        tx.save(client_record(7))  # landed, reply lost
    ours._commit_script = real
    for n in range(8, 8 + RECENT_WRITES):  # then more writes than the list keeps
        with theirs.transaction("c") as tx:
            tx.save(client_record(n))
    with ours.transaction("c") as tx:  # cannot tell: counted twice, never lost
        assert loaded(tx.blob)["counters"][0] > 7 + RECENT_WRITES
    assert ours.unsettled == 1 and ours.stats()["unsettled"] == 1


def test_redis_outage_fails_closed_when_configured(redis_server):
    store = open_store(redis_server.url + "?on_error=closed&timeout=0.2")
    with store.transaction("c") as tx:
        tx.save(StateRecord.of(arrays(1)))
    redis_server.stop()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        with store.transaction("c") as tx:
            tx.save(StateRecord.of(arrays(2)))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        loaded(store.get_blob("c"))
    assert store.missed_updates == 0 and store.outages == 1


# ------------------------------------------------------------------ issue 12: resources
def test_sqlite_update_computes_outside_the_write_lock(tmp_path):
    """One client's long computation (its detectors) never holds SQLite's host-wide write
    lock: another process can write meanwhile; the slow writer then recomputes on the
    newer record (compare-and-set), so no update is lost."""
    db = tmp_path / "state.db"
    store = open_store(f"sqlite://{db}")
    with store.transaction("other") as tx:
        tx.save(client_record(1))
    calls = []

    def compute(blob):
        calls.append(blob)
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the lock is held
        if len(calls) == 1:  # another writer changes this very client meanwhile
            other.execute("UPDATE client_state SET version = version + 1 WHERE client_id = "
                          "'slow'")
        other.execute("COMMIT")
        other.close()
        n = 0 if blob is None else int(loaded(blob)["counters"][0])
        return client_record(n + 1)

    with store.transaction("slow") as tx:
        tx.save(client_record(5))
    store.update("slow", compute)
    assert len(calls) == 2 and store.retries == 1  # lost the race once, recomputed
    assert loaded(store.get_blob("slow"))["counters"][0] == 6


def test_state_files_are_private_and_the_default_ttl_keeps_flags(tmp_path):
    import os
    import stat

    from monitor.settings import DEFAULT_TTL, StoreConfig

    store = open_store(f"sqlite://{tmp_path}/state.db")
    with store.transaction("c") as tx:
        tx.save(client_record(1))
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    assert StoreConfig().ttl == DEFAULT_TTL == 30 * 24 * 3600 and StoreConfig().flag_ttl is None
    clock = FakeClock()
    mem = MemoryStore(ttl_seconds=10, clock=clock)
    for cid, flag_at in (("idle", None), ("flagged", 0)):
        with mem.transaction(cid) as tx:
            tx.save(client_record(1, flag_at=flag_at))
    clock.now += 11
    assert mem.clients() == ["flagged"] and mem.counts() == {"clients": 1, "flagged": 1}


def test_the_index_pages_and_counts_without_decoding(store):
    for i in range(12):
        with store.transaction(f"c{i:02d}") as tx:
            tx.save(client_record(i + 1, flag_at=0 if i % 4 == 0 else None))
    assert store.counts() == {"clients": 12, "flagged": 3}
    total, ids = store.page(0, 5, "-n_queries")
    assert total == 12 and ids == ["c11", "c10", "c09", "c08", "c07"]
    assert store.page(5, 5, "-n_queries")[1] == ["c06", "c05", "c04", "c03", "c02"]
    assert store.page(0, 10, "client_id", flagged=True) == (3, ["c00", "c04", "c08"])
    total, ids = store.page(0, 3, "n_queries", flagged=False)
    assert total == 9 and ids == ["c01", "c02", "c03"]
    store.delete("c04")
    assert store.counts() == {"clients": 11, "flagged": 2} and sorted(store.flagged()) == [
        "c00", "c08"]


def test_sqlite_checkpoints_in_the_background_and_keeps_the_wal_small(tmp_path):
    """Commits leave the WAL to a background thread (no request pays for a checkpoint):
    after each burst of writes it copies the WAL back, so the WAL is reused instead of
    growing with every write, and an idle store does no checkpoint work."""
    from monitor.stores.sqlite import AUTOCHECKPOINT_PAGES

    padding = np.zeros(3000)  # about 24 KB per record: six WAL pages per write

    def burst(store: SQLiteStore, number: int) -> None:
        for i in range(150):
            with store.transaction(f"c{i % 30}") as tx:
                tx.save(StateRecord.of({**client_arrays(number * 150 + i), "padding": padding}))

    # one burst's frames, measured where nothing checkpoints (the timer never fires)
    reference = tmp_path / "reference.db"
    unchecked = SQLiteStore(reference, checkpoint_seconds=3600)
    burst(unchecked, 0)
    burst_bytes = reference.with_name(reference.name + "-wal").stat().st_size
    unchecked.close()

    db = tmp_path / "state.db"
    store = SQLiteStore(db, checkpoint_seconds=0.05)
    wal = db.with_name(db.name + "-wal")
    for number in range(4):
        burst(store, number)
        # wait until a checkpoint has finished after the burst's last write: one that ran
        # mid-burst missed the later frames, and a writer that follows it at once (a
        # loaded machine) appends to the WAL instead of restarting it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with store._checkpointing:  # no checkpoint is running while this is held
                if not store._written.is_set() and store.checkpoints > 0:
                    break
            time.sleep(0.02)
        assert not store._written.is_set()
    # four bursts went through a WAL about one burst long (it restarts once checkpointed)
    assert wal.stat().st_size < 2 * burst_bytes
    # the checkpoint that ended the last wait may have run mid-burst; let the rest settle,
    # then a store that does checkpoint work while idle never gives a quiet 0.3 s
    deadline = time.monotonic() + 10
    idle = store.checkpoints
    time.sleep(0.3)
    while store.checkpoints != idle and time.monotonic() < deadline:
        idle = store.checkpoints
        time.sleep(0.3)
    assert store.checkpoints == idle  # nothing written: nothing to do
    conn = store._connection()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_PAGES
    thread = store._checkpointer
    store.close()
    assert thread is not None and not thread.is_alive()
    assert loaded(SQLiteStore(db).get_blob("c0"))["counters"][0] == 570  # the last write, kept


def test_sqlite_keeps_one_index_on_update_time_and_expiry_uses_it(tmp_path):
    """Every index is one more B-tree update per write: the composite (flagged, updated_at)
    index serves expiry and the flag listing, and an older database's index on updated_at
    alone is dropped when it is opened."""
    db = tmp_path / "state.db"
    SQLiteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("CREATE INDEX client_state_updated_at ON client_state (updated_at)")  # as before
    conn.close()
    store = SQLiteStore(db, ttl_seconds=60)
    c = store._connection()
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "client_state_updated_at" not in names and "client_state_flagged" in names
    plan = " ".join(r[-1] for r in c.execute(
        "EXPLAIN QUERY PLAN DELETE FROM client_state WHERE (flagged = 0 AND updated_at < 1) "
        "OR (flagged = 1 AND updated_at < 2)"))
    assert "client_state_flagged" in plan and "SCAN" not in plan
    with store.transaction("old") as tx:
        tx.save(client_record(1))
    store._clock = lambda: time.time() + 120  # past the TTL
    assert store.expire() == 1 and loaded(store.get_blob("old")) is None


def _stream(attack):
    """Interleaved one-row and few-row calls of three clients (retries included)."""
    calls = []
    for i in range(0, 90, 3):
        calls.append((f"c{i % 9 // 3}", attack[i:i + 1]))
        calls.append((f"c{(i + 1) % 9 // 3}", attack[i:i + 3]))
        calls.append((f"c{i % 9 // 3}", attack[i:i + 1]))  # a retry
    return calls


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_kept_decoded_states_write_the_same_records_as_decoding_each_time(kind, request,
                                                                          tmp_path, profile,
                                                                          victim, attack):
    def new_store(name):
        if kind == "memory":
            return open_store("memory://")
        if kind == "sqlite":
            return open_store(f"sqlite://{tmp_path}/{name}.db")
        server = request.getfixturevalue("redis_server")
        return open_store(server.url + f"?prefix={name}:")

    key = b"k" * 16  # one retry digest key, so that the records can be compared as bytes
    cached = Monitor(profile, model=victim.model, store=new_store("cached"), digest_key=key)
    decoding = Monitor(profile, model=victim.model, store=new_store("decoding"),
                       config=MonitorConfig(decoded_states=0), digest_key=key)
    for client, rows in _stream(attack):
        a, b = cached.observe(client, rows), decoding.observe(client, rows)
        assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(),
                                                                     sort_keys=True)
        assert cached.store.get_blob(client) == decoding.store.get_blob(client)
    reused, decoded = cached.counters(), decoding.counters()
    assert reused.reused_states > 60 and reused.reused_states + reused.decoded_states == 90
    assert (decoded.reused_states, decoded.decoded_states) == (0, 90)
    cached.store.close(), decoding.store.close()


def test_a_record_written_elsewhere_is_decoded_not_taken_from_the_cache(tmp_path, profile,
                                                                        victim, attack):
    uri = f"sqlite://{tmp_path}/shared.db"
    worker_a = Monitor(profile, model=victim.model, store=open_store(uri))
    worker_b = Monitor(profile, model=victim.model, store=open_store(uri))
    alone = Monitor(profile, model=victim.model)  # one process seeing every call
    for i, worker in enumerate([worker_a, worker_b, worker_a, worker_a, worker_b, worker_a]):
        rows = attack[5 * i:5 * i + 5]
        assert worker.observe("mallory", rows).to_dict() == alone.observe("mallory",
                                                                           rows).to_dict()
    assert worker_a.counters().reused_states == 1  # only the call right after its own write
    worker_b.reset("mallory")  # an operator reset from another worker
    assert worker_a.observe("mallory", attack[40:41]).n_queries == 1


def test_a_failed_write_leaves_no_state_in_the_cache(profile, victim, attack):
    from contextlib import contextmanager

    from monitor.stores.base import StoreWriteError

    class FailingStore(MemoryStore):
        fail = False

        @contextmanager
        def transaction(self, client_id):
            with super().transaction(client_id) as tx:
                yield tx
                if self.fail:
                    self.fail = False
                    raise StoreWriteError("disk full")

    flaky = Monitor(profile, model=victim.model, store=FailingStore())
    reference = Monitor(profile, model=victim.model)
    for i in range(10):
        flaky.observe("mallory", attack[i]), reference.observe("mallory", attack[i])
    flaky.store.fail = True
    with pytest.raises(StoreWriteError):
        flaky.observe("mallory", attack[50:60])  # lost: neither stored nor cached
    for i in range(10, 20):
        assert flaky.observe("mallory", attack[i]).to_dict() == \
            reference.observe("mallory", attack[i]).to_dict()


def test_processes_opening_a_new_sqlite_file_at_once_add_its_columns_once(tmp_path):
    """Every opener of a new file sees the index columns missing; only the first to take the
    write lock may add them (the others failed with "duplicate column name")."""
    import threading

    for attempt in range(10):
        db = tmp_path / f"state-{attempt}.db"
        barrier, errors = threading.Barrier(6), []

        def open_at_once(db=db, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                SQLiteStore(db).close()
            except ValueError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_at_once) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
