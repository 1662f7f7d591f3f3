"""SQLite state store (``sqlite:///path/state.db``): persistent, many processes on one host.

One table ``client_state(client_id PRIMARY KEY, blob, updated_at)`` in WAL mode. Each
read-modify-write runs in a ``BEGIN IMMEDIATE`` transaction, which takes the database's
write lock before reading, so updates from different worker processes are never lost;
waiting writers retry for up to ``busy_timeout`` seconds. Every thread of every process
uses its own connection. The calls block, so async code runs them off the event loop
(the serving middleware calls ``Monitor.observe`` in a worker thread).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monitor.stores.base import StateStore, StoreUnavailable, Transaction, check_client_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS client_state (
    client_id TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS client_state_updated_at ON client_state (updated_at);
"""
EXPIRE_EVERY_SECONDS = 60.0
"""How often (at most) a transaction also purges expired clients."""


class SQLiteStore(StateStore):
    """Client records in one SQLite file shared by the worker processes of one host.

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> with SQLiteStore(path) as store:
    ...     with store.transaction("alice") as tx:
    ...         tx.save({"counters": np.array([5, 5, -1])})
    >>> SQLiteStore(path).get("alice")["counters"].tolist()   # survives re-opening
    [5, 5, -1]
    """

    scheme = "sqlite"

    def __init__(self, path: str | os.PathLike, ttl_seconds: float | None = None,
                 busy_timeout: float = 30.0, clock=time.time) -> None:
        super().__init__(ttl_seconds)
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"cannot create the SQLite state store {self.path}: directory "
                             f"{self.path.parent} does not exist")
        if not busy_timeout > 0:
            raise ValueError("busy_timeout must be > 0 seconds")
        self.busy_timeout = float(busy_timeout)
        self._clock = clock
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._next_expiry = 0.0
        try:
            self._connection().executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"cannot open the SQLite state store {self.path}: {exc}") from None

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)  # only close() crosses threads
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def _cutoff(self) -> float:
        return -float("inf") if self.ttl_seconds is None else self._clock() - self.ttl_seconds

    @contextmanager
    def transaction(self, client_id: str) -> Iterator[Transaction]:
        check_client_id(client_id)
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked for longer than busy_timeout
            raise StoreUnavailable(f"SQLite state store {self.path} is busy: {exc}") from None
        try:
            row = conn.execute(
                "SELECT blob FROM client_state WHERE client_id = ? AND updated_at >= ?",
                (client_id, self._cutoff())).fetchone()
            tx = Transaction(client_id, None if row is None else bytes(row[0]))
            yield tx
            if tx.saved is not None:
                conn.execute(
                    "INSERT INTO client_state (client_id, blob, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (client_id) DO UPDATE SET blob = excluded.blob, "
                    "updated_at = excluded.updated_at", (client_id, tx.saved, self._clock()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.ttl_seconds is not None and self._clock() >= self._next_expiry:
            self._next_expiry = self._clock() + EXPIRE_EVERY_SECONDS
            self.expire()

    def get_blob(self, client_id: str) -> bytes | None:
        row = self._connection().execute(
            "SELECT blob FROM client_state WHERE client_id = ? AND updated_at >= ?",
            (client_id, self._cutoff())).fetchone()
        return None if row is None else bytes(row[0])

    def clients(self) -> list[str]:
        rows = self._connection().execute(
            "SELECT client_id FROM client_state WHERE updated_at >= ? ORDER BY client_id",
            (self._cutoff(),)).fetchall()
        return [r[0] for r in rows]

    def delete(self, client_id: str) -> None:
        self._connection().execute("DELETE FROM client_state WHERE client_id = ?", (client_id,))

    def expire(self) -> int:
        if self.ttl_seconds is None:
            return 0
        cur = self._connection().execute("DELETE FROM client_state WHERE updated_at < ?",
                                         (self._cutoff(),))
        return cur.rowcount

    def close(self) -> None:
        """Close every thread's connection (call when no transaction is running)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, ttl_seconds={self.ttl_seconds})"
