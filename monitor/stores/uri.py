"""Stores chosen by URI or by a ``[store]`` table: :func:`open_store`."""

from __future__ import annotations

from urllib.parse import urlsplit

from monitor.settings import StoreConfig
from monitor.stores.base import StateStore


def open_store(store: str | StoreConfig = "memory://") -> StateStore:
    """A store from a URI (options in its query, as rate limiters take them) or a
    :class:`~monitor.settings.StoreConfig` (the ``[store]`` table).

    * ``memory://?ttl=3600`` — in this process only (tests, single worker);
    * ``sqlite:///abs/path/state.db?ttl=86400&busy_timeout=10`` — one host, many processes;
    * ``redis://[:password@]host:6379/0?ttl=86400&on_error=open&timeout=0.5`` — many hosts
      (``rediss://`` for TLS); ``on_error`` is ``open`` (default) or ``closed``.

    >>> open_store("memory://?ttl=60").ttl_seconds
    60.0
    >>> open_store("postgres://db")
    Traceback (most recent call last):
    ...
    monitor.settings.SettingsError: invalid [store]: uri 'postgres://db' is an unsupported state store URI; use memory://, sqlite:///path.db or redis://host:port/db
    """
    if isinstance(store, str):
        config = StoreConfig.from_uri(store)
    elif isinstance(store, StoreConfig):
        config = store if store.uri is None else StoreConfig.from_uri(
            store.uri, **store.model_dump(exclude={"uri"}))
    else:
        raise ValueError(f"state store must be a URI or a StoreConfig, got {store!r}")
    if config.uri is None:
        raise ValueError("the state store has no URI; set [store] uri or --state")
    parts = urlsplit(config.uri)
    scheme = config.scheme
    if scheme == "memory":
        from monitor.stores.memory import MemoryStore

        return MemoryStore(ttl_seconds=config.ttl or None, flag_ttl_seconds=config.flag_ttl or None)
    if scheme == "sqlite":
        from monitor.stores.sqlite import SQLiteStore

        if parts.netloc or not parts.path or parts.path == "/":
            raise ValueError(f"sqlite state URI needs an absolute path with three slashes, "
                             f"like sqlite:///var/lib/monitor/state.db; got {config.uri!r}")
        return SQLiteStore(parts.path, ttl_seconds=config.ttl or None,
                           busy_timeout=config.busy_timeout, flag_ttl_seconds=config.flag_ttl or None,
                           max_bytes=config.max_bytes)
    from monitor.stores.redis import RedisStore

    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"redis state URI database must be a number, got {db!r}")
    return RedisStore(
        host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(db),
        password=parts.password, ssl=parts.scheme.lower() == "rediss",
        ttl_seconds=config.ttl or None, on_error=config.on_error, timeout=config.timeout,
        buffer_size=config.buffer, prefix=config.prefix, flag_ttl_seconds=config.flag_ttl or None)


__all__ = ["open_store"]
