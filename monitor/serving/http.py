"""HTTP plumbing of the serving layer, on raw ASGI: request headers, the request body read
size-limited and replayed to the app, the app's response captured, and one content decoder
for both.

* :func:`read_body` reads a whole request body, refusing it (:class:`BodyTooLarge`) as soon
  as its declared or streamed size passes the limit; :func:`replay` hands those same bytes
  to the app.
* :func:`decode_content` undoes a ``Content-Encoding`` (gzip, deflate, and br with
  ``brotli`` installed), never producing more than its limit: a request body is decoded to
  be read, a captured response (:class:`Captured`) to read the model's outputs.
* :func:`identity_encoded` asks the app for an uncompressed answer (the monitor must read
  it); :func:`with_state` hands the app what the monitor read.

>>> import gzip
>>> decode_content(gzip.compress(b'{"a": 1}'), b"gzip", limit=100)
b'{"a": 1}'
>>> decode_content(b"abc", b"zstd", limit=100)
Traceback (most recent call last):
...
monitor.serving.http.UnsupportedEncoding: Content-Encoding 'zstd' is not supported
"""

from __future__ import annotations

import zlib
from typing import Any

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Methods whose requests carry no body unless their headers say so."""


class BodyTooLarge(Exception):
    """The request body exceeded its limit (``ServingConfig.max_body_bytes``)."""


class ContentDecodingError(ValueError):
    """A body whose ``Content-Encoding`` cannot be undone."""


class UnsupportedEncoding(ContentDecodingError):
    """A content coding the monitor cannot decode (zstd, say; br without ``brotli``)."""


class CorruptEncoding(ContentDecodingError):
    """A body that does not match its ``Content-Encoding`` (corrupt or truncated)."""


class DecodedTooLarge(ContentDecodingError):
    """A body that decodes to more than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"decoded body exceeds {limit} bytes")
        self.limit = limit


def header(scope, name: bytes) -> bytes | None:
    """The last value of request header ``name`` (lower case), or ``None``."""
    value = None
    for key, val in scope.get("headers", []):
        if key.lower() == name:
            value = val
    return value


def header_text(scope, name: bytes) -> str | None:
    """:func:`header` as text (latin-1, as HTTP headers are), or ``None``."""
    value = header(scope, name)
    return None if value is None else value.decode("latin-1")


def carries_body(scope, method: str) -> bool:
    """Whether a request may carry a body the app would read."""
    if method not in BODYLESS_METHODS:
        return True
    for name, value in scope.get("headers", []):
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length"
                                            and value.strip() not in (b"", b"0")):
            return True
    return False


def identity_encoded(scope):
    """``scope`` asking the app for an uncompressed answer (the monitor must read it)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
    headers.append((b"accept-encoding", b"identity"))
    return {**scope, "headers": headers}


def with_state(scope, key: str, value: Any):
    """``scope`` with ``value`` under ``key`` in its ``state`` (``request.state.<key>`` in
    Starlette and FastAPI)."""
    return {**scope, "state": {**scope.get("state", {}), key: value}}


def codings(content_encoding: bytes | None) -> list[bytes]:
    """The content codings of a ``Content-Encoding`` value, in the order they were applied."""
    return [c.strip().lower() for c in (content_encoding or b"").split(b",") if c.strip()]


def decode_content(body: bytes, content_encoding: bytes | None, limit: int) -> bytes:
    """``body`` with its ``Content-Encoding`` undone, at most ``limit`` bytes of it.

    Raises :class:`UnsupportedEncoding`, :class:`CorruptEncoding` (a body that does not
    match its coding, or is cut short) or :class:`DecodedTooLarge`."""
    for coding in reversed(codings(content_encoding)):
        if coding != b"identity":
            body = _decode_one(coding, body, limit)
    return body


def _decode_one(coding: bytes, body: bytes, limit: int) -> bytes:
    if coding in (b"gzip", b"x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, members=True)
    if coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        return _inflate(body, zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS,
                        limit, members=False)
    if coding == b"br":
        return _unbrotli(body, limit)
    raise UnsupportedEncoding(f"Content-Encoding {coding.decode('latin-1')!r} is not "
                              "supported")


def _inflate(body: bytes, wbits: int, limit: int, members: bool) -> bytes:
    """zlib streams of ``body`` inflated (every gzip member when ``members``)."""
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        d = zlib.decompressobj(wbits)
        try:
            chunk = d.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise CorruptEncoding("body does not match its Content-Encoding") from None
        size += len(chunk)
        if size > limit or d.unconsumed_tail:
            raise DecodedTooLarge(limit)
        if not d.eof:
            raise CorruptEncoding("body is cut short of its Content-Encoding's end")
        out.append(chunk)
        rest = d.unused_data.lstrip(b"\x00") if members else d.unused_data
        if not rest:
            return b"".join(out)
        if not members:
            raise CorruptEncoding("body has bytes past its Content-Encoding's end")


def _unbrotli(body: bytes, limit: int) -> bytes:
    try:
        import brotli
    except ImportError:
        raise UnsupportedEncoding("Content-Encoding 'br' is not supported (install "
                                  "brotli)") from None
    d = brotli.Decompressor()
    try:
        try:
            out = d.process(body, output_buffer_limit=limit + 1)
        except TypeError:  # brotli < 1.2: no output limit, checked afterwards
            out = d.process(body)
    except brotli.error:
        raise CorruptEncoding("body does not match its Content-Encoding") from None
    if len(out) > limit:
        raise DecodedTooLarge(limit)
    if not d.is_finished():
        if not d.can_accept_more_data():  # output is waiting: more than the limit
            raise DecodedTooLarge(limit)
        raise CorruptEncoding("body is cut short of its Content-Encoding's end")
    return out


async def read_body(scope, receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` on disconnect; :class:`BodyTooLarge` past ``limit``."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """A ``receive`` that yields ``body`` once, then defers to the real ``receive``."""
    sent = False

    async def receive_again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


class Captured:
    """A buffered ASGI response (status, headers, body) that can be replayed or rewritten.

    >>> import asyncio
    >>> captured = Captured()
    >>> asyncio.run(captured.send({"type": "http.response.start", "status": 200}))
    >>> asyncio.run(captured.send({"type": "http.response.body", "body": b"{}"}))
    >>> captured.status, captured.decoded_body(limit=10)
    (200, b'{}')
    """

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def decoded_body(self, limit: int) -> bytes:
        """The body with its content-encoding undone (:func:`decode_content`)."""
        return decode_content(self.body, self.header(b"content-encoding"), limit)

    async def replay(self, send, new_body: bytes | None = None) -> None:
        """Send the response as captured, or with ``new_body`` (JSON, uncompressed)."""
        headers = self.headers
        body = self.body
        if new_body is not None:
            body = new_body
            headers = [(k, v) for k, v in headers
                       if k.lower() not in (b"content-length", b"content-encoding")]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = ["BODYLESS_METHODS", "BodyTooLarge", "Captured", "ContentDecodingError",
           "CorruptEncoding", "DecodedTooLarge", "UnsupportedEncoding", "carries_body",
           "codings", "decode_content", "header", "header_text", "identity_encoded",
           "read_body", "replay", "with_state"]
