"""Request/response extractors: pull feature rows and model outputs out of JSON bodies.

Built in (one request format each; a body naming two formats is refused, see below):

* ``v2``        Open Inference Protocol v2 (KServe v2, Triton, MLServer) — ``{"inputs":
  [{"name", "shape", "datatype", "data"}, ...]}``: one ``[rows, features]`` tensor, or one
  ``[rows]`` / ``[rows, 1]`` tensor per feature named like the feature; answered by
  ``{"model_name", "outputs": [tensor, ...]}``;
* ``instances`` TF Serving / KServe v1 / MLflow row format — ``{"instances": [[...], ...]}``
  (rows may be lists, or objects keyed by feature name), answered by ``{"predictions": [...]}``;
* ``inputs``    MLflow / TF Serving columnar format — ``{"inputs": [[...], ...]}`` (rows) or
  ``{"inputs": {"feature": [values...], ...}}`` (one list per feature), answered by
  ``{"predictions": [...]}`` (MLflow) or ``{"outputs": [...]}`` (TF Serving);
* ``dataframe_split`` / ``dataframe_records`` — MLflow pandas orients, answered by
  ``{"predictions": [...]}``;
* ``features``  plain ``{"features": [...]}`` (one row) or ``{"features": [[...], ...]}``,
  answered by ``{"prediction": ...}`` / ``{"predictions": [...]}``.

**No parser differentials.** Bodies are parsed strictly: an object with a key twice, nesting
deeper than :data:`MAX_DEPTH`, or a body that names more than one format (``instances`` and
``features``, say) is refused with 400, so the rows the monitor sees are the rows the model
answers.

**Named columns.** An extractor returns rows as a matrix in the profile's feature order, or
as named columns (:class:`ExtractedRows` with ``columns``, or a :class:`pandas.DataFrame`);
named columns are mapped by name in one place (:func:`extract`), where a missing or unknown column
is a 422 naming it. :attr:`Extraction.frame` keeps the rows as a DataFrame with the feature
names, so a profile with named (or later categorical) features can consume them as the model
does.

**Your own schema.** :func:`extractor` turns a function from the parsed body to a DataFrame
(or rows) into an extractor::

    @extractor(matches=lambda body: isinstance(body, dict) and "records" in body)
    def records(body):
        return pd.DataFrame(body["records"])

An extractor is any object with ``name``, ``matches(payload)``, ``parse_request(payload,
feature_names)``, ``parse_response(payload)``, ``rewrite_response(payload, outputs)`` and
``render_response(outputs, request_payload, model_name)``; pass your list to the middleware.

**Parsed once.** The middleware hands the app the rows it read: the request's ASGI
``scope["state"]`` holds the :class:`Extraction` under :data:`REQUEST_ROWS_KEY`, so a
FastAPI or Starlette app can skip parsing the body again::

    ex = getattr(request.state, "extraction_monitor_rows", None)
    X = ex.X if ex is not None else parse(await request.body())

``X`` is in the profile's feature order (named columns reordered, values as float64).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_DEPTH = 32
"""Deepest nesting of JSON arrays and objects accepted in a request body."""
MAX_CELLS = 10_000_000
"""Largest tensor (rows × features) a v2 ``shape`` may declare."""
MAX_ABS_FEATURE = float(np.finfo(np.float32).max)
"""Largest feature magnitude accepted: models and the monitor work in float32."""


class ExtractionError(ValueError):
    """A request body the monitor cannot read.

    ``status`` is the HTTP code to answer and ``reason`` a short label for metrics (never
    anything a client chose).
    """

    def __init__(self, message: str, status: int = 400, reason: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Unrecognised(ExtractionError):
    """Valid JSON that no extractor understands (the route's ``unparseable`` policy decides)."""

    def __init__(self, message: str, reason: str = "unrecognised_format") -> None:
        super().__init__(message, 400, reason)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ExtractionError(f"request body has the key {key[:40]!r} twice in one object",
                                  reason="duplicate_key")
        out[key] = value
    return out


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children
                         if isinstance(child, dict | list))
    return deepest


