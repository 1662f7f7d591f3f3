"""Per-client state stores chosen by URI: ``memory://``, ``sqlite:///path.db``, ``redis://``.

>>> store = open_store("memory://")
>>> store.clients()
[]

See :mod:`monitor.stores.base` for the interface; records are opaque bytes to a store
(their format: :mod:`monitor.state_record`).
"""

from monitor.stores.base import StateStore, StoreUnavailable, StoreWriteError, Transaction
from monitor.stores.memory import MemoryStore
from monitor.stores.sqlite import SQLiteStore
from monitor.stores.uri import open_store

__all__ = [
    "MemoryStore", "RedisStore", "SQLiteStore", "StateStore", "StoreUnavailable",
    "StoreWriteError", "Transaction", "open_store",
]


def __getattr__(name: str):
    if name == "RedisStore":  # imports redis-py only when asked for
        from monitor.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'monitor.stores' has no attribute {name!r}")
