"""Features as the model sees them: the columns, their kinds, and the space detectors measure in.

A :class:`FeatureSchema` is recorded by :meth:`monitor.Profile.fit` from the training data and
the model: the column names in the model's order (its ``feature_names_in_`` when it has them),
each column's kind (``numeric``; ``categorical`` for object, string and category columns) and
dtype, each categorical column's training values (most frequent first), where training had
missing values, where the model accepts them (probed at fit time: the model is asked to score
a training row with NaN in those columns), and whether the model is called with a DataFrame.

Rows reach the monitor as a DataFrame, as named records (dicts) or as an array in the schema's
column order. :meth:`FeatureSchema.rows` maps named rows by name (a missing or unknown column is
a one-line :class:`~monitor.errors.InvalidInput` naming it; order never matters), validates
every value before anything changes, and returns :class:`Rows`: the *coded* matrix the monitor
hashes, stores and measures (numbers as they are, NaN for a missing value, a category's index
among the training values, a negative code for a value training never had), and the input the
model is called with (a DataFrame with the training columns and dtypes when it was fitted on
one, the rows as given otherwise).

:class:`FeatureSpace` turns coded rows into the scaled space every detector measures distances
in (Euclidean, so distances stay one vectorised matrix product):

* a numeric column: ``(x - mean) / std`` (a floor keeps near-constant columns from dominating);
  a missing value sits at the training mean (0) and, in a column that had missing values in
  training, adds a missing-indicator coordinate of 1;
* a categorical column: one-hot over its :data:`ONE_HOT_LEVELS` most frequent training values
  (rarer ones share an "other" coordinate; missing, if training had it, is a value of its own),
  each coordinate ``1/sqrt(2)``, so two different values are one scaled unit apart — like one
  standard deviation of a numeric column;
* novelty: what training never showed — a category it never had, a missing value in a column
  that never had one — adds to one extra coordinate, ``novelty * sqrt(count)``, with
  ``novelty`` the median distance between two training rows. Such a row is as far from every
  training row as an unrelated record is, so the density detectors find it unusual.

>>> import pandas as pd
>>> train = pd.DataFrame({"age": [30.0, 40, None, 50], "color": ["red", "blue", "red", "red"]})
>>> schema = FeatureSchema.fit(train)
>>> schema.kinds, schema.categories["color"], schema.missing_seen
(['numeric', 'categorical'], ['red', 'blue'], [True, False])
>>> rows = schema.rows([{"color": "blue", "age": 35.0}, {"color": "green", "age": None}])
>>> rows.X[0].tolist(), bool(rows.X[1, 1] < 0), bool(np.isnan(rows.X[1, 0]))
([35.0, 1.0], True, True)
>>> schema.rows(pd.DataFrame({"age": [1.0]}))
Traceback (most recent call last):
...
monitor.errors.InvalidInput: rows lack column 'color'; send every feature the model was fitted on ('age', 'color')
"""

from __future__ import annotations

import difflib
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monitor.errors import InvalidInput

NUMERIC = "numeric"
CATEGORICAL = "categorical"
ONE_HOT_LEVELS = 32
"""Most frequent values of a categorical column with a coordinate of their own."""
MAX_CATEGORIES = 1000
"""Distinct training values a categorical column may have (more: encode it yourself)."""
CATEGORY_WEIGHT = float(np.sqrt(0.5))
"""Each one-hot coordinate: two different values of a column are one scaled unit apart."""
MISSING_WEIGHT = 1.0
"""The missing-indicator coordinate of a column that had missing values in training."""
NOVELTY_PAIRS = 2000
"""Random pairs of training rows whose median distance sets the novelty weight."""


def _is_categorical(dtype) -> bool:
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def _json_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | bool | int | float) else str(value)


def unseen_code(value) -> float:
    """The code of a categorical value training never had: negative and stable across
    processes (so retries of it are recognised everywhere).

    >>> unseen_code("green") == unseen_code("green") < 0
    True
    """
    return -1.0 - float(zlib.crc32(str(value).encode("utf-8")))


