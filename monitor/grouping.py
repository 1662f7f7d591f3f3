"""Grouping strategies: which group a client belongs to, so that an attack split across many
ids (sybils) is also tested as one stream (``Monitor.observe(..., group=...)``).

One spec string names a strategy; :func:`parse_grouping` reads it:

* ``header:NAME`` — the value of request header ``NAME`` (offline: log column ``NAME``) holds an
  account or tenant: its ids form one group;
* ``peer`` — the network of the client's peer address: IPv4 ``/24``, IPv6 ``/48``; ``peer:/16``
  or ``peer:/16/56`` set the prefixes; offline ``peer:COLUMN`` (``peer:COLUMN/16``) names the
  log column holding addresses;
* ``cohort:SECONDS`` — time adjacency: ids whose first query falls in the same ``SECONDS``-long
  bucket (of UTC time) form one group.

A client keeps the group of its first query (the monitor stores it in the client's state), so
``cohort`` needs only the time of each query, and a key that moves to another network or tenant
header stays in the group it started in.

>>> parse_grouping("peer").group("192.0.2.77")
'192.0.2.0/24'
>>> parse_grouping("peer:/16/32").group("2001:db8:abcd::1")
'2001:db8::/32'
>>> parse_grouping("cohort:60").group(125.0)
'cohort-2'
>>> parse_grouping("header:X-Tenant").group("acme")
'acme'
>>> parse_grouping("subnet")
Traceback (most recent call last):
...
monitor.grouping.GroupingError: unknown grouping 'subnet'; write header:NAME, peer, peer:/24 (or peer:COLUMN/24 offline) or cohort:SECONDS
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import ClassVar

MAX_GROUP_CHARS = 64
"""Longest group id the monitor keeps (longer values are refused: ids are state, not data)."""
FORMS = "header:NAME, peer, peer:/24 (or peer:COLUMN/24 offline) or cohort:SECONDS"
"""What :func:`parse_grouping` accepts, as its errors say it."""


class GroupingError(ValueError):
    """A grouping spec that cannot be read (the message says what to write)."""


@dataclass(frozen=True)
class HeaderGrouping:
    """Ids sending the same value of one header (offline: log column) form a group.

    >>> HeaderGrouping("x-tenant").group("  acme "), HeaderGrouping("x-tenant").group("")
    ('acme', None)
    """

    name: str
    kind: ClassVar[str] = "header"

    def group(self, value: str | None) -> str | None:
        """The group of a request carrying ``value`` (``None``: no value, no group)."""
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def spec(self) -> str:
        return f"header:{self.name}"


@dataclass(frozen=True)
class PeerGrouping:
    """Ids whose peer addresses share a network prefix form a group.

    >>> PeerGrouping(v4_prefix=16).group("10.1.2.3"), PeerGrouping().group("not-an-ip")
    ('10.1.0.0/16', None)
    """

    v4_prefix: int = 24
    v6_prefix: int = 48
    column: str | None = None
    """Offline only: the log column holding each query's peer address."""
    kind: ClassVar[str] = "peer"

    def group(self, address: str | None) -> str | None:
        """The network of ``address`` (``None`` if it is not an IP address)."""
        try:
            ip = ipaddress.ip_address(str(address).strip())
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        prefix = self.v4_prefix if ip.version == 4 else self.v6_prefix
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    def spec(self) -> str:
        return f"peer:{self.column or ''}/{self.v4_prefix}/{self.v6_prefix}"


@dataclass(frozen=True)
class CohortGrouping:
    """Ids whose first query falls in the same time bucket form a group.

    >>> CohortGrouping(3600.0).group(7200.5)
    'cohort-2'
    """

    seconds: float
    kind: ClassVar[str] = "cohort"

    def group(self, time_seconds: float) -> str:
        """The cohort of a first query sent at ``time_seconds`` (seconds since the epoch)."""
        return f"cohort-{math.floor(float(time_seconds) / self.seconds)}"

    def spec(self) -> str:
        return f"cohort:{self.seconds:g}"


Grouping = HeaderGrouping | PeerGrouping | CohortGrouping

HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
"""What an HTTP header name may hold (``[serving] group_by`` checks it; a log column may be
named otherwise)."""
_PEER = re.compile(r"^(?P<column>[^/]*)(?:/(?P<v4>\d+)(?:/(?P<v6>\d+))?)?$")


def parse_grouping(spec: str) -> Grouping:
    """The strategy ``spec`` names (module docstring); :class:`GroupingError` otherwise."""
    text = str(spec).strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind == "header":
        name = arg.strip()
        if not sep or not name:
            raise GroupingError(f"grouping {text!r}: write header:NAME with the header (or log "
                                "column) that holds the account or tenant")
        return HeaderGrouping(name)
    if kind == "peer":
        match = _PEER.match(arg.strip())
        if match is None:
            raise GroupingError(f"grouping {text!r}: write peer, peer:/24, peer:/24/48 or, "
                                "offline, peer:COLUMN/24")
        v4 = int(match["v4"]) if match["v4"] else 24
        v6 = int(match["v6"]) if match["v6"] else 48
        if not (0 <= v4 <= 32 and 0 <= v6 <= 128):
            raise GroupingError(f"grouping {text!r}: prefixes are /0-/32 for IPv4 and /0-/128 "
                                "for IPv6 (peer:/24/48)")
        return PeerGrouping(v4, v6, match["column"].strip() or None)
    if kind == "cohort":
        try:
            seconds = float(arg)
        except ValueError:
            seconds = math.nan
        if not sep or not math.isfinite(seconds) or seconds <= 0:
            raise GroupingError(f"grouping {text!r}: write cohort:SECONDS with a positive "
                                "bucket length (cohort:60)")
        return CohortGrouping(seconds)
    raise GroupingError(f"unknown grouping {text!r}; write {FORMS}")


def checked_group(group) -> str | None:
    """``group`` as the monitor keeps it: a non-empty string of at most
    :data:`MAX_GROUP_CHARS` characters, or ``None``; :class:`ValueError` for a longer one.

    >>> checked_group(" acme "), checked_group("")
    ('acme', None)
    """
    if group is None:
        return None
    text = str(group).strip()
    if len(text) > MAX_GROUP_CHARS:
        raise ValueError(f"group id of {len(text)} characters; at most {MAX_GROUP_CHARS} "
                         "(hash longer ones)")
    return text or None


__all__ = ["FORMS", "MAX_GROUP_CHARS", "CohortGrouping", "Grouping", "GroupingError",
           "HEADER_NAME", "HeaderGrouping", "PeerGrouping", "checked_group", "parse_grouping"]