def loads(body: bytes) -> Any:
    """Parse a JSON body strictly: 400 (:class:`Unrecognised`) if it is not JSON; 400 on a
    duplicate key or nesting deeper than :data:`MAX_DEPTH`.

    >>> loads(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> loads(b'{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    monitor.serving.extractors.ExtractionError: request body has the key 'a' twice in one object
    >>> loads(b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}")
    Traceback (most recent call last):
    ...
    monitor.serving.extractors.ExtractionError: request body is nested deeper than 32 levels
    >>> len(loads(b'{"a": [' + b"[1], " * 40 + b"[2]]}")["a"])  # many lists, none deep
    41
    """
    try:
        payload = json.loads(body, object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise ExtractionError(f"request body is nested deeper than {MAX_DEPTH} levels",
                              reason="too_deep") from None
    except ExtractionError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unrecognised(f"request body is not valid JSON: {str(exc)[:120]}",
                           reason="not_json") from None
    opened = body.count(b"[") + body.count(b"{")  # a bound on the depth, at C speed
    if opened > MAX_DEPTH and _depth(payload, MAX_DEPTH) > MAX_DEPTH:
        raise ExtractionError(f"request body is nested deeper than {MAX_DEPTH} levels",
                              reason="too_deep")
    return payload


SCALARS = (str, int, float, bool, type(None))
"""JSON values a feature may hold: numbers, strings (categorical features), and null (missing)."""


def as_matrix(rows: Any, what: str) -> np.ndarray:
    """Rows as a 2-D float array, or — when some values are strings (categorical features) —
    a 2-D object array of JSON scalars; 422 if they are not equal-length rows of scalars."""
    try:
        X = np.asarray(rows, dtype=float)
    except (ValueError, TypeError, OverflowError, RecursionError):
        X = _object_matrix(rows, what)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ExtractionError(
            f"{what} must be a non-empty list of rows of numbers, got shape {list(X.shape)}",
            status=422, reason="bad_shape")
    return X


def _object_matrix(rows: Any, what: str) -> np.ndarray:
    """Equal-length rows of JSON scalars as an object array (the schema codes them later)."""
    problem = ExtractionError(f"{what} must be a list of equal-length lists of numbers "
                              "(or strings, for categorical features)", status=422,
                              reason="bad_values")
    try:
        X = np.asarray(rows, dtype=object)
    except (ValueError, TypeError, RecursionError):
        raise problem from None
    if X.ndim == 1 and len(X) and not isinstance(X[0], list | tuple | np.ndarray):
        X = X[None, :]
    if X.ndim != 2:
        raise problem
    flat = X.ravel()
    if not all(isinstance(v, SCALARS) for v in flat):
        raise problem
    return X


@dataclass(frozen=True)
class ExtractedRows:
    """What an extractor read: ``values`` (n, k), and the name of each column if the request
    named them (``None``: the columns are the profile's features, in order)."""

    values: np.ndarray
    columns: tuple[str, ...] | None = None


def _records(records: list, what: str) -> ExtractedRows:
    """Rows from a list of ``{feature: value}`` objects (every record the same keys)."""
    if not all(isinstance(r, dict) for r in records):
        raise ExtractionError(f"{what}: every record must be an object of feature values",
                              status=422, reason="bad_values")
    columns = tuple(records[0])
    keys = set(columns)
    for i, record in enumerate(records):
        if set(record) != keys:
            other = sorted(set(record) ^ keys)[0]
            raise ExtractionError(f"{what}: record {i} does not have the same features as "
                                  f"record 0 (e.g. {other[:40]!r})", status=422,
                                  reason="missing_column")
    return ExtractedRows(as_matrix([[r[c] for c in columns] for r in records], what), columns)


def _columns(table: dict, what: str) -> ExtractedRows:
    """Rows from ``{feature: [values...]}`` (one equal-length list per feature)."""
    if not table:
        raise ExtractionError(f"{what} must name at least one feature", status=422,
                              reason="bad_shape")
    columns = tuple(table)
    lengths = {len(v) if isinstance(v, list) else -1 for v in table.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise ExtractionError(f"{what}: every feature needs a list of values, all of one "
                              "length", status=422, reason="bad_shape")
    values = as_matrix([table[c] for c in columns], what)
    return ExtractedRows(values.T, columns)


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
    except (ValueError, TypeError, OverflowError, RecursionError):
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

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        raise NotImplementedError

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if isinstance(payload, dict) and "predictions" in payload:
            return _outputs_matrix(payload["predictions"])
        if isinstance(payload, list):  # TorchServe and others answer a bare list
            return _outputs_matrix(payload)
        return None

    def rewrite_response(self, payload: Any, outputs: np.ndarray) -> Any:
        if isinstance(payload, list):
            return _to_json_list(outputs)
        return {**payload, "predictions": _to_json_list(outputs)}

    def render_response(self, outputs: np.ndarray, request: Any, model_name: str) -> dict:
        return {"predictions": _to_json_list(outputs)}


class InstancesExtractor(PredictionsExtractor):
    """TF Serving / KServe v1 / MLflow ``{"instances": [...]}`` (rows or named records)."""

    name = "instances"
    key = "instances"

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        rows = payload["instances"]
        if not isinstance(rows, list) or not rows:
            raise ExtractionError("'instances' must be a non-empty list of rows", status=422,
                                  reason="bad_shape")
        if isinstance(rows[0], dict):
            return _records(rows, "'instances'")
        return as_matrix(rows, "'instances'")


class InputsExtractor(PredictionsExtractor):
    """MLflow / TF Serving ``{"inputs": ...}``: a list of rows, or one list per feature.

    TF Serving answers the columnar format with ``{"outputs": ...}``; both are read.
    """

    name = "inputs"
    key = "inputs"

    def matches(self, payload: Any) -> bool:
        if not isinstance(payload, dict) or "inputs" not in payload:
            return False
        inputs = payload["inputs"]
        return isinstance(inputs, dict) or not (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], dict))

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        inputs = payload["inputs"]
        if isinstance(inputs, dict):
            if len(inputs) == 1 and isinstance(next(iter(inputs.values())), list) and any(
                    isinstance(v, list) for v in next(iter(inputs.values()))):
                return as_matrix(next(iter(inputs.values())), "'inputs'")  # one named tensor
            return _columns(inputs, "'inputs'")
        if not isinstance(inputs, list) or not inputs:
            raise ExtractionError("'inputs' must be a non-empty list of rows or an object of "
                                  "feature columns", status=422, reason="bad_shape")
        return as_matrix(inputs, "'inputs'")

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if isinstance(payload, dict) and "outputs" in payload and "predictions" not in payload:
            outputs = payload["outputs"]
            if isinstance(outputs, dict):
                for key in ("probabilities", "probability", "scores", "proba", "predictions"):
                    if key in outputs:
                        return _outputs_matrix(outputs[key])
                return None
            return _outputs_matrix(outputs)
        return super().parse_response(payload)

    def rewrite_response(self, payload: Any, outputs: np.ndarray) -> Any:
        if isinstance(payload, dict) and "outputs" in payload and "predictions" not in payload:
            if isinstance(payload["outputs"], dict):
                key = next(k for k in ("probabilities", "probability", "scores", "proba",
                                       "predictions") if k in payload["outputs"])
                return {**payload, "outputs": {**payload["outputs"],
                                               key: _to_json_list(outputs)}}
            return {**payload, "outputs": _to_json_list(outputs)}
        return super().rewrite_response(payload, outputs)