def _short(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def model_feature_names(model) -> list[str] | None:
    """The column names a model was fitted with (``feature_names_in_``, also through the
    monitor's wrappers), or ``None``."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = getattr(model, "feature_names", None)  # NamedFeatures
        if not isinstance(names, list | tuple | np.ndarray):
            names = None
    return None if names is None else [str(n) for n in names]


def model_kind(model) -> tuple[str, str]:
    """``(task, outputs)`` of a fitted model: ``("classification", "proba" | "decision" |
    "labels")`` or ``("regression", "values")``. A model with ``classes_`` is a classifier;
    any other model with ``predict`` is taken for a regressor.

    >>> from sklearn.svm import LinearSVC
    >>> from sklearn.linear_model import Ridge
    >>> model_kind(LinearSVC().fit([[0.0], [1.0]], [0, 1])), model_kind(Ridge().fit([[0.0]], [1]))
    (('classification', 'decision'), ('regression', 'values'))
    """
    if not hasattr(model, "predict"):
        raise InvalidInput("the model must be a fitted classifier (predict_proba, "
                           "decision_function or predict) or a fitted regressor (predict)")
    if hasattr(model, "classes_"):
        if hasattr(model, "predict_proba"):
            return "classification", "proba"
        if hasattr(model, "decision_function"):
            return "classification", "decision"
        return "classification", "labels"
    return "regression", "values"


@dataclass(frozen=True)
class Rows:
    """Validated rows: ``X`` coded (see the module docstring) and, for a schema with
    categorical columns, ``source`` — the rows as given, in the schema's columns — which the
    model is called with.

    >>> schema = FeatureSchema.fit(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}))
    >>> rows = schema.rows([{"c": "b", "x": 5.0}])
    >>> rows.X.tolist(), rows.model_input().tolist()  # no model fitted on a DataFrame: an array
    ([[5.0, 1.0]], [[5.0, 'b']])
    """

    X: np.ndarray
    schema: FeatureSchema
    source: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.X)

    def model_input(self):
        """What the model is called with for these rows."""
        if self.source is not None:
            return self.schema.model_input(self.source)
        return self.schema.decode(self.X)

    def take(self, index) -> Rows:
        """The rows at ``index`` (positions)."""
        source = None if self.source is None else self.source.iloc[index].reset_index(drop=True)
        return Rows(self.X[index], self.schema, source)


@dataclass
class FeatureSchema:
    """The model's columns: names, kinds, dtypes, categories and missing-value rules (see the
    module docstring). Fit it with :meth:`fit`; save it with :meth:`to_dict`."""

    names: list[str]
    kinds: list[str]
    dtypes: list[str]
    allow_nan: list[bool]
    missing_seen: list[bool]
    categories: dict[str, list] = field(default_factory=dict)
    """Training values of each categorical column, most frequent first."""
    category_order: dict[str, list] = field(default_factory=dict)
    """The categories of columns of pandas ``category`` dtype, in the dtype's order."""
    frame: bool = False
    """Whether the model is called with a DataFrame (it was fitted on one)."""

    # ---------------------------------------------------------------- construction
    @classmethod
    def numeric(cls, names: Sequence[str], frame: bool = False) -> FeatureSchema:
        """All-numeric columns that accept no missing value (profiles before schemas)."""
        d = len(names)
        return cls(list(names), [NUMERIC] * d, ["float64"] * d, [False] * d, [False] * d,
                   frame=frame)

    @classmethod
    def fit(cls, X, model=None, feature_names: Sequence[str] | None = None) -> FeatureSchema:
        """The schema of training data ``X`` (a DataFrame, or an array with ``feature_names``)
        for ``model``; where missing values are accepted is probed on ``model`` (without a
        model: where training had them)."""
        model_names = model_feature_names(model) if model is not None else None
        if isinstance(X, pd.DataFrame):
            frame = _training_frame(X, model_names, feature_names)
        else:
            frame = _array_frame(X, model_names, feature_names)
        names = list(frame.columns)
        kinds = [CATEGORICAL if _is_categorical(t) else NUMERIC for t in frame.dtypes]
        missing = frame.isna().any(axis=0).to_numpy()
        schema = cls(names, kinds, [str(t) for t in frame.dtypes],
                     allow_nan=[bool(m) for m in missing],
                     missing_seen=[bool(m) for m in missing],
                     frame=model_names is not None)
        for name, kind in zip(names, kinds, strict=True):
            if kind != CATEGORICAL:
                continue
            column = frame[name]
            present = column[column.notna()]
            counts = present.astype(str).value_counts(sort=False)
            if len(counts) > MAX_CATEGORIES:
                raise InvalidInput(f"training column {name!r} has {len(counts)} distinct values; "
                                   f"a categorical column may have at most {MAX_CATEGORIES}: "
                                   "drop it or encode it as numbers")
            first = present.groupby(present.astype(str), sort=False).first()
            keys = sorted(counts.index, key=lambda k: (-counts[k], k))
            schema.categories[name] = [_json_value(first[k]) for k in keys]
            if isinstance(column.dtype, pd.CategoricalDtype):
                schema.category_order[name] = [_json_value(c) for c in column.dtype.categories]
        if model is not None and len(frame):
            schema.allow_nan = schema._probe_missing(model, frame.iloc[:1])
        return schema

    def _probe_missing(self, model, first: pd.DataFrame) -> list[bool]:
        """Per column: does ``model`` score a training row with NaN there (``None`` in a
        column of strings)? All columns at once, then numeric and categorical ones as groups,
        then each categorical column, and each column that had missing values in training,
        on its own. A categorical column that had missing values in training accepts them."""
        d = len(self.names)
        confirmed = [False] * d
        groups = [list(range(d))]
        for kind in (NUMERIC, CATEGORICAL):
            group = [j for j in range(d) if self.kinds[j] == kind]
            if group and len(group) < d:
                groups.append(group)
        groups += [[j] for j in range(d) if self.missing_seen[j] or self.kinds[j] == CATEGORICAL]
        for group in groups:
            if all(confirmed[j] for j in group):
                continue
            row = first.copy()
            for j in group:
                if self.kinds[j] == CATEGORICAL and not isinstance(
                        row[self.names[j]].dtype, pd.CategoricalDtype):
                    # a request's null in a column of strings: an object column, as the
                    # app's own DataFrame of records holds it (never a float column)
                    row[self.names[j]] = pd.Series([None] * len(row), index=row.index,
                                                   dtype=object)
                else:
                    row[self.names[j]] = np.nan
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.predict(self.model_input(row))
            except Exception:  # any failure: the model does not take NaN there
                continue
            for j in group:
                confirmed[j] = True
        # a categorical column that had missing values in training: the model was fitted on
        # them, so a missing value there is one the model knows
        return [c or (self.missing_seen[j] and self.kinds[j] == CATEGORICAL)
                for j, c in enumerate(confirmed)]

    # ---------------------------------------------------------------- properties
    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def numeric_mask(self) -> np.ndarray:
        """True for the numeric columns."""
        return np.array([k == NUMERIC for k in self.kinds], dtype=bool)

    @property
    def has_categorical(self) -> bool:
        return CATEGORICAL in self.kinds

    def _lookup(self, name: str) -> pd.Index:
        cache = self.__dict__.setdefault("_lookups", {})
        if name not in cache:
            cache[name] = pd.Index([str(c) for c in self.categories[name]])
        return cache[name]

    # ---------------------------------------------------------------- rows in
    def rows(self, data, what: str = "rows") -> Rows:
        """``data`` validated and coded (see the module docstring); :class:`InvalidInput`
        saying what to fix, before anything changes."""
        if isinstance(data, Rows):
            return data
        if isinstance(data, dict):
            data = [data]
        if isinstance(data, list | tuple) and data and all(isinstance(r, dict) for r in data):
            data = pd.DataFrame.from_records(list(data))
        elif isinstance(data, list | tuple) and any(isinstance(r, dict) for r in data):
            raise InvalidInput(f"{what} mix named records (objects) and plain rows; send one kind")
        if isinstance(data, pd.DataFrame):
            frame = self.by_name(data, what)
            X, bad, problem = self.encode(frame)
            if bad.any():
                raise InvalidInput(f"{what}: {problem}")
            return Rows(X, self, frame if self.has_categorical else None)
        if not self.has_categorical:
            return Rows(self._numeric_matrix(data, what), self)
        arr = np.asarray(data, dtype=object)
        if arr.ndim == 1:
            arr = arr[None, :]
        self._check_shape(arr, what)
        return self.rows(pd.DataFrame(arr, columns=self.names), what)

    def _check_shape(self, X: np.ndarray, what: str) -> None:
        if X.ndim != 2:
            raise InvalidInput(f"{what} must be a 2-D array of rows, got shape {X.shape}")
        if X.shape[1] != self.n_features:
            raise InvalidInput(f"{what} has {X.shape[1]} features, the model expects "
                               f"{self.n_features}")

    def _numeric_matrix(self, data, what: str) -> np.ndarray:
        try:
            X = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"{what} must be numbers (the model's features are numeric); "
                               "send rows of numbers in the profile's column order") from None
        except OverflowError:  # an integer literal past float64's range
            raise InvalidInput(f"{what} hold a number too large for a 64-bit float; send "
                               "values within +-1.8e308") from None
        if X.ndim == 1:
            X = X[None, :]
        self._check_shape(X, what)
        finite = np.isfinite(X)
        if not finite.all():
            bad = ~finite & ~(np.isnan(X) & np.asarray(self.allow_nan, dtype=bool))
            if bad.any():
                j = int(np.flatnonzero(bad.any(axis=0))[0])
                nan_ok = any(self.allow_nan)
                verb = "contain" if what.endswith("s") else "contains"
                raise InvalidInput(
                    f"{what} {verb} NaN or infinite values (column {self.names[j]!r}); "
                    + ("the model accepts missing values only in "
                       f"{_short([n for n, a in zip(self.names, self.allow_nan, strict=True) if a])}"
                       "; " if nan_ok else "")
                    + "drop or impute those rows")
            X = np.where(np.isnan(X), np.nan, X)  # one NaN bit pattern: equal rows hash alike
        return X

    def by_name(self, frame: pd.DataFrame, what: str = "rows") -> pd.DataFrame:
        """``frame``'s columns in the schema's order; a missing or unknown column is an
        :class:`InvalidInput` naming it. A frame without column names (pandas' default
        ``0..d-1``) is taken in the schema's column order, like an array."""
        if isinstance(frame.columns, pd.RangeIndex) and "0" not in self.names:
            self._check_shape(frame.to_numpy(), what)
            return frame.set_axis(self.names, axis=1).reset_index(drop=True)
        columns = [str(c) for c in frame.columns]
        if len(set(columns)) != len(columns):
            dup = next(c for c in columns if columns.count(c) > 1)
            raise InvalidInput(f"{what} have column {dup!r} twice; send each feature once")
        present = set(columns)
        missing = [n for n in self.names if n not in present]
        unknown = [c for c in columns if c not in set(self.names)]
        if missing:
            near = difflib.get_close_matches(missing[0], unknown, n=1, cutoff=0.6)
            raise InvalidInput(f"{what} lack column {missing[0]!r}"
                               + (f" (nearest: {near[0]!r})" if near else "")
                               + f"; send every feature the model was fitted on "
                                 f"({_short(self.names)})")
        if unknown:
            raise InvalidInput(f"{what} have unknown column {unknown[0]!r}; the model's features "
                               f"are {_short(self.names)}")
        if columns != [str(c) for c in frame.columns] or list(frame.columns) != columns:
            frame = frame.set_axis(columns, axis=1)
        return frame[self.names].reset_index(drop=True)

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str | None]:
        """``(X, bad, problem)``: ``frame`` (the schema's columns, in order) coded; ``bad``
        marks rows that cannot be used, ``problem`` says why for the first of them."""
        n = len(frame)
        X = np.empty((n, self.n_features))
        bad = np.zeros(n, dtype=bool)
        first: tuple[int, str] | None = None

        def complain(mask: np.ndarray, message: str) -> None:
            nonlocal first, bad
            if mask.any():
                row = int(np.argmax(mask))
                if first is None or row < first[0]:
                    first = (row, f"{message} (row {row})")
                bad |= mask

        for j, name in enumerate(self.names):
            column = frame[name]
            if self.kinds[j] == NUMERIC:
                values, not_number = _numbers(column)
                if not_number.any():
                    complain(not_number, f"column {name!r} must hold numbers, got "
                                         f"{column[not_number].iloc[0]!r}")
                complain(np.isinf(values), f"column {name!r} has an infinite value; "
                                           "send finite numbers")
                missing = np.isnan(values) & ~not_number
            else:
                missing = column.isna().to_numpy()
                keys = column.astype(str).to_numpy(dtype=object)
                index = self._lookup(name).get_indexer(keys)
                values = index.astype(np.float64)
                unseen = (index < 0) & ~missing
                if unseen.any():
                    distinct = pd.unique(keys[unseen])
                    codes = pd.Series({k: unseen_code(k) for k in distinct})
                    values[unseen] = codes.reindex(keys[unseen]).to_numpy(dtype=np.float64)
                values[missing] = np.nan
            if not self.allow_nan[j]:
                complain(missing, f"column {name!r} has a missing value but the model does "
                                  "not accept missing values there; drop or impute those rows")
            X[:, j] = np.where(np.isnan(values), np.nan, values)
        return X, bad, None if first is None else first[1]

    # ---------------------------------------------------------------- rows out
    def model_input(self, rows):
        """What the model is called with for ``rows`` (coded numeric rows, or a DataFrame in
        the schema's columns): a DataFrame with the training columns and dtypes when the model
        was fitted on one, else an array."""
        if not isinstance(rows, pd.DataFrame):
            if not self.frame:
                return rows
            rows = pd.DataFrame(np.asarray(rows), columns=self.names)
            if not self.has_categorical:
                return rows
        if not self.frame:
            numeric = not self.has_categorical
            return rows.to_numpy(dtype=np.float64 if numeric else object)
        out = {}
        for j, name in enumerate(self.names):
            column = rows[name]
            if self.kinds[j] == NUMERIC:
                if not pd.api.types.is_numeric_dtype(column.dtype):
                    column = pd.to_numeric(column, errors="coerce")
            elif name in self.category_order:
                column = pd.Series(pd.Categorical(column, categories=self.category_order[name]),
                                   index=column.index)
            elif column.dtype == object:  # one missing value, NaN, kept in an object column
                values = column.to_numpy(dtype=object)
                column = pd.Series(np.where(column.isna().to_numpy(), np.nan, values),
                                   index=column.index, dtype=object)
            out[name] = column
        return pd.DataFrame(out, index=rows.index)

    def decode(self, X: np.ndarray):
        """The model input of coded rows whose categories were all seen in training (the
        profile's drifted copies of held-out rows)."""
        if not self.has_categorical:
            return self.model_input(np.asarray(X, dtype=np.float64))
        columns = {}
        for j, name in enumerate(self.names):
            if self.kinds[j] == NUMERIC:
                columns[name] = X[:, j]
            else:
                codes = X[:, j]
                missing = np.isnan(codes)
                values = np.asarray(self.categories[name] + [np.nan], dtype=object)
                columns[name] = values[np.where(missing | (codes < 0), len(values) - 1,
                                                np.nan_to_num(codes)).astype(np.int64)]
        return self.model_input(pd.DataFrame(columns))

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"names": self.names, "kinds": self.kinds, "dtypes": self.dtypes,
                "allow_nan": self.allow_nan, "missing_seen": self.missing_seen,
                "categories": self.categories, "category_order": self.category_order,
                "frame": self.frame}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(names=list(data["names"]), kinds=list(data["kinds"]),
                   dtypes=list(data["dtypes"]), allow_nan=[bool(a) for a in data["allow_nan"]],
                   missing_seen=[bool(m) for m in data["missing_seen"]],
                   categories={k: list(v) for k, v in data.get("categories", {}).items()},
                   category_order={k: list(v) for k, v in data.get("category_order", {}).items()},
                   frame=bool(data.get("frame", False)))


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, not_number)``: a column as float64 (NaN where missing) and where a value is
    present but not a number."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.astype(np.float64).to_numpy(), np.zeros(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), bool)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isnan(values) & column.notna().to_numpy()


