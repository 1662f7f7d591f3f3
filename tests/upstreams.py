"""Real upstream servers for proxy tests, each a plain ASGI app served by uvicorn.

``lenient_upstream`` answers predictions on *any* path and method, reading the body with
its own, more forgiving parser (Python's json: the last duplicate key wins; the first format
key it knows, in its own order) — the kind of server an attacker hopes to find behind the
monitor. It compresses its answer as the request's ``Accept-Encoding`` asks (br, gzip), or
always with ``force_encoding``, and ``GET /echo`` returns the request headers it received.
"""

from __future__ import annotations

import gzip
import json

import numpy as np

UPSTREAM_ORDER = ("features", "dataframe_records", "dataframe_split", "instances", "inputs")


def _rows(payload, names):
    for key in UPSTREAM_ORDER:
        if isinstance(payload, dict) and key in payload:
            value = payload[key]
            if key == "dataframe_split":
                return np.asarray(value["data"], dtype=float), "predictions"
            if key == "dataframe_records":
                return np.asarray([[r[n] for n in names] for r in value], dtype=float), \
                    "predictions"
            if key == "inputs" and isinstance(value, list) and value and isinstance(
                    value[0], dict):
                t = value[0]
                return np.asarray(t["data"], dtype=float).reshape(t["shape"]), "v2"
            X = np.asarray(value, dtype=float)
            return (X[None, :] if X.ndim == 1 else X), "predictions"
    raise ValueError("no rows")


async def read_all(receive) -> bytes:
    """The whole request body of an ASGI request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def lenient_upstream(victim, force_encoding: str | None = None, received: list | None = None):
    names = list(victim.feature_names)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_all(receive)
        headers = [(k.decode(), v.decode("latin-1")) for k, v in scope["headers"]]
        if received is not None:
            received.append({"method": scope["method"], "path": scope["path"],
                             "headers": headers, "body": body})
        if scope["path"] == "/echo":
            await _send(send, 200, json.dumps({"headers": headers}).encode(), [])
            return
        try:
            X, kind = _rows(json.loads(body), names)
        except (ValueError, KeyError, TypeError, IndexError):
            await _send(send, 400, b'{"error": "bad request"}', [])
            return
        outputs = np.asarray(victim.answer(X))
        if kind == "v2":
            answer = {"model_name": "m", "outputs": [{"name": "probabilities",
                                                      "shape": list(outputs.shape),
                                                      "datatype": "FP64",
                                                      "data": outputs.ravel().tolist()}]}
        else:
            answer = {"predictions": outputs.tolist()}
        raw = json.dumps(answer).encode()
        accepted = dict(headers).get("accept-encoding", "")
        encoding = force_encoding or ("br" if "br" in accepted else
                                      "gzip" if "gzip" in accepted else None)
        extra = []
        if encoding == "br":
            import brotli

            raw, extra = brotli.compress(raw), [(b"content-encoding", b"br")]
        elif encoding == "gzip":
            raw, extra = gzip.compress(raw), [(b"content-encoding", b"gzip")]
        elif encoding is not None:  # an encoding nobody here can read
            raw, extra = b"\x28\xb5\x2f\xfd" + raw[::-1], [(b"content-encoding",
                                                            encoding.encode())]
        await _send(send, 200, raw, extra)

    return app


async def _send(send, status, body, extra):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


def format_upstream(victim):
    """Answers like the real servers: MLflow ``predictions`` on /invocations, TF Serving
    ``outputs`` for its columnar ``inputs`` on ``:predict``, v2 tensors on ``/infer``."""
    from monitor.serving.extractors import extract

    names = list(victim.feature_names)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_all(receive)
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
        try:
            ex = extract(body, victim.n_features, names, content_type=content_type)
        except ValueError as exc:
            await _send(send, 400, json.dumps({"error": str(exc)}).encode(), [])
            return
        outputs = np.asarray(victim.answer(ex.X))
        path = scope["path"]
        if path.endswith("/infer"):
            answer = {"model_name": "m", "outputs": [{
                "name": "probabilities", "shape": list(outputs.shape), "datatype": "FP64",
                "data": outputs.ravel().tolist()}]}
        elif path.endswith(":predict") and isinstance(ex.payload, dict) \
                and "inputs" in ex.payload:
            answer = {"outputs": outputs.tolist()}
        else:
            answer = {"predictions": outputs.tolist()}
        await _send(send, 200, json.dumps(answer).encode(), [])

    return app