class DataframeSplitExtractor(PredictionsExtractor):
    """MLflow ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``."""

    name = "dataframe_split"
    key = "dataframe_split"

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or "data" not in split:
            raise ExtractionError("'dataframe_split' must be an object with 'data' (and "
                                  "'columns')", status=422, reason="bad_shape")
        X = as_matrix(split["data"], "'dataframe_split.data'")
        columns = split.get("columns")
        if columns is None:
            return X
        if (not isinstance(columns, list) or len(columns) != X.shape[1]
                or not all(isinstance(c, str) for c in columns)):
            raise ExtractionError("'dataframe_split.columns' must name every column of 'data' "
                                  "with a string", status=422, reason="bad_shape")
        return ExtractedRows(X, tuple(columns))


class DataframeRecordsExtractor(PredictionsExtractor):
    """MLflow ``{"dataframe_records": [{"feature": value, ...}, ...]}``."""

    name = "dataframe_records"
    key = "dataframe_records"

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        records = payload["dataframe_records"]
        if not isinstance(records, list) or not records:
            raise ExtractionError("'dataframe_records' must be a non-empty list of objects",
                                  status=422, reason="bad_shape")
        return _records(records, "'dataframe_records'")


class FeaturesExtractor(PredictionsExtractor):
    """Plain ``{"features": [...]}`` (one row → ``prediction``) or a list of rows."""

    name = "features"
    key = "features"

    def parse_request(self, payload: Any, feature_names: list[str] | None) -> np.ndarray:
        return as_matrix(payload["features"], "'features'")

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if isinstance(payload, dict) and "prediction" in payload:
            return _outputs_matrix([payload["prediction"]])
        return super().parse_response(payload)

    def rewrite_response(self, payload: Any, outputs: np.ndarray) -> Any:
        if isinstance(payload, dict) and "prediction" in payload:
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


