"""Client states kept decoded between requests, for the records this process wrote last.

Every observe reads the client's record, decodes it into a
:class:`~monitor.state.ClientState`, updates it and writes it back. When the record read is
byte for byte the one this process wrote last for that client, decoding it again only
rebuilds the object that produced it. :class:`DecodedStates` keeps that object beside the
bytes it was written as, and hands it back when the store returns exactly those bytes;
anything else (another worker or host wrote since, an operator reset the client, the record
expired) is a miss, and the record is decoded as before. So a hit and a miss give the same
state, and every verdict is what decoding would have given.

An entry is taken out when it is used (the update mutates the state in place), and put back
only after the store confirmed the write, so a failed or retried write never leaves a state
in the cache that differs from its bytes. The number of entries is bounded (least recently
written first out).

>>> from monitor.state import ClientState
>>> cache = DecodedStates(capacity=2)
>>> state = ClientState(n_queries=3)
>>> blob = state.to_record().blob
>>> cache.put("alice", blob, state)
>>> cache.take("alice", blob) is state   # the record this process wrote
True
>>> cache.take("alice", blob) is None    # taken: used once
True
>>> cache.put("alice", blob, state)
>>> cache.take("alice", ClientState(n_queries=4).to_record().blob)
>>> cache.hits, cache.misses
(1, 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from monitor.state import ClientState


class DecodedStates:
    """A bounded map from client key to (the record bytes written, the state they encode).

    ``capacity`` 0 keeps nothing (every record is decoded).
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = int(capacity)
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[bytes, ClientState]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, blob: bytes | None) -> ClientState | None:
        """The state ``blob`` encodes if this cache holds it for ``key`` (taken out), else
        ``None``. ``blob`` is what the store read (``None`` for no record)."""
        with self._lock:
            entry = self._entries.pop(key, None) if self._entries else None
            if entry is not None and blob is not None and entry[0] == blob:
                self.hits += 1
                return entry[1]
            self.misses += 1
        return None

    def put(self, key: str, blob: bytes, state: ClientState) -> None:
        """Remember that ``blob``, just written for ``key``, encodes ``state`` (which the
        caller no longer mutates)."""
        if not self.capacity:
            return
        with self._lock:
            self._entries[key] = (blob, state)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


__all__ = ["DecodedStates"]
