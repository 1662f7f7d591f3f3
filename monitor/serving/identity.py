"""Client identity: who is asking, as a salted hash safe to store and log.

**Salt.** Client ids are keyed hashes (HMAC) of API keys / addresses; every worker, and
every restart, must use the same salt or a client's state (its flag included) is lost. The
salt also keys the retry digest (:func:`monitor.hashing.digest_key`). :func:`resolve_salt`
decides it, in order: the ``[serving] salt`` of the config; ``$EXTRACTION_MONITOR_SALT``;
for SQLite, the file ``<db>.salt`` beside the database; for ``memory://``, the file
``memory.salt`` in the data folder (``$XDG_DATA_HOME/extraction-monitor``) — each created
with mode 0600 on first start and read on every later one. ``redis://`` needs one of the
first two (hosts share no file system).

>>> import tempfile
>>> resolve_salt("memory://", configured="s3cret")
's3cret'
>>> env = {"XDG_DATA_HOME": tempfile.mkdtemp()}
>>> resolve_salt("memory://", environ=env) == resolve_salt("memory://", environ=env)
True
>>> resolve_salt("redis://127.0.0.1:6379/0", environ={})
Traceback (most recent call last):
...
ValueError: a redis:// state store needs a salt shared by every host: set EXTRACTION_MONITOR_SALT or [serving] salt
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from monitor.environment import SALT_ENV, Environment, as_environment, data_dir

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IdentityError(ValueError):
    """A request whose identity is ambiguous (answered with 400)."""


class ClientIdentifier:
    """Map an ASGI request scope to a monitor ``client_id``, as the operator decided.

    ``sources`` lists where identity comes from, in order of precedence: ``"bearer"`` (the
    ``Authorization: Bearer`` token), ``"header"`` (the ``header``, ``X-API-Key`` by
    default) and ``"peer"`` (the peer address; ``X-Forwarded-For`` / ``Forwarded`` are
    honoured only when the peer is in ``trusted_proxies``). A source not listed is ignored,
    so a client cannot pick a new identity with a header the operator did not name. A
    request carrying an identity header twice, or a key and a bearer token that disagree,
    is ambiguous (the app and the monitor could each read another one) and raises
    :class:`IdentityError`.

    Keys and addresses become ``HMAC-SHA256(salt, kind || value)``; ``client_id`` is
    ``key-`` or ``ip-`` followed by 24 hex digits, so raw keys are never stored or logged.

    >>> ident = ClientIdentifier(salt="demo")
    >>> scope = {"headers": [(b"x-api-key", b"alice")], "client": ("10.0.0.5", 5000)}
    >>> ident(scope) == ident.hash_key("alice")
    True
    >>> ident({"headers": [], "client": ("10.0.0.5", 5000)}).startswith("ip-")
    True
    >>> ident({"headers": [(b"x-api-key", b"a"), (b"x-api-key", b"b")], "client": None})
    Traceback (most recent call last):
    ...
    monitor.serving.identity.IdentityError: the request carries the x-api-key header 2 times; send one
    """

    def __init__(self, salt: str, header: str = "x-api-key", use_bearer: bool = False,
                 trusted_proxies: Iterable[str] = (),
                 sources: Iterable[str] | None = None) -> None:
        self.salt = salt.encode()
        self.header = header.lower().encode()
        if sources is None:
            sources = ("bearer", "header", "peer") if use_bearer else ("header", "peer")
        self.sources = tuple(sources)
        unknown = set(self.sources) - {"bearer", "header", "peer"}
        if unknown or not self.sources:
            raise ValueError(f"identity sources must be among bearer, header, peer; got "
                             f"{list(self.sources)}")
        self.trusted: list[_Network] = [
            ipaddress.ip_network(c, strict=False) for c in trusted_proxies
        ]

    def _hash(self, kind: str, value: str) -> str:
        digest = hmac.new(self.salt, kind.encode() + b"\x00" + value.encode("utf-8", "replace"),
                          hashlib.sha256)
        return f"{kind}-{digest.hexdigest()[:24]}"

    def hash_key(self, key: str) -> str:
        """The client id of API key / bearer token ``key`` (for operators looking one up)."""
        return self._hash("key", key)

    def hash_address(self, address: str) -> str:
        """The client id of a peer address."""
        return self._hash("ip", address)

    def _is_trusted(self, address: str | None) -> bool:
        if not address or not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def peer_address(self, scope: dict) -> str:
        """The client's address, walking forwarding headers only through trusted proxies."""
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._is_trusted(peer):
            return peer
        headers = _headers(scope)
        hops = _forwarded_for(headers.get(b"forwarded")) or _x_forwarded_for(
            headers.get(b"x-forwarded-for"))
        # right to left: the first address that is not one of our trusted proxies
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _single(self, scope: dict, name: bytes) -> bytes | None:
        values = [v for k, v in scope.get("headers", []) if k.lower() == name]
        if len(values) > 1:
            raise IdentityError(f"the request carries the {name.decode()} header "
                                f"{len(values)} times; send one")
        return values[0].strip() if values else None

    def keys(self, scope: dict) -> dict[str, str]:
        """The identity values the request carries, by source (raw; do not log)."""
        found: dict[str, str] = {}
        if "header" in self.sources:
            key = self._single(scope, self.header)
            if key:
                found["header"] = key.decode("latin-1")
        if "bearer" in self.sources:
            auth = self._single(scope, b"authorization")
            if auth is not None and auth[:7].lower() == b"bearer " and auth[7:].strip():
                found["bearer"] = auth[7:].strip().decode("latin-1")
        return found

    def __call__(self, scope: dict) -> str:
        found = self.keys(scope)
        if "header" in found and "bearer" in found and found["header"] != found["bearer"]:
            raise IdentityError(f"the request carries both a {self.header.decode()} key and a "
                                "bearer token, and they differ; send one identity")
        for source in self.sources:
            if source == "peer":
                return self.hash_address(self.peer_address(scope))
            if source in found:
                return self.hash_key(found[source])
        raise IdentityError(f"the request carries no identity (expected "
                            f"{' or '.join(self.sources)})")