def _v2_values(tensor: Any, i: int) -> tuple[str | None, list[int], np.ndarray]:
    """One v2 input tensor's ``(name, shape, flat float data)``; 4xx on anything odd."""
    if not isinstance(tensor, dict):
        raise ExtractionError(f"v2 input {i} must be an object", status=422, reason="bad_shape")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise ExtractionError(f"v2 input tensor {i} lacks '{key}'", status=422,
                                  reason="bad_shape")
    shape, datatype, name = tensor["shape"], tensor["datatype"], tensor.get("name")
    if not isinstance(datatype, str) or datatype not in _V2_FLOAT | _V2_INT:
        raise ExtractionError(f"v2 input {i} datatype must be numeric (e.g. FP64), got "
                              f"{str(datatype)[:20]!r}", status=422, reason="bad_values")
    if (not isinstance(shape, list) or len(shape) not in (1, 2)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                       for s in shape)):
        raise ExtractionError(f"v2 input {i} shape must be [rows, features] or [rows], got "
                              f"{str(shape)[:40]}", status=422, reason="bad_shape")
    cells = math.prod(shape)
    if cells > MAX_CELLS:
        raise ExtractionError(f"v2 input {i} shape {shape} declares more than {MAX_CELLS} "
                              "values", status=413, reason="too_large")
    try:
        data = np.asarray(tensor["data"], dtype=float).ravel()
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ExtractionError(f"v2 input {i} 'data' must be numbers", status=422,
                              reason="bad_values") from None
    if data.size != cells:
        raise ExtractionError(f"v2 input {i} 'data' has {data.size} values but shape {shape} "
                              f"needs {cells}", status=422, reason="bad_shape")
    return (name if isinstance(name, str) else None), shape, data


class V2Extractor:
    """Open Inference Protocol v2 tensors (``inputs`` / ``outputs`` with shape and datatype):
    one ``[rows, features]`` tensor, or one tensor per feature, named like the feature."""

    name = "v2"

    def matches(self, payload: Any) -> bool:
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        return isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], dict)

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        tensors = [_v2_values(t, i) for i, t in enumerate(payload["inputs"])]
        if len(tensors) == 1:
            _, shape, data = tensors[0]
            return data.reshape(shape if len(shape) == 2 else (1, shape[0]))
        names = [name for name, _, _ in tensors]
        if None in names or len(set(names)) != len(names):
            raise ExtractionError("v2 inputs with one tensor per feature need a distinct "
                                  "'name' each", status=422, reason="bad_shape")
        rows = {shape[0] for _, shape, _ in tensors}
        if len(rows) != 1 or any(len(s) == 2 and s[1] != 1 for _, s, _ in tensors):
            raise ExtractionError("v2 inputs with one tensor per feature need shapes [rows] "
                                  "or [rows, 1], all with the same rows", status=422,
                                  reason="bad_shape")
        return ExtractedRows(np.column_stack([data for _, _, data in tensors]), tuple(names))

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


