"""SQLite state store (``sqlite:///path/state.db``): persistent, many processes on one host.

One table ``client_state`` in WAL mode: the record (``blob``), when it was last written, a
version number, and the indexed summary (``n_queries``, ``score``, ``flagged``) from which
client listings page and sort without decoding records. A one-row table ``counts``, kept by
triggers, answers "how many clients, how many flagged" in O(1). A table ``throttle`` holds
each throttled client's bucket, so every worker process enforces one rate.

**Writes are short.** :meth:`SQLiteStore.update` reads the record without a lock, runs the
caller's computation (the detectors), and then takes the database's write lock only to
write the result if the record's version is unchanged (compare-and-set); if another
writer won meanwhile it recomputes, and after a few lost races it falls back to computing
inside the lock. So one large batch holds the host-wide write lock only for its own write,
never for its detectors. Waiting writers retry for up to ``busy_timeout`` seconds. Every
thread of every process uses its own connection. The database and its WAL files are
created readable by their owner only (0600). The calls block, so async code runs them off
the event loop (the serving middleware calls ``Monitor.observe`` in a worker thread).

**Checkpoints run in the background.** In WAL mode every commit appends to the ``-wal``
file, and SQLite copies it back into the database (a checkpoint, with an ``fsync``) inside
whichever commit crosses 1,000 pages: every few hundred client updates, one request paid
for all of them. Here a daemon thread per process runs a passive checkpoint every
``checkpoint_seconds`` (default 1 s) after writes, off the request path and without
blocking writers; commits checkpoint on their own only past :data:`AUTOCHECKPOINT_PAGES`
(a safety net should the thread stop). Durability is unchanged: a commit is in the WAL,
which SQLite replays after a crash.

A failed write (disk full, I/O error, read-only file) raises
:class:`~monitor.stores.base.StoreWriteError`; a write lock held past ``busy_timeout``
raises :class:`~monitor.stores.base.StoreUnavailable`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor.settings import SQLITE_BUSY_TIMEOUT
from monitor.state_record import StateRecord, record_summary
from monitor.stores.base import (
    RecordSummary,
    StateStore,
    StoreUnavailable,
    StoreWriteError,
    Transaction,
    check_client_id,
    check_sort,
    gcra,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS client_state (
    client_id TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS throttle (
    client_id TEXT PRIMARY KEY,
    tat REAL NOT NULL
) WITHOUT ROWID;
"""
COLUMNS = {"version": "INTEGER NOT NULL DEFAULT 0", "n_queries": "INTEGER NOT NULL DEFAULT 0",
           "score": "REAL NOT NULL DEFAULT 0", "flagged": "INTEGER NOT NULL DEFAULT 0"}
INDEX = """
CREATE INDEX IF NOT EXISTS client_state_score ON client_state (score);
CREATE INDEX IF NOT EXISTS client_state_n_queries ON client_state (n_queries);
CREATE INDEX IF NOT EXISTS client_state_flagged ON client_state (flagged, updated_at);
-- (flagged, updated_at) serves expiry and the flag listing: a second index on updated_at
-- alone cost every write another B-tree update (-15% write time without it) for nothing
DROP INDEX IF EXISTS client_state_updated_at;
CREATE TABLE IF NOT EXISTS counts (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    clients INTEGER NOT NULL,
    flagged INTEGER NOT NULL
);
INSERT OR IGNORE INTO counts (id, clients, flagged) VALUES
    (0, (SELECT count(*) FROM client_state), (SELECT count(*) FROM client_state WHERE flagged));
CREATE TRIGGER IF NOT EXISTS client_state_insert AFTER INSERT ON client_state BEGIN
    UPDATE counts SET clients = clients + 1, flagged = flagged + NEW.flagged WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS client_state_delete AFTER DELETE ON client_state BEGIN
    UPDATE counts SET clients = clients - 1, flagged = flagged - OLD.flagged WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS client_state_flag AFTER UPDATE OF flagged ON client_state BEGIN
    UPDATE counts SET flagged = flagged + NEW.flagged - OLD.flagged WHERE id = 0;
END;
"""
AUTOCHECKPOINT_PAGES = 16_384
"""WAL pages (4 KiB each) past which a commit checkpoints by itself: a safety net, since the
background checkpointer keeps the WAL far below it."""
CHECKPOINT_SECONDS = 1.0
"""How often the background checkpointer copies the WAL into the database (if written)."""
EXPIRE_EVERY_SECONDS = 60.0
"""How often (at most) a transaction also purges expired clients."""
OPTIMISTIC_TRIES = 4
"""Compare-and-set attempts of :meth:`SQLiteStore.update` before it computes under the lock."""
_ORDER = {"score": "score ASC, client_id", "-score": "score DESC, client_id",
          "n_queries": "n_queries ASC, client_id", "-n_queries": "n_queries DESC, client_id",
          "client_id": "client_id"}
