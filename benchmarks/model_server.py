"""A plain model server: the upstream that proxy_latency.py puts the proxy in front of.

A small ASGI app served by uvicorn (one process, like a one-worker MLflow or KServe
server) answering a reference victim's ``predict_proba`` (its ``answer``) MLflow-style:
``POST /invocations`` (and ``POST /predict``) with ``dataframe_split``, ``instances`` or
``inputs`` bodies, answered ``{"predictions": [[p, ...], ...]}``; ``GET /health`` is 200.
It uses nothing from ``monitor/``. Not a benchmark itself; run_all.py skips it.

    .venv/bin/python benchmarks/model_server.py --victim digits-mlp --port 8001
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def model_app(victim):
    async def send_json(send, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET" and scope["path"] == "/health":
            await send_json(send, 200, {"status": "ok"})
            return
        if scope["method"] != "POST" or scope["path"] not in ("/invocations", "/predict"):
            await send_json(send, 404, {"error": "not found"})
            return
        try:
            payload = json.loads(body)
            if "dataframe_split" in payload:
                X = np.asarray(payload["dataframe_split"]["data"], dtype=float)
            else:
                X = np.asarray(payload.get("instances", payload.get("inputs")), dtype=float)
            X = X.reshape(-1, victim.n_features)
        except (ValueError, TypeError, KeyError, AttributeError):
            await send_json(send, 400, {"error": "bad request"})
            return
        await send_json(send, 200, {"predictions": np.asarray(victim.answer(X)).tolist()})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits-mlp")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    import uvicorn

    from victims import load_victim

    uvicorn.run(model_app(load_victim(args.victim)), host="127.0.0.1", port=args.port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    main()