class CsvExtractor(PredictionsExtractor):
    """``Content-Type: text/csv`` bodies (MLflow reads them with a header row), answered by
    ``{"predictions": [...]}``."""

    name = "csv"

    def matches(self, payload: Any) -> bool:
        return False  # chosen by content type, never by a JSON body

    def parse_body(self, body: bytes) -> ExtractedRows:
        import csv
        import io

        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ExtractionError("text/csv body is not UTF-8", reason="not_csv") from None
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
        if len(lines) < 2:
            raise ExtractionError("text/csv body needs a header row and at least one row",
                                  status=422, reason="bad_shape")
        header = tuple(c.strip() for c in lines[0])
        if any(len(row) != len(header) for row in lines[1:]):
            raise ExtractionError("text/csv rows must have as many fields as the header",
                                  status=422, reason="bad_shape")
        values = as_matrix([[c.strip() for c in row] for row in lines[1:]], "text/csv rows")
        if all(h.replace(".", "", 1).lstrip("-").isdigit() for h in header):
            return ExtractedRows(values)  # a headerless file: pandas would name columns 0..k-1
        return ExtractedRows(values, header)


CSV = CsvExtractor()


class FunctionExtractor(PredictionsExtractor):
    """An extractor from a function ``parse(body) -> DataFrame | rows`` (see :func:`extractor`).

    ``matches(body)`` says whether a body is in this format; ``outputs(response_body)``
    reads the model's outputs (default: ``predictions`` or a bare list).
    """

    def __init__(self, parse: Callable[[Any], Any], matches: Callable[[Any], bool],
                 name: str | None = None,
                 outputs: Callable[[Any], Any] | None = None) -> None:
        self.parse = parse
        self._matches = matches
        self.name = name or getattr(parse, "__name__", "custom")
        self._outputs = outputs

    def matches(self, payload: Any) -> bool:
        try:
            return bool(self._matches(payload))
        except Exception:  # a custom predicate must not break the request
            return False

    def parse_request(self, payload: Any, feature_names: list[str] | None
                      ) -> np.ndarray | ExtractedRows:
        try:
            result = self.parse(payload)
        except ExtractionError:
            raise
        except Exception as exc:
            raise ExtractionError(f"the {self.name!r} extractor could not read the body: "
                                  f"{type(exc).__name__}", status=422,
                                  reason="bad_values") from None
        if hasattr(result, "columns") and hasattr(result, "to_numpy"):  # a DataFrame
            columns = tuple(str(c) for c in result.columns)
            return ExtractedRows(as_matrix(result.to_numpy(), f"{self.name!r} rows"), columns)
        if isinstance(result, ExtractedRows):
            return result
        return as_matrix(result, f"{self.name!r} rows")

    def parse_response(self, payload: Any) -> np.ndarray | None:
        if self._outputs is None:
            return super().parse_response(payload)
        return _outputs_matrix(self._outputs(payload))


def extractor(matches: Callable[[Any], bool], name: str | None = None,
              outputs: Callable[[Any], Any] | None = None):
    """Decorator: a :class:`FunctionExtractor` from ``parse(body) -> DataFrame``.

    >>> import pandas as pd
    >>> @extractor(matches=lambda body: isinstance(body, dict) and "records" in body)
    ... def records(body):
    ...     return pd.DataFrame(body["records"])
    >>> ex = extract(b'{"records": [{"b": 2, "a": 1}]}', 2, ["a", "b"], [records])
    >>> ex.extractor.name, ex.X.tolist()
    ('records', [[1.0, 2.0]])
    """
    def wrap(parse):
        return FunctionExtractor(parse, matches, name, outputs)

    return wrap


DEFAULT_EXTRACTORS: tuple = (
    V2Extractor(), InputsExtractor(), InstancesExtractor(), DataframeSplitExtractor(),
    DataframeRecordsExtractor(), FeaturesExtractor(),
)
"""The built-in formats."""

FORMAT_KEYS = ("instances", "inputs", "dataframe_split", "dataframe_records", "features")
"""Top-level keys that name a request format; a body may name only one."""