def _training_frame(X: pd.DataFrame, model_names, feature_names) -> pd.DataFrame:
    columns = [str(c) for c in X.columns]
    X = X.set_axis(columns, axis=1)
    names = model_names or columns
    missing = [n for n in names if n not in set(columns)]
    if missing:
        raise InvalidInput(f"training data lacks the model's feature column {missing[0]!r}; it "
                           f"needs the columns the model was fitted on ({_short(names)})")
    extra = [c for c in columns if c not in set(names)]
    if extra:
        raise InvalidInput(f"training data has column {extra[0]!r} the model was not fitted "
                           "on; drop it (pass the label as y_train)")
    if feature_names is not None and set(map(str, feature_names)) != set(names):
        raise InvalidInput("feature_names differ from the training DataFrame's columns; "
                           "omit feature_names for a DataFrame")
    return X[names].reset_index(drop=True)


def _array_frame(X, model_names, feature_names) -> pd.DataFrame:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidInput(f"training data must be a 2-D array of rows, got shape {arr.shape}")
    d = arr.shape[1]
    names = [str(n) for n in feature_names] if feature_names is not None else \
        model_names or [f"x_{j}" for j in range(d)]
    if len(names) != d:
        raise InvalidInput(f"training data has {d} features but {len(names)} feature names")
    if arr.dtype.kind in "biuf":
        return pd.DataFrame(arr.astype(np.float64, copy=False), columns=names)
    frame = pd.DataFrame(arr, columns=names)
    for name in names:  # object arrays: a column of numbers is numeric
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.notna().sum() == frame[name].notna().sum():
            frame[name] = values.astype(np.float64)
    return frame


