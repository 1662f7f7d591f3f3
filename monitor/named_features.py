"""Call a model with what it was fitted on: a DataFrame with its feature names.

The monitor works on float arrays. A scikit-learn model fitted on a DataFrame records
``feature_names_in_`` and warns ("X does not have valid feature names") every time it is
called with an array; a Pipeline whose ColumnTransformer selects columns by name fails
outright. :class:`NamedFeatures` wraps such a model so every call gets a DataFrame with those
names; :func:`with_feature_names` wraps only when the model has names. The wrapper is itself a
scikit-learn estimator (``clone`` works, so cross-fitted calibration clones it), exposes the
model's ``classes_`` (none for a regressor), ``predict_proba`` and ``decision_function`` only
when the model has them, and, for a bare tree, ``tree_``. A profile fitted on a DataFrame calls
the model with one itself (:mod:`monitor.features`); the wrapper is still what the CLI uses to
count calls. ``calls`` names a hook (see
:func:`count_calls`) told about every fit/predict call, which the ``profile`` command uses to
show progress.

>>> import warnings
>>> import numpy as np, pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"age": [20.0, 30, 40, 50], "income": [1.0, 2, 3, 4]})
>>> model = LogisticRegression().fit(X, [0, 0, 1, 1])
>>> wrapped = with_feature_names(model)
>>> with warnings.catch_warnings():
...     warnings.simplefilter("error")  # an array call would warn
...     wrapped.predict_proba(np.array([[45.0, 3.5]])).shape
(1, 2)
>>> with_feature_names(LogisticRegression().fit(X.to_numpy(), [0, 0, 1, 1])).__class__.__name__
'LogisticRegression'
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if

_HOOKS: dict[str, Callable[[str], None]] = {}
_KEYS = itertools.count()


class NamedFeatures(ClassifierMixin, BaseEstimator):
    """``estimator`` called with DataFrames whose columns are ``feature_names``."""

    def __init__(self, estimator, feature_names=None, calls: str | None = None) -> None:
        self.estimator = estimator
        self.feature_names = feature_names
        self.calls = calls

    def _frame(self, X):
        if self.feature_names is None or isinstance(X, pd.DataFrame):
            return X
        return pd.DataFrame(np.asarray(X), columns=list(self.feature_names))

    def _tell(self, what: str) -> None:
        hook = _HOOKS.get(self.calls) if self.calls else None
        if hook is not None:
            hook(what)

    def fit(self, X, y):
        """Fit the wrapped estimator (on a DataFrame with the feature names)."""
        self.estimator.fit(self._frame(X), y)
        self._tell("fit")
        return self

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """The wrapped estimator's probabilities."""
        out = self.estimator.predict_proba(self._frame(X))
        self._tell("predict_proba")
        return out

    @available_if(lambda self: hasattr(self.estimator, "decision_function"))
    def decision_function(self, X) -> np.ndarray:
        """The wrapped estimator's decision scores."""
        out = self.estimator.decision_function(self._frame(X))
        self._tell("decision_function")
        return out

    def predict(self, X) -> np.ndarray:
        """The wrapped estimator's labels."""
        out = self.estimator.predict(self._frame(X))
        self._tell("predict")
        return out

    @property
    def classes_(self) -> np.ndarray:
        return self.estimator.classes_

    @property
    def tree_(self):
        return getattr(self.estimator, "tree_", None)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self.estimator, "classes_") or hasattr(self.estimator, "n_features_in_")


def with_feature_names(model, calls: str | None = None):
    """``model`` wrapped in :class:`NamedFeatures` when it was fitted with feature names (or
    when ``calls`` is given), else ``model`` itself."""
    names = getattr(model, "feature_names_in_", None)
    if names is None and calls is None:
        return model
    return NamedFeatures(model, None if names is None else [str(n) for n in names], calls)


def unwrap(model):
    """The model inside a :class:`NamedFeatures` (the model itself otherwise)."""
    return model.estimator if isinstance(model, NamedFeatures) else model


@contextlib.contextmanager
def count_calls(callback: Callable[[str], None]) -> Iterator[str]:
    """A hook key for ``NamedFeatures(calls=key)``: ``callback(kind)`` is called after every
    fit / predict / predict_proba of the wrapper and of its clones while the block runs."""
    key = f"calls-{next(_KEYS)}"
    _HOOKS[key] = callback
    try:
        yield key
    finally:
        _HOOKS.pop(key, None)


__all__ = ["NamedFeatures", "count_calls", "unwrap", "with_feature_names"]