def find_extractor(payload: Any, extractors=DEFAULT_EXTRACTORS):
    """The one extractor that recognises ``payload``.

    400 if the body names several formats (or several extractors claim it): which rows
    would the model answer? :class:`Unrecognised` if none does.
    """
    if isinstance(payload, dict):
        named = [k for k in FORMAT_KEYS if k in payload]
        if len(named) > 1:
            raise ExtractionError(f"request body names more than one format "
                                  f"({', '.join(named)}); send exactly one",
                                  reason="ambiguous_format")
    found = [e for e in extractors if e.matches(payload)]
    if len(found) > 1:
        raise ExtractionError(f"request body matches more than one format "
                              f"({', '.join(e.name for e in found)}); send exactly one",
                              reason="ambiguous_format")
    if not found:
        raise Unrecognised("unrecognised request format: expected a JSON object with "
                           f"{', '.join(FORMAT_KEYS)}")
    return found[0]


REQUEST_ROWS_KEY = "extraction_monitor_rows"
"""The key of the monitored request's :class:`Extraction` in the app's ``scope["state"]``
(``request.state.extraction_monitor_rows`` in FastAPI)."""


@dataclass(frozen=True)
class Extraction:
    """A request body read and validated: ``X`` in the profile's feature order (coded by the
    profile's feature schema when :func:`extract` was given one: then ``rows`` holds the
    validated rows, categorical values and missing values included, for ``Monitor.observe``)."""

    payload: Any
    extractor: Any
    X: np.ndarray
    feature_names: tuple[str, ...] | None = None
    rows: Any = None

    @property
    def observed(self):
        """What to hand to ``Monitor.observe``: the validated rows, or ``X``."""
        return self.X if self.rows is None else self.rows

    @property
    def n_rows(self) -> int:
        return len(self.X)

    @property
    def frame(self):
        """The rows as a :class:`pandas.DataFrame` named by feature (positional names if the
        profile has none)."""
        import pandas as pd

        names = self.feature_names or tuple(f"x_{i}" for i in range(self.X.shape[1]))
        return pd.DataFrame(self.X, columns=list(names))


def column_mismatch(unknown: list[str], missing: list[str], shown: int = 3) -> str:
    """One line naming the unknown columns (with the feature each was probably meant to be)
    and the missing ones.

    >>> column_mismatch(["petl_width"], ["petal_width"])
    "unknown column 'petl_width' (did you mean 'petal_width'?); missing column 'petal_width'"
    """
    import difflib

    def listed(names: list[str], what: str, hint=None) -> str:
        parts = []
        for name in names[:shown]:
            near = hint(name) if hint else None
            parts.append(f"{name[:60]!r}" + (f" (did you mean {near!r}?)" if near else ""))
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return f"{what} column{'s' if len(names) > 1 else ''} {', '.join(parts)}{more}"

    def nearest(name: str) -> str | None:
        close = difflib.get_close_matches(name, missing, n=1, cutoff=0.6)
        return close[0] if close else None

    pieces = []
    if unknown:
        pieces.append(listed(unknown, "unknown", nearest))
    if missing:
        pieces.append(listed(missing, "missing"))
    return "; ".join(pieces)


def _by_name(rows: ExtractedRows, feature_names: list[str] | None) -> np.ndarray:
    """Named columns in the profile's feature order; 422 naming a missing or unknown one."""
    columns = list(rows.columns or ())
    if len(set(columns)) != len(columns):
        raise ExtractionError("request names a column twice", status=422,
                              reason="duplicate_key")
    if not feature_names:
        raise ExtractionError("request names its columns but the profile has no feature "
                              "names; send rows in feature order", status=422,
                              reason="unknown_column")
    if columns == list(feature_names):
        return rows.values
    index = {c: i for i, c in enumerate(columns)}
    missing = [n for n in feature_names if n not in index]
    known = set(feature_names)
    unknown = [c for c in columns if c not in known]
    if missing or unknown:
        raise ExtractionError(column_mismatch(unknown, missing), status=422,
                              reason="missing_column" if missing else "unknown_column")
    return rows.values[:, [index[n] for n in feature_names]]


def _schema_rows(X: np.ndarray, schema):
    """``X`` (in the schema's column order) validated and coded by the profile's
    :class:`~monitor.features.FeatureSchema`: categorical values, and missing values where
    the model accepts them; 422 saying what to fix otherwise."""
    from monitor.errors import InvalidInput

    try:
        return schema.rows(X, "request rows")
    except InvalidInput as exc:
        raise ExtractionError(str(exc), status=422, reason="bad_values") from None


