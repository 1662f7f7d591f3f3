"""Request/response extractors: pull feature rows and model outputs out of JSON bodies.

Built in (tried in this order):

* ``v2``        Open Inference Protocol v2 — ``{"inputs": [{"name", "shape", "datatype", "data"}]}``
  answered by ``{"model_name", "outputs": [tensor, ...]}``;
* ``instances`` TF Serving / KServe v1 / MLflow — ``{"instances": [[...], ...]}`` (rows may be
  lists or dicts keyed by feature name) or MLflow's ``{"inputs": [[...], ...]}``,
  answered by ``{"predictions": [...]}``;
* ``dataframe_split`` / ``dataframe_records`` — MLflow pandas orients, answered by
  ``{"predictions": [...]}``;
* ``features``  plain ``{"features": [...]}`` (one row) or ``{"features": [[...], ...]}``,
  answered by ``{"prediction": ...}`` / ``{"predictions": [...]}``.

An extractor is any object with ``name``, ``matches(payload)``, ``parse_request(payload,
feature_names)``, ``parse_response(payload)``, ``rewrite_response(payload, outputs)`` and
``render_response(outputs, request_payload, model_name)``; pass your own list to the middleware.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class ExtractionError(ValueError):
    """A request body the monitor cannot read; ``status`` is the HTTP code to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def loads(body: bytes) -> Any:
    """Parse a JSON body, raising :class:`ExtractionError` (400) if it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExtractionError(f"request body is not valid JSON: {exc}") from None


def as_matrix(rows: Any, what: str) -> np.ndarray:
    """Rows as a 2-D float array; raises :class:`ExtractionError` (422) if they are not numeric."""
    try:
        X = np.asarray(rows, dtype=float)
    except (ValueError, TypeError):
        raise ExtractionError(
            f"{what} must be a list of equal-length lists of numbers", status=422
        ) from None
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ExtractionError(
            f"{what} must be a non-empty list of rows of numbers, got shape {list(X.shape)}",
            status=422,
        )
    return X


def _records_to_matrix(records: list, feature_names: list[str] | None, what: str) -> np.ndarray:
    if not feature_names:
        raise ExtractionError(f"{what} given as named records but the feature names are unknown")
    missing = [
        n for n in feature_names if not all(isinstance(r, dict) and n in r for r in records)
    ]
    if missing:
        raise ExtractionError(
            f"{what}: every record needs all {len(feature_names)} features; missing e.g. "
            f"{missing[0]!r}",
            status=422,
        )
    return as_matrix([[r[n] for n in feature_names] for r in records], what)


def _outputs_matrix(values: Any) -> np.ndarray | None:
    """Model outputs as ``(n, k)`` floats or ``(n,)`` labels; ``None`` if unreadable."""
    if isinstance(values, list) and values and isinstance(values[0], dict):
        for key in ("probabilities", "probability", "scores", "proba", "label", "class"):
            if all(isinstance(v, dict) and key in v for v in values):
                values = [v[key] for v in values]
                break
        else:
            return None
    try:
        arr = np.asarray(values)
    except ValueError:
        return None
    if arr.dtype.kind in "biuf" and arr.ndim in (1, 2) and arr.size:
        return arr.astype(float) if arr.ndim == 2 else arr
    if arr.dtype.kind == "U" and arr.ndim == 1 and arr.size:
        return arr
    return None


def _to_json_list(outputs: np.ndarray) -> list:
    return outputs.tolist()


class PredictionsExtractor:
    """Base for the formats answered with ``{"predictions": [...]}``."""

    name = "predictions"
    key = ""

    def matches(self, payload: Any) -> bool:
        return isinstance(payload, dict) and self.key in payload

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        raise NotImplementedError

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if isinstance(payload, dict) and "predictions" in payload:
            return _outputs_matrix(payload["predictions"])
        return None

    def rewrite_response(self, payload: dict, outputs: np.ndarray) -> dict:
        return {**payload, "predictions": _to_json_list(outputs)}

    def render_response(self, outputs: np.ndarray, request: Any, model_name: str) -> dict:
        return {"predictions": _to_json_list(outputs)}


class InstancesExtractor(PredictionsExtractor):
    """TF Serving / KServe v1 ``instances`` and MLflow tensor ``inputs`` (list of rows)."""

    name = "instances"

    def matches(self, payload: Any) -> bool:
        if not isinstance(payload, dict):
            return False
        if "instances" in payload:
            return True
        inputs = payload.get("inputs")
        return isinstance(inputs, list) and not (inputs and isinstance(inputs[0], dict))

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        key = "instances" if "instances" in payload else "inputs"
        rows = payload[key]
        if not isinstance(rows, list) or not rows:
            raise ExtractionError(f"'{key}' must be a non-empty list of rows", status=422)
        if isinstance(rows[0], dict):
            return _records_to_matrix(rows, feature_names, f"'{key}'")
        return as_matrix(rows, f"'{key}'")


class DataframeSplitExtractor(PredictionsExtractor):
    """MLflow ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``."""

    name = "dataframe_split"
    key = "dataframe_split"

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or "data" not in split:
            raise ExtractionError("'dataframe_split' must be an object with 'data' (and 'columns')")
        X = as_matrix(split["data"], "'dataframe_split.data'")
        columns = split.get("columns")
        if columns is None or not feature_names or list(columns) == list(feature_names):
            return X
        if not isinstance(columns, list) or len(columns) != X.shape[1]:
            raise ExtractionError("'dataframe_split.columns' must name every column of 'data'",
                                  status=422)
        index = {c: i for i, c in enumerate(columns)}
        missing = [n for n in feature_names if n not in index]
        if missing:
            raise ExtractionError(f"'dataframe_split.columns' lacks feature {missing[0]!r}",
                                  status=422)
        return X[:, [index[n] for n in feature_names]]


class DataframeRecordsExtractor(PredictionsExtractor):
    """MLflow ``{"dataframe_records": [{"feature": value, ...}, ...]}``."""

    name = "dataframe_records"
    key = "dataframe_records"

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        records = payload["dataframe_records"]
        if not isinstance(records, list) or not records:
            raise ExtractionError("'dataframe_records' must be a non-empty list of objects",
                                  status=422)
        return _records_to_matrix(records, feature_names, "'dataframe_records'")


class FeaturesExtractor(PredictionsExtractor):
    """Plain ``{"features": [...]}`` (one row → ``prediction``) or a list of rows."""

    name = "features"
    key = "features"

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        return as_matrix(payload["features"], "'features'")

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if isinstance(payload, dict) and "prediction" in payload:
            out = _outputs_matrix([payload["prediction"]])
            return out
        return super().parse_response(payload)

    def rewrite_response(self, payload: dict, outputs: np.ndarray) -> dict:
        if "prediction" in payload:
            return {**payload, "prediction": _to_json_list(outputs)[0]}
        return super().rewrite_response(payload, outputs)

    def render_response(self, outputs: np.ndarray, request: Any, model_name: str) -> dict:
        features = request.get("features") if isinstance(request, dict) else None
        if isinstance(features, list) and features and not isinstance(features[0], list):
            return {"prediction": _to_json_list(outputs)[0]}
        return {"predictions": _to_json_list(outputs)}


_V2_FLOAT = {"FP16", "FP32", "FP64"}
_V2_INT = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"}
_V2_PROBA_NAMES = ("probabilities", "probability", "proba", "predict_proba", "output_probability")


class V2Extractor:
    """Open Inference Protocol v2 tensors (``inputs`` / ``outputs`` with shape and datatype)."""

    name = "v2"

    def matches(self, payload: Any) -> bool:
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        return isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], dict)

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        inputs = payload["inputs"]
        if len(inputs) != 1:
            raise ExtractionError(
                f"v2 'inputs' must hold exactly one tensor of shape [rows, features], "
                f"got {len(inputs)} tensors", status=422)
        tensor = inputs[0]
        for key in ("shape", "datatype", "data"):
            if key not in tensor:
                raise ExtractionError(f"v2 input tensor lacks '{key}'")
        shape, datatype = tensor["shape"], tensor["datatype"]
        if datatype not in _V2_FLOAT | _V2_INT:
            raise ExtractionError(f"v2 input datatype must be numeric (e.g. FP64), got {datatype!r}",
                                  status=422)
        if (not isinstance(shape, list) or len(shape) not in (1, 2)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                           for s in shape)):
            raise ExtractionError(f"v2 input shape must be [rows, features], got {shape!r}",
                                  status=422)
        try:
            data = np.asarray(tensor["data"], dtype=float).ravel()
        except (ValueError, TypeError):
            raise ExtractionError("v2 input 'data' must be numbers", status=422) from None
        if data.size != int(np.prod(shape)):
            raise ExtractionError(
                f"v2 input 'data' has {data.size} values but shape {shape} needs "
                f"{int(np.prod(shape))}", status=422)
        return data.reshape(shape if len(shape) == 2 else (1, shape[0]))

    def _pick(self, payload: Any) -> dict | None:
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        if not isinstance(outputs, list) or not outputs:
            return None
        tensors = [t for t in outputs if isinstance(t, dict) and "data" in t]
        for name in _V2_PROBA_NAMES:
            for t in tensors:
                if t.get("name") == name:
                    return t
        return tensors[0] if tensors else None

    def parse_response(self, payload: Any) -> np.ndarray | None:
        tensor = self._pick(payload)
        if tensor is None:
            return None
        out = _outputs_matrix(tensor["data"])
        shape = tensor.get("shape")
        if out is None or not isinstance(shape, list):
            return out
        try:
            return out.reshape(shape) if out.dtype.kind == "f" else out
        except (ValueError, TypeError):
            return None

    def rewrite_response(self, payload: dict, outputs: np.ndarray) -> dict:
        tensor = self._pick(payload)
        new = _v2_tensor(outputs, tensor.get("name", "output-0") if tensor else "output-0")
        kept = [t for t in payload.get("outputs", []) if t is not tensor]
        return {**payload, "outputs": [new, *kept]}

    def render_response(self, outputs: np.ndarray, request: Any, model_name: str) -> dict:
        name = "probabilities" if outputs.ndim == 2 else "label"
        body: dict[str, Any] = {"model_name": model_name, "outputs": [_v2_tensor(outputs, name)]}
        if isinstance(request, dict) and isinstance(request.get("id"), str):
            body["id"] = request["id"]
        return body


def _v2_tensor(outputs: np.ndarray, name: str) -> dict:
    if outputs.dtype.kind == "f":
        datatype = "FP64"
    elif outputs.dtype.kind in "biu":
        datatype = "INT64"
    else:
        datatype = "BYTES"
    return {"name": name, "shape": list(outputs.shape), "datatype": datatype,
            "data": outputs.ravel().tolist()}


DEFAULT_EXTRACTORS: tuple = (
    V2Extractor(), InstancesExtractor(), DataframeSplitExtractor(),
    DataframeRecordsExtractor(), FeaturesExtractor(),
)
"""The built-in formats, in the order they are tried."""

MAX_ABS_FEATURE = float(np.finfo(np.float32).max)
"""Largest feature magnitude accepted: models and the monitor work in float32."""

FORMAT_KEYS = "instances, inputs, dataframe_split, dataframe_records or features"


def find_extractor(payload: Any, extractors=DEFAULT_EXTRACTORS):
    """The first extractor that recognises ``payload``; :class:`ExtractionError` (400) if none."""
    for extractor in extractors:
        if extractor.matches(payload):
            return extractor
    raise ExtractionError(f"unrecognised request format: expected a JSON object with {FORMAT_KEYS}")


def extract_rows(body: bytes, n_features: int, feature_names: list[str] | None = None,
                 extractors=DEFAULT_EXTRACTORS) -> tuple[Any, Any, np.ndarray]:
    """Parse and validate a request body: ``(payload, extractor, X)``.

    >>> import json
    >>> _, ex, X = extract_rows(json.dumps({"instances": [[1, 2], [3, 4]]}).encode(), 2)
    >>> ex.name, X.tolist()
    ('instances', [[1.0, 2.0], [3.0, 4.0]])
    >>> try:
    ...     extract_rows(b'{"features": [1, 2, 3]}', 2)
    ... except ExtractionError as exc:
    ...     print(exc.status, exc)
    422 expected 2 features per row, got 3
    """
    payload = loads(body)
    extractor = find_extractor(payload, extractors)
    X = extractor.parse_request(payload, feature_names)
    if X.shape[1] != n_features:
        raise ExtractionError(f"expected {n_features} features per row, got {X.shape[1]}",
                              status=422)
    bad = ~(np.abs(X) <= MAX_ABS_FEATURE)  # also catches NaN
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ExtractionError(
            f"row {row} feature {col} is {X[row, col]}; features must be finite numbers "
            f"of magnitude at most {MAX_ABS_FEATURE:.3g}", status=422)
    return payload, extractor, X
