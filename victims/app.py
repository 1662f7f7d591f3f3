"""The reference victim as an HTTP prediction API (``POST /predict``), optionally monitored.

Part of the test range: ``serve --victim`` (:mod:`victims.commands.serve`, registered through
the ``extraction_monitor.commands`` entry points) serves it in uvicorn workers, and the demo, the
benchmarks and the serving tests use it as the app the monitor protects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from monitor.serving.extractors import (
    DEFAULT_EXTRACTORS,
    REQUEST_ROWS_KEY,
    ExtractionError,
    extract_rows,
)
from monitor.serving.http import BodyTooLarge, read_body
from monitor.serving.middleware import ExtractionMonitorMiddleware
from monitor.serving.responses import json_bytes
from monitor.settings import ServingConfig


def request_schema(n_features: int) -> dict[str, Any]:
    """The OpenAPI schema of a ``/predict`` body: one of the supported formats."""
    row = {"type": "array", "items": {"type": "number"}, "minItems": n_features,
           "maxItems": n_features}
    rows = {"type": "array", "items": row, "minItems": 1}
    record = {"type": "object", "additionalProperties": {"type": "number"}}
    tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"],
              "properties": {"name": {"type": "string"},
                             "shape": {"type": "array", "items": {"type": "integer"}},
                             "datatype": {"type": "string", "enum": ["FP32", "FP64", "INT64"]},
                             "data": {"type": "array", "items": {"type": "number"}}}}
    return {"oneOf": [
        {"type": "object", "required": ["instances"], "properties": {"instances": rows}},
        {"type": "object", "required": ["inputs"], "properties": {"inputs": {
            "type": "array", "minItems": 1, "maxItems": 1, "items": tensor}}},
        {"type": "object", "required": ["dataframe_split"], "properties": {"dataframe_split": {
            "type": "object", "required": ["data"],
            "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                           "data": rows}}}},
        {"type": "object", "required": ["dataframe_records"], "properties": {
            "dataframe_records": {"type": "array", "minItems": 1, "items": record}}},
        {"type": "object", "required": ["features"], "properties": {"features": {
            "oneOf": [row, rows]}}},
    ]}


_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}


def build_victim_app(victim, monitor=None, config: ServingConfig | None = None,
                     admin_token: str | None = None, extractors=DEFAULT_EXTRACTORS) -> FastAPI:
    """A FastAPI app answering ``POST /predict`` with ``victim.answer`` in every format.

    With ``monitor`` the app is wrapped in :class:`ExtractionMonitorMiddleware`.

    >>> from victims import load_victim
    >>> app = build_victim_app(load_victim("wine-tree"))
    >>> "/predict" in app.openapi()["paths"]
    True
    """
    config = config or ServingConfig()
    n_features = victim.n_features
    names = list(victim.feature_names)
    app = FastAPI(title=f"{victim.name} prediction API",
                  description=f"Reference victim {victim.name!r} answering in "
                              f"{victim.output_mode!r} mode.")

    @app.post("/predict", openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": request_schema(n_features)}}}},
        responses={400: _ERROR, 403: _ERROR, 413: _ERROR, 422: _ERROR, 429: _ERROR})
    async def predict(request: Request) -> JSONResponse:
        """Predict for one or many rows, in the request's own format."""
        read = request.scope.get("state", {}).get(REQUEST_ROWS_KEY)
        if read is not None and read.rows is None:  # the monitor's parse, as plain numbers
            payload, extractor, X = read.payload, read.extractor, read.X
        else:
            try:
                body = await read_body(request.scope, request.receive, config.max_body_bytes)
            except BodyTooLarge:
                return _error(413, f"request body exceeds {config.max_body_bytes} bytes")
            try:
                payload, extractor, X = extract_rows(body or b"", n_features, names,
                                                     extractors)
            except ExtractionError as exc:
                return _error(exc.status, str(exc))
        outputs = np.asarray(victim.answer(X))
        answer = extractor.render_response(outputs, payload, victim.name)
        return _raw(200, answer)

    if monitor is not None:
        app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor, config=config,
                           admin_token=admin_token, extractors=extractors,
                           feature_names=names)
    return app


class _RawJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def _raw(status: int, content: Any) -> JSONResponse:
    return _RawJSON(content=content, status_code=status)


def _error(status: int, message: str) -> JSONResponse:
    return _raw(status, {"error": message})


def build_victim_monitor(victim, monitor_config=None, store=None):
    """A :class:`monitor.Monitor` for ``victim`` (profile fitted on its train/cal splits),
    keeping client state in ``store`` (a :class:`monitor.stores.StateStore`) if given."""
    from monitor import Monitor, Profile

    profile = Profile().fit(victim.model, victim.X_train, victim.y_train,
                            X_cal=victim.X_cal, y_cal=victim.y_cal)
    return Monitor(profile, config=monitor_config, model=victim.model, store=store)


def victim_app_from_env():
    """The (monitored) reference victim app of ``serve --victim`` (a uvicorn factory)."""
    from monitor.serving.launch import worker_monitor, worker_options
    from victims import load_victim

    options = worker_options()
    settings = options.resolved_settings()
    spec = options.factory_options or {}
    victim = load_victim(spec["name"], output_mode=spec.get("output_mode", "proba"),
                         seed=spec.get("seed", 0))
    monitor = worker_monitor(options, settings, victim.model) if options.profile else None
    return build_victim_app(victim, monitor, settings.serving, admin_token=options.admin_token)