def extract(body: bytes, n_features: int, feature_names: list[str] | None = None,
            extractors=DEFAULT_EXTRACTORS, max_rows: int | None = None,
            content_type: str | None = None, schema=None) -> Extraction:
    """Parse and validate a request body (see the module docstring for what is refused).

    ``schema`` (the profile's :class:`~monitor.features.FeatureSchema`) lets rows carry
    categorical values and, in the columns where the model accepts them, missing values
    (JSON ``null``); without one, every feature must be a finite number.

    >>> ex = extract(json.dumps({"instances": [[1, 2], [3, 4]]}).encode(), 2)
    >>> ex.extractor.name, ex.X.tolist()
    ('instances', [[1.0, 2.0], [3.0, 4.0]])
    >>> try:
    ...     extract(b'{"features": [1, 2, 3]}', 2)
    ... except ExtractionError as exc:
    ...     print(exc.status, exc.reason, exc)
    422 wrong_width expected 2 features per row, got 3
    """
    if content_type is not None and content_type.split(";")[0].strip().lower() == "text/csv":
        payload, found = None, CSV
        rows = CSV.parse_body(body)
    else:
        payload = loads(body)
        found = find_extractor(payload, extractors)
        rows = found.parse_request(payload, feature_names)
    if isinstance(rows, ExtractedRows):
        X = _by_name(rows, feature_names) if rows.columns is not None else rows.values
    else:
        X = as_matrix(rows, f"{found.name!r} rows")
    if X.shape[1] != n_features:
        raise ExtractionError(f"expected {n_features} features per row, got {X.shape[1]}",
                              status=422, reason="wrong_width")
    if max_rows is not None and len(X) > max_rows:
        raise ExtractionError(f"request has {len(X)} rows; at most {max_rows} per request",
                              status=413, reason="too_many_rows")
    coded = None
    if schema is not None and (schema.has_categorical or any(schema.allow_nan)):
        coded = _schema_rows(X, schema)
        X = coded.X
        checked = np.flatnonzero(schema.numeric_mask)
        bad = np.zeros(X.shape, dtype=bool)  # NaN passed the schema: the model takes it
        bad[:, checked] = np.abs(X[:, checked]) > MAX_ABS_FEATURE
    elif X.dtype == object:
        raise ExtractionError(f"{found.name!r} rows must be numbers (the model's features are "
                              "numeric)", status=422, reason="bad_values")
    else:
        bad = ~(np.abs(X) <= MAX_ABS_FEATURE)  # also catches NaN
    names = tuple(feature_names) if feature_names else None
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ExtractionError(_unusable_value(row, col, float(X[row, col]), names),
                              status=422, reason="non_finite")
    return Extraction(payload, found, X, names, coded)


def _unusable_value(row: int, col: int, value: float, names: tuple[str, ...] | None) -> str:
    """What is wrong with one value, naming its column when the profile names them.

    >>> _unusable_value(0, 1, float("nan"), ("age", "income"))
    "row 0 column 'income' is null; the model cannot take missing values there: send a finite number"
    >>> _unusable_value(2, 0, float("inf"), None)
    'row 2 feature 0 is inf; features must be finite numbers of magnitude at most 3.4e+38'
    """
    where = f"column {names[col][:60]!r}" if names and col < len(names) else f"feature {col}"
    if math.isnan(value):
        return (f"row {row} {where} is null; the model cannot take missing values there: "
                "send a finite number")
    return (f"row {row} {where} is {value}; features must be finite numbers of magnitude at "
            f"most {MAX_ABS_FEATURE:.3g}")


def extract_rows(body: bytes, n_features: int, feature_names: list[str] | None = None,
                 extractors=DEFAULT_EXTRACTORS) -> tuple[Any, Any, np.ndarray]:
    """``(payload, extractor, X)`` of :func:`extract` (the older interface)."""
    ex = extract(body, n_features, feature_names, extractors)
    return ex.payload, ex.extractor, ex.X