_WRITE_FAILURES = ("full", "disk i/o", "readonly", "read-only", "no such table",
                   "unable to open")


def _private_file(path: Path) -> None:
    """Create ``path`` (and SQLite's WAL companions) readable by the owner only."""
    try:  # SQLite gives its -wal and -shm files the database file's mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends one itself on a full disk)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class SQLiteStore(StateStore):
    """Client records in one SQLite file shared by the worker processes of one host.

    >>> import tempfile, os
    >>> from monitor.state_record import RecordSummary, StateRecord
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> with SQLiteStore(path) as store:
    ...     with store.transaction("alice") as tx:
    ...         tx.save(StateRecord(b"record", RecordSummary(n_queries=5)))
    >>> reopened = SQLiteStore(path)                           # survives re-opening
    >>> reopened.get_blob("alice"), reopened.summary("alice").n_queries
    (b'record', 5)
    >>> oct(os.stat(path).st_mode & 0o777)
    '0o600'
    """

    scheme = "sqlite"
    quick_calls = True  # a local file in WAL mode: commits do not wait for the disk

    def __init__(self, path: str | os.PathLike, ttl_seconds: float | None = None,
                 busy_timeout: float = SQLITE_BUSY_TIMEOUT, clock=time.time,
                 flag_ttl_seconds: float | None = None, max_bytes: int | None = None,
                 checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        super().__init__(ttl_seconds, flag_ttl_seconds)
        if not checkpoint_seconds > 0:
            raise ValueError("checkpoint_seconds must be > 0")
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.checkpoints = 0
        """Passive checkpoints the background thread has run in this process."""
        self._written = threading.Event()  # set by every write, cleared by the checkpointer
        self._checkpointing = threading.Lock()  # held from that clear to the checkpoint's end
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_pid = -1
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"cannot create the SQLite state store {self.path}: directory "
                             f"{self.path.parent} does not exist")
        if not busy_timeout > 0:
            raise ValueError("busy_timeout must be > 0 seconds")
        self.busy_timeout = float(busy_timeout)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        """Cap on the database size (``PRAGMA max_page_count``): past it writes fail as on a
        full disk (StoreWriteError) instead of filling the host's disk."""
        self._clock = clock
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._next_expiry = 0.0
        self.retries = 0
        """Optimistic writes that lost a race and recomputed."""
        try:
            _private_file(self.path)
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"cannot open the SQLite state store {self.path}: {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot create the SQLite state store {self.path}: "
                             f"{exc.strerror}") from None

    def _create_schema(self) -> None:
        """Tables, index columns and indexes, created once however many processes open a new
        file at once. Switching a new file to WAL, or creating its tables, while another
        opener does the same can fail with "database is locked" at once (SQLite does not
        always call the busy handler there): retried with back-off until ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn = self._connection()
                conn.executescript(SCHEMA)
                self._migrate(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.2)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Add the index columns to a new database or one of an older release, and fill them.

        Processes opening a new file at once all see the columns missing; the columns are
        looked up again under the write lock, so only the first one adds them."""
        def missing() -> list[str]:
            have = {row[1] for row in conn.execute("PRAGMA table_info(client_state)")}
            return [c for c in COLUMNS if c not in have]

        if missing():
            conn.execute("BEGIN IMMEDIATE")
            try:
                columns = missing()
                for column in columns:
                    conn.execute(f"ALTER TABLE client_state ADD COLUMN {column} {COLUMNS[column]}")
                rows = (conn.execute("SELECT client_id, blob FROM client_state").fetchall()
                        if columns else [])
                for client_id, blob in rows:
                    s = record_summary(bytes(blob))
                    conn.execute("UPDATE client_state SET n_queries = ?, score = ?, flagged = ? "
                                 "WHERE client_id = ?",
                                 (s.n_queries, s.score, int(s.flagged), client_id))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        conn.executescript(INDEX)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)  # only close() crosses threads
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
                if self.max_bytes is not None:
                    page = conn.execute("PRAGMA page_size").fetchone()[0]
                    conn.execute(f"PRAGMA max_page_count = {max(1, self.max_bytes // page)}")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    # ------------------------------------------------------------------ checkpoints
    def _wrote(self) -> None:
        """Note a commit, and make sure this process's checkpointer runs (after a fork too)."""
        self._written.set()
        if self._checkpointer_pid != os.getpid() and not self._stop.is_set():
            self._checkpointer_pid = os.getpid()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlite-checkpointer", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = None
        try:
            while not self._stop.wait(self.checkpoint_seconds):
                if not self._written.is_set():
                    continue
                with self._checkpointing:
                    self._written.clear()
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                               isolation_level=None, check_same_thread=False)
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        self.checkpoints += 1
                    except sqlite3.Error:  # the commits' safety net still checkpoints
                        self._written.set()
        finally:
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------ liveness
    def _cutoffs(self) -> tuple[float, float]:
        now = self._clock()
        evidence = -float("inf") if self.ttl_seconds is None else now - self.ttl_seconds
        flags = -float("inf") if self.flag_ttl_seconds is None else now - self.flag_ttl_seconds
        return evidence, flags

    _LIVE = "(updated_at >= ? OR (flagged = 1 AND updated_at >= ?))"

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked for longer than busy_timeout
            raise StoreUnavailable(f"SQLite state store {self.path.name} is busy: "
                                   f"{exc}") from None

    def _write_error(self, exc: sqlite3.Error) -> Exception:
        text = str(exc).lower()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return StoreUnavailable(f"SQLite state store {self.path.name} is busy: {exc}")
        if any(word in text for word in _WRITE_FAILURES) or not isinstance(
                exc, sqlite3.OperationalError):
            return StoreWriteError(f"SQLite state store {self.path.name}: write failed: {exc}")
        return StoreWriteError(f"SQLite state store {self.path.name}: {exc}")

    def _upsert(self, conn, client_id: str, blob: bytes, summary: RecordSummary) -> None:
        conn.execute(
            "INSERT INTO client_state (client_id, blob, updated_at, version, n_queries, score, "
            "flagged) VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET "
            "blob = excluded.blob, updated_at = excluded.updated_at, "
            "version = client_state.version + 1, n_queries = excluded.n_queries, "
            "score = excluded.score, flagged = excluded.flagged",
            (client_id, blob, self._clock(), summary.n_queries, summary.score,
             int(summary.flagged)))

    # ------------------------------------------------------------------ read-modify-write
    @contextmanager
    def transaction(self, client_id: str) -> Iterator[Transaction]:
        check_client_id(client_id)
        conn = self._connection()
        self._begin(conn)
        try:
            row = conn.execute(f"SELECT blob FROM client_state WHERE client_id = ? AND "
                               f"{self._LIVE}", (client_id, *self._cutoffs())).fetchone()
            tx = Transaction(client_id, None if row is None else bytes(row[0]))
            yield tx
            if tx.saved is not None:
                self._upsert(conn, client_id, tx.saved, tx.summary)
            conn.execute("COMMIT")
            self._wrote()
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self._write_error(exc) from None
        except BaseException:
            _rollback(conn)
            raise
        self._maybe_expire()

    def update(self, client_id: str,
               compute: Callable[[bytes | None], StateRecord | None]) -> bytes | None:
        """Compute outside the write lock, then compare-and-set (see the module docstring)."""
        check_client_id(client_id)
        conn = self._connection()
        for _ in range(OPTIMISTIC_TRIES):
            row = conn.execute(f"SELECT blob, version, {self._LIVE} FROM client_state WHERE "
                               "client_id = ?", (*self._cutoffs(), client_id)).fetchone()
            live = row is not None and bool(row[2])
            new = compute(bytes(row[0]) if live else None)
            if new is None:
                return None
            blob, summary = new.blob, new.summary
            self._begin(conn)
            try:
                if row is None:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO client_state (client_id, blob, updated_at, "
                        "version, n_queries, score, flagged) VALUES (?, ?, ?, 1, ?, ?, ?)",
                        (client_id, blob, self._clock(), summary.n_queries, summary.score,
                         int(summary.flagged)))
                else:
                    cur = conn.execute(
                        "UPDATE client_state SET blob = ?, updated_at = ?, version = version + 1, "
                        "n_queries = ?, score = ?, flagged = ? WHERE client_id = ? AND version = ?",
                        (blob, self._clock(), summary.n_queries, summary.score,
                         int(summary.flagged), client_id, row[1]))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise self._write_error(exc) from None
            if cur.rowcount == 1:
                self._wrote()
                self._maybe_expire()
                return blob
            self.retries += 1
        return super().update(client_id, compute)  # contended: compute under the lock

    # ------------------------------------------------------------------ reads
    def get_blob(self, client_id: str) -> bytes | None:
        row = self._connection().execute(
            f"SELECT blob FROM client_state WHERE client_id = ? AND {self._LIVE}",
            (client_id, *self._cutoffs())).fetchone()
        return None if row is None else bytes(row[0])

    def summary(self, client_id: str) -> RecordSummary | None:
        row = self._connection().execute(
            f"SELECT n_queries, score, flagged FROM client_state WHERE client_id = ? AND "
            f"{self._LIVE}", (client_id, *self._cutoffs())).fetchone()
        return None if row is None else RecordSummary(int(row[0]), float(row[1]),
                                                      float(row[1]), bool(row[2]))

    def clients(self) -> list[str]:
        rows = self._connection().execute(
            f"SELECT client_id FROM client_state WHERE {self._LIVE} ORDER BY client_id",
            self._cutoffs()).fetchall()
        return [r[0] for r in rows]

    def counts(self) -> dict[str, int]:
        row = self._connection().execute(
            "SELECT clients, flagged FROM counts WHERE id = 0").fetchone()
        return {"clients": int(row[0]), "flagged": int(row[1])}

    def flagged(self, limit: int = 100_000) -> list[str]:
        rows = self._connection().execute(
            "SELECT client_id FROM client_state WHERE flagged = 1 AND updated_at >= ? LIMIT ?",
            (self._cutoffs()[1], limit)).fetchall()
        return [r[0] for r in rows]

    def page(self, offset: int = 0, limit: int = 50, sort: str = "-score",
             flagged: bool | None = None) -> tuple[int, list[str]]:
        check_sort(sort)
        where, args = self._LIVE, list(self._cutoffs())
        counts = self.counts()
        total = counts["clients"]
        if flagged is not None:
            where += " AND flagged = ?"
            args.append(int(flagged))
            total = counts["flagged"] if flagged else counts["clients"] - counts["flagged"]
        rows = self._connection().execute(
            f"SELECT client_id FROM client_state WHERE {where} ORDER BY {_ORDER[sort]} "
            "LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return total, [r[0] for r in rows]

    def delete(self, client_id: str) -> None:
        conn = self._connection()
        try:
            conn.execute("DELETE FROM client_state WHERE client_id = ?", (client_id,))
            conn.execute("DELETE FROM throttle WHERE client_id = ?", (client_id,))
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None

    def expire(self) -> int:
        if self.ttl_seconds is None and self.flag_ttl_seconds is None:
            return 0
        evidence, flags = self._cutoffs()
        cur = self._connection().execute(
            "DELETE FROM client_state WHERE (flagged = 0 AND updated_at < ?) OR "
            "(flagged = 1 AND updated_at < ?)", (evidence, flags))
        return cur.rowcount

    def _maybe_expire(self) -> None:
        if (self.ttl_seconds is not None or self.flag_ttl_seconds is not None) \
                and self._clock() >= self._next_expiry:
            self._next_expiry = self._clock() + EXPIRE_EVERY_SECONDS
            try:
                self.expire()
            except sqlite3.Error:  # the next write will report a real failure
                pass

    # ------------------------------------------------------------------ shared throttle
    def take(self, client_id: str, cost: float, rate: float, burst: float,
             start: bool = False) -> float:
        conn = self._connection()
        self._begin(conn)
        try:
            row = conn.execute("SELECT tat FROM throttle WHERE client_id = ?",
                               (client_id,)).fetchone()
            now = time.time()
            tat, wait = gcra(now if row is None else float(row[0]), now, cost, rate, burst,
                             start)
            conn.execute("INSERT INTO throttle (client_id, tat) VALUES (?, ?) ON CONFLICT "
                         "(client_id) DO UPDATE SET tat = excluded.tat", (client_id, tat))
            conn.execute("COMMIT")
            self._wrote()
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self._write_error(exc) from None
        return wait

    def forget_throttle(self, client_id: str) -> None:
        self._connection().execute("DELETE FROM throttle WHERE client_id = ?", (client_id,))

    def close(self) -> None:
        """Stop the checkpointer and close every thread's connection (call when no
        transaction is running)."""
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer_pid == os.getpid():
            self._checkpointer.join(timeout=5)
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def stats(self) -> dict[str, int]:
        return {"optimistic_retries": self.retries}

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, ttl_seconds={self.ttl_seconds})"