class GroupResolver:
    """Map a request to its group id, as ``[serving] group_by`` says (:mod:`monitor.grouping`).

    ``header:NAME`` and ``peer`` groups derive from a key or an address, so their ids are
    hashed with the deployment salt like client ids (``tenant-`` / ``net-`` and 24 hex
    digits); ``peer`` reads the peer address as client identity does (forwarding headers
    only from ``trusted_proxies``). ``cohort:SECONDS`` groups are time buckets
    (``cohort-N``) of the request's arrival; the monitor keeps each client's first group,
    so a cohort is the ids first seen in one bucket. A request without the header (or a
    peer that is not an IP address) has no group; the header sent twice is ambiguous
    (:class:`IdentityError`). Group ids are never metric labels.

    >>> from monitor.grouping import parse_grouping
    >>> ident = ClientIdentifier(salt="demo")
    >>> by_net = GroupResolver(parse_grouping("peer"), ident)
    >>> a = by_net({"headers": [], "client": ("10.0.0.5", 1)})
    >>> a == by_net({"headers": [], "client": ("10.0.0.77", 2)}), a.startswith("net-")
    (True, True)
    >>> GroupResolver(parse_grouping("cohort:60"), ident, clock=lambda: 130.0)({})
    'cohort-2'
    >>> GroupResolver(parse_grouping("header:X-Tenant"), ident)({"headers": []}) is None
    True
    """

    def __init__(self, grouping, identifier: ClientIdentifier,
                 clock: Callable[[], float] = time.time) -> None:
        self.grouping = grouping
        self.identifier = identifier
        self.clock = clock
        self._header = grouping.name.lower().encode() if grouping.kind == "header" else b""

    def __call__(self, scope: dict) -> str | None:
        kind = self.grouping.kind
        if kind == "cohort":
            return self.grouping.group(self.clock())
        if kind == "peer":
            network = self.grouping.group(self.identifier.peer_address(scope))
            return None if network is None else self.identifier._hash("net", network)
        value = self.identifier._single(scope, self._header)
        group = self.grouping.group(value.decode("latin-1") if value is not None else None)
        return None if group is None else self.identifier._hash("tenant", group)


def _headers(scope: dict) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        name = name.lower()
        out[name] = out[name] + b"," + value if name in out else value
    return out


def _x_forwarded_for(value: bytes | None) -> list[str]:
    if not value:
        return []
    return [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]


def _forwarded_for(value: bytes | None) -> list[str]:
    """``for=`` addresses of an RFC 7239 ``Forwarded`` header, in order."""
    if not value:
        return []
    hops = []
    for element in value.decode("latin-1").split(","):
        for pair in element.split(";"):
            name, _, val = pair.strip().partition("=")
            if name.lower() != "for" or not val:
                continue
            val = val.strip().strip('"')
            if val.startswith("["):  # [v6]:port
                val = val[1:val.find("]")] if "]" in val else val[1:]
            elif val.count(":") == 1:  # v4:port
                val = val.split(":")[0]
            hops.append(val)
    return hops


def sqlite_path(uri: str) -> Path | None:
    """The database path of a ``sqlite:///`` URI, else ``None``."""
    parts = urlsplit(uri)
    return Path(parts.path) if parts.scheme.lower() == "sqlite" and parts.path else None


def resolve_salt(state_uri: str, configured: str | None = None,
                 environ: Environment | Mapping[str, str] | None = None) -> str:
    """The client-id salt for a deployment on ``state_uri`` (see the module docstring)."""
    if configured:
        return configured
    env = as_environment(environ)
    if env.salt:
        return env.salt
    scheme = urlsplit(state_uri).scheme.lower()
    if scheme in ("redis", "rediss"):
        raise ValueError(f"a redis:// state store needs a salt shared by every host: "
                         f"set {SALT_ENV} or [serving] salt")
    db = sqlite_path(state_uri)
    if db is None:
        folder = data_dir(env)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return persistent_salt(folder / "memory.salt")
    return persistent_salt(db.with_name(db.name + ".salt"))


def persistent_salt(path: Path) -> str:
    """The salt stored in ``path``, created (mode 0600) with a random salt if missing."""
    path = Path(path)
    salt = secrets.token_hex(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(salt + "\n")
        return salt
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"salt file {path} is empty; delete it (client ids will change) or "
                         f"set {SALT_ENV}")
    return text
