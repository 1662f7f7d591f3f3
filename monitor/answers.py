"""What the model answered for some rows: checked when the API returned it, completed from
the model when it did not. The one module that checks answers and calls the model at
observe time (the :class:`~monitor.Monitor` and the serving layer both come here).

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Profile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
>>> profile = Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y)
>>> check_outputs(profile, np.array([[0.2, 0.8]]), 1).labels.tolist()
[1]
>>> check_outputs(profile, np.array([[0.2, np.nan]]), 1)
Traceback (most recent call last):
...
monitor.errors.InvalidInput: outputs contain NaN or infinite probabilities
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.errors import InvalidInput
from monitor.features import Rows


@dataclass(frozen=True)
class Answers:
    """What is known about the model's outputs for some rows: class probabilities, decision
    scores (a classifier without probabilities), and the answers themselves — class labels, or
    a regressor's predicted values. Any may be ``None``."""

    proba: np.ndarray | None = None
    decision: np.ndarray | None = None
    labels: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Answers:
        return Answers(*(None if a is None else np.asarray(a)[rows]
                         for a in (self.proba, self.decision, self.labels)))


def check_outputs(profile, outputs, n: int) -> Answers:
    """What the API returned for ``n`` rows, checked: ``(n, k)`` probabilities (and their
    labels), ``(n,)`` labels, or a regressor's ``(n,)`` values; ``None``: nothing known.
    Raises :class:`~monitor.errors.InvalidInput` with a one-line reason otherwise."""
    if outputs is None:
        return Answers()
    arr = np.asarray(outputs)
    if getattr(profile, "task_", "classification") == "regression":
        if arr.ndim == 2 and arr.shape == (n, 1):
            arr = arr[:, 0]
        if arr.shape == (n,) and np.issubdtype(arr.dtype, np.number):
            values = arr.astype(np.float64)
            if not np.isfinite(values).all():
                raise InvalidInput("outputs contain NaN or infinite predictions")
            return Answers(labels=values)
        raise InvalidInput(f"outputs must be {n} predicted values (the model is a "
                           f"regressor), got shape {arr.shape}")
    k = len(profile.classes_)
    with_proba = getattr(profile, "output_kind_", "proba") == "proba"
    if with_proba and arr.ndim == 2 and arr.shape == (n, k) and \
            np.issubdtype(arr.dtype, np.number):
        proba = arr.astype(np.float64)
        if not np.isfinite(proba).all():
            raise InvalidInput("outputs contain NaN or infinite probabilities")
        return Answers(proba=proba, labels=profile.classes_[proba.argmax(axis=1)])
    if arr.ndim == 1 and arr.shape[0] == n:
        return Answers(labels=arr)
    if not with_proba:
        raise InvalidInput(f"outputs must be {n} labels (the model has no predict_proba), "
                           f"got shape {arr.shape}")
    raise InvalidInput(f"outputs must be ({n}, {k}) probabilities or {n} labels, "
                       f"got shape {arr.shape}")


def complete_answers(profile, model, rows: Rows, answers: Answers) -> Answers:
    """``answers`` completed from ``model`` where it is given: probabilities or decision
    scores for margins, labels or values for exposure."""
    if model is None:
        return answers
    kind = getattr(profile, "output_kind_", "proba")
    if kind == "proba" and answers.proba is None:
        proba = np.asarray(call_model(model.predict_proba, rows), dtype=np.float64)
        return Answers(proba=proba, labels=profile.classes_[proba.argmax(axis=1)])
    if kind == "decision" and answers.decision is None:
        decision = np.asarray(call_model(model.decision_function, rows), dtype=np.float64)
        labels = answers.labels if answers.labels is not None else \
            np.asarray(call_model(model.predict, rows))
        return Answers(decision=decision, labels=labels)
    if answers.labels is None and kind in ("labels", "values"):
        labels = np.asarray(call_model(model.predict, rows))
        return Answers(labels=labels.astype(np.float64) if kind == "values" else labels)
    return answers


def call_model(method, rows: Rows):
    """``method(rows' model input)``; a model that cannot score the rows (an unknown
    category it refuses, say) is an :class:`InvalidInput`, raised before any state changes."""
    try:
        return method(rows.model_input())
    except (ValueError, TypeError, KeyError) as exc:
        lines = str(exc).strip().splitlines()
        raise InvalidInput(f"the model cannot score these rows: "
                           f"{lines[0] if lines else type(exc).__name__}") from exc


class AnswerCodes:
    """Class index of each answer label (-1 for labels the victim does not have), for the
    exposure tracker's compact copy of a client's answers.

    >>> AnswerCodes(np.array(["cat", "dog"])).of(np.array(["dog", "cow", "cat"])).tolist()
    [1, -1, 0]
    """

    def __init__(self, classes: np.ndarray) -> None:
        order = np.argsort(classes, kind="stable")
        self._sorted_classes = np.asarray(classes)[order]
        self._class_codes = order  # class index of each sorted class
        self._code_of = {_plain(c): i for i, c in enumerate(classes)}

    def of(self, labels) -> np.ndarray:
        labels = np.asarray(labels)
        if len(labels) == 1:  # the online path: one label
            try:
                return np.array([self._code_of.get(_plain(labels[0]), -1)], dtype=np.int16)
            except TypeError:  # an unhashable label
                return np.full(1, -1, dtype=np.int16)
        classes = self._sorted_classes
        try:
            at = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
            known = classes[at] == labels
        except (TypeError, ValueError):  # labels of another type than the classes
            return np.full(len(labels), -1, dtype=np.int16)
        return np.where(known, self._class_codes[at], -1).astype(np.int16)


def _plain(value):
    """A numpy scalar as the Python value it holds (for dict lookups)."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["AnswerCodes", "Answers", "call_model", "check_outputs", "complete_answers"]
