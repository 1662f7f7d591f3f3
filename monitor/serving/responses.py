"""Small raw-ASGI response helpers shared by the middleware, admin API and proxy."""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by ``None`` (JSON has no NaN/inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    return obj


def json_bytes(obj: Any) -> bytes:
    """Compact JSON for ``obj`` (numpy values and non-finite floats handled).

    >>> json_bytes({"a": float("inf"), "b": [1.5]})
    b'{"a":null,"b":[1.5]}'
    """
    return json.dumps(_finite(obj), separators=(",", ":")).encode()


async def send_bytes(send, status: int, body: bytes, content_type: bytes = b"application/json",
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a whole response through ASGI ``send``."""
    all_headers = [(b"content-type", content_type),
                   (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(send, status: int, obj: Any,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``obj`` as a JSON response."""
    await send_bytes(send, status, json_bytes(obj), headers=headers)


async def send_error(send, status: int, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``{"error": message}`` with ``status``."""
    await send_json(send, status, {"error": message}, headers=headers)
