"""Per-client state stores chosen by URI: ``memory://``, ``sqlite:///path.db``, ``redis://``.

>>> store = open_store("memory://")
>>> store.clients()
[]

See :mod:`monitor.stores.base` for the interface and the record format.
"""

from monitor.stores.base import (
    RECORD_FORMAT_VERSION,
    CorruptRecord,
    StateStore,
    StoreUnavailable,
    Transaction,
    decode_state,
    encode_state,
    state_size_bound,
)
from monitor.stores.memory import MemoryStore
from monitor.stores.sqlite import SQLiteStore
from monitor.stores.uri import open_store

__all__ = [
    "RECORD_FORMAT_VERSION", "CorruptRecord", "MemoryStore", "RedisStore", "SQLiteStore", "StateStore",
    "StoreUnavailable", "Transaction", "decode_state", "encode_state", "open_store",
    "state_size_bound",
]


def __getattr__(name: str):
    if name == "RedisStore":  # imports redis-py only when asked for
        from monitor.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'monitor.stores' has no attribute {name!r}")