class FeatureSpace:
    """Coded rows -> the scaled space the detectors measure in (see the module docstring).

    ``center`` and ``scale`` are per column (0 and 1 for categorical ones); ``novelty`` is the
    weight of the novelty coordinate, ``None`` when the schema needs none.

    >>> train = pd.DataFrame({"x": [0.0, 2.0, 4.0, 6.0], "c": ["a", "b", "a", "b"]})
    >>> schema = FeatureSchema.fit(train)
    >>> space = FeatureSpace.fit(schema, schema.rows(train, "training data").X)
    >>> space.names()
    ['x', 'c=a', 'c=b', '<novel>']
    >>> Z = space.transform(schema.rows(pd.DataFrame({"x": [3.0, 3.0], "c": ["a", "z"]})).X)
    >>> Z[0, :3].round(3).tolist(), bool(Z[0, 3] == 0 < Z[1, 3])
    ([0.0, 0.707, 0.0], True)
    """

    def __init__(self, schema: FeatureSchema, center: np.ndarray, scale: np.ndarray,
                 novelty: float | None = None) -> None:
        self.schema = schema
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.novelty = novelty
        numeric = schema.numeric_mask
        self.numeric = np.flatnonzero(numeric)
        seen = np.asarray(schema.missing_seen, dtype=bool)
        self.indicators = np.flatnonzero(numeric & seen)
        self.numeric_novel = ~seen[self.numeric]
        self.blocks = []  # (column, levels, n_categories, has_other, has_missing)
        for j in np.flatnonzero(~numeric):
            k = len(schema.categories[schema.names[j]])
            levels = min(k, ONE_HOT_LEVELS)
            self.blocks.append((int(j), levels, k, k > levels, bool(seen[j])))
        self.plain = (not self.blocks and not len(self.indicators) and novelty is None)

    @staticmethod
    def needs_novelty(schema: FeatureSchema) -> bool:
        """Whether a row of ``schema`` can hold something training never had."""
        return schema.has_categorical or any(
            a and not s for a, s in zip(schema.allow_nan, schema.missing_seen, strict=True))

    @classmethod
    def fit(cls, schema: FeatureSchema, X: np.ndarray, seed=0) -> FeatureSpace:
        """Scaling from coded training rows ``X``; the novelty weight from a seeded sample of
        pairs of them."""
        X = np.asarray(X, dtype=np.float64)
        numeric = schema.numeric_mask
        center = np.zeros(X.shape[1])
        std = np.ones(X.shape[1])
        if numeric.all() and not np.isnan(X).any():  # (bit for bit what profiles always did)
            center, std = X.mean(axis=0), X.std(axis=0)
        elif numeric.any():
            part = X[:, numeric]
            if np.isnan(part).any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    center[numeric] = np.nan_to_num(np.nanmean(part, axis=0))
                    std[numeric] = np.nan_to_num(np.nanstd(part, axis=0))
            else:
                center[numeric] = part.mean(axis=0)
                std[numeric] = part.std(axis=0)
        positive = std[numeric][std[numeric] > 0]
        floor = 0.25 * float(np.median(positive)) if len(positive) else 1.0
        scale = np.where(numeric, np.maximum(std, floor), 1.0)
        space = cls(schema, center, scale)
        if not cls.needs_novelty(schema):
            return space
        Z = space.transform(X)
        rng = np.random.default_rng(seed)
        i, j = rng.integers(len(Z), size=(2, NOVELTY_PAIRS))
        keep = i != j
        distances = np.sqrt(((Z[i[keep]] - Z[j[keep]]) ** 2).sum(axis=1))
        novelty = float(np.median(distances)) if len(distances) else 1.0
        return cls(schema, center, scale, novelty if novelty > 0 else 1.0)

    @property
    def width(self) -> int:
        """Coordinates of the scaled space."""
        width = len(self.numeric) + len(self.indicators) + (self.novelty is not None)
        return width + sum(levels + has_other + has_missing
                           for _, levels, _, has_other, has_missing in self.blocks)

    def names(self) -> list[str]:
        """A name for each coordinate (``age``, ``age (missing)``, ``color=red``, ...)."""
        names = [self.schema.names[j] for j in self.numeric]
        names += [f"{self.schema.names[j]} (missing)" for j in self.indicators]
        for j, levels, _, has_other, has_missing in self.blocks:
            name = self.schema.names[j]
            names += [f"{name}={v}" for v in self.schema.categories[name][:levels]]
            names += [f"{name}=<other>"] * has_other + [f"{name}=<missing>"] * has_missing
        return names + (["<novel>"] if self.novelty is not None else [])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Coded rows ``X`` in the scaled space."""
        X = np.asarray(X, dtype=np.float64)
        if self.plain:
            return (X - self.center) / self.scale
        num = X[:, self.numeric]
        missing = np.isnan(num)
        z = (num - self.center[self.numeric]) / self.scale[self.numeric]
        z[missing] = 0.0
        parts = [z, np.isnan(X[:, self.indicators]) * MISSING_WEIGHT]
        novel = (missing & self.numeric_novel).sum(axis=1).astype(np.float64)
        rows = np.arange(len(X))
        for j, levels, _, has_other, has_missing in self.blocks:
            codes = X[:, j]
            absent = np.isnan(codes)
            unseen = ~absent & (codes < 0)
            block = np.zeros((len(X), levels + has_other + has_missing))
            known = ~absent & ~unseen
            slot = np.minimum(np.nan_to_num(codes), levels).astype(np.int64)
            block[rows[known], slot[known]] = CATEGORY_WEIGHT
            if has_missing:
                block[absent, -1] = CATEGORY_WEIGHT
            else:
                novel += absent
            novel += unseen
            parts.append(block)
        if self.novelty is not None:
            parts.append((self.novelty * np.sqrt(novel))[:, None])
        return np.hstack(parts)


__all__ = ["CATEGORICAL", "MAX_CATEGORIES", "NUMERIC", "ONE_HOT_LEVELS", "FeatureSchema",
           "FeatureSpace", "Rows", "model_feature_names", "model_kind", "unseen_code"]
