"""Client identity: who is asking, as a salted hash safe to store and log.

**Salt.** Client ids are salted hashes of API keys / addresses; every worker, and every
restart, must use the same salt or a client's state is lost. :func:`resolve_salt` decides it,
in order: the ``[serving] salt`` of the config; ``$EXTRACTION_MONITOR_SALT``; for SQLite, the
file ``<db>.salt`` beside the database (created with mode 0600 on first start); for
``memory://`` a fresh random salt. ``redis://`` needs one of the first two (hosts share no
file system).

>>> resolve_salt("memory://", configured="s3cret")
's3cret'
>>> len(resolve_salt("memory://", environ={}))
32
>>> resolve_salt("redis://127.0.0.1:6379/0", environ={})
Traceback (most recent call last):
...
ValueError: a redis:// state store needs a salt shared by every host: set EXTRACTION_MONITOR_SALT or [serving] salt
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from monitor.environment import SALT_ENV, Environment, as_environment

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientIdentifier:
    """Map an ASGI request scope to a monitor ``client_id``.

    The key is the ``header`` value (``X-API-Key`` by default) or, with ``use_bearer``, the
    ``Authorization: Bearer`` token; without one it is the peer address. ``X-Forwarded-For`` /
    ``Forwarded`` are honoured only when the peer is in ``trusted_proxies``. Keys and addresses
    are hashed with SHA-256 and the deployment ``salt``; ``client_id`` is ``key-`` or ``ip-``
    followed by the first 16 hex digits, so raw keys are never stored or logged.

    >>> ident = ClientIdentifier(salt="demo")
    >>> scope = {"headers": [(b"x-api-key", b"alice")], "client": ("10.0.0.5", 5000)}
    >>> ident(scope) == ident.hash_key("alice")
    True
    >>> ident({"headers": [], "client": ("10.0.0.5", 5000)}).startswith("ip-")
    True
    """

    def __init__(self, salt: str, header: str = "x-api-key", use_bearer: bool = False,
                 trusted_proxies: Iterable[str] = ()) -> None:
        self.salt = salt.encode()
        self.header = header.lower().encode()
        self.use_bearer = use_bearer
        self.trusted: list[_Network] = [
            ipaddress.ip_network(c, strict=False) for c in trusted_proxies
        ]

    def _hash(self, kind: str, value: str) -> str:
        digest = hashlib.sha256(self.salt + b"\x00" + value.encode("utf-8", "replace"))
        return f"{kind}-{digest.hexdigest()[:16]}"

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

    def __call__(self, scope: dict) -> str:
        headers = _headers(scope)
        key = headers.get(self.header)
        if self.use_bearer and not key:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer " and auth[7:].strip():
                key = auth[7:].strip()
        if key:
            return self.hash_key(key.decode("latin-1"))
        return self.hash_address(self.peer_address(scope))


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
        return secrets.token_hex(16)
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
