"""How close a query lies to the victim's decision boundary.

Three measures, all oriented so that higher means closer (more suspicious):

* ``margin_closeness``: one minus the margin between the top two class
  probabilities. Works for any model that returns probabilities.
* ``decision_closeness``: minus the margin between the top two ``decision_function``
  scores (minus the absolute score of a binary classifier), for classifiers without
  probabilities (e.g. ``LinearSVC``). Its scale is the model's own; calibration makes it
  comparable.
* :class:`TreeGeometry`: for decision trees, whose probabilities are constant
  on each leaf, the scaled distance from the query to the nearest split
  threshold on its decision path, negated. Path-finding attacks bisect towards
  exactly these thresholds.

>>> import numpy as np
>>> from monitor.geometry import margin_closeness
>>> margin_closeness(np.array([[0.9, 0.1], [0.55, 0.45]])).round(2)
array([0.2, 0.9])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def margin_closeness(proba: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row: 0 far from the boundary, 1 on it."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 1:
        return np.zeros(len(proba))
    top2 = np.partition(proba, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def decision_closeness(decision: np.ndarray) -> np.ndarray:
    """Minus the margin of ``decision_function`` scores per row: ``-|f(x)|`` for a binary
    classifier's ``(n,)`` scores, ``-(s_top1 - s_top2)`` for ``(n, k)`` scores.

    >>> decision_closeness(np.array([2.0, -0.1])).tolist()
    [-2.0, -0.1]
    >>> decision_closeness(np.array([[1.0, 0.5, -1.0]])).tolist()
    [-0.5]
    """
    decision = np.asarray(decision, dtype=np.float64)
    if decision.ndim == 1:
        return -np.abs(decision)
    if decision.shape[1] == 1:
        return -np.abs(decision[:, 0])
    top2 = np.partition(decision, -2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


@dataclass
class TreeGeometry:
    """The split structure of a fitted scikit-learn decision tree, without pickle.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> geo = TreeGeometry.from_model(DecisionTreeClassifier(random_state=0).fit(X, y))
    >>> geo.closeness(np.array([[1.4], [3.0]]), scale=np.array([1.0])).round(2)
    array([-0.1, -1.5])
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray | None = None
    """Per node, whether a missing value goes left (scikit-learn >= 1.3); ``None``: right."""

    @classmethod
    def from_model(cls, model) -> TreeGeometry | None:
        """The geometry of ``model`` if it is a bare decision tree, else ``None``."""
        tree = getattr(model, "tree_", None)
        if tree is None:
            return None
        missing_left = getattr(tree, "missing_go_to_left", None)
        return cls(
            left=tree.children_left.astype(np.int64), right=tree.children_right.astype(np.int64),
            feature=tree.feature.astype(np.int64), threshold=tree.threshold.astype(np.float64),
            missing_left=None if missing_left is None else np.asarray(missing_left, dtype=bool),
        )

    def closeness(self, X: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Minus the smallest scaled distance to a split threshold on each row's path (a
        missing value follows the tree's missing-value branch and is no distance from the
        threshold it skips)."""
        X = np.asarray(X, dtype=np.float64)
        rows = np.arange(len(X))
        node = np.zeros(len(X), dtype=np.int64)
        nearest = np.full(len(X), np.inf)
        active = self.left[node] >= 0
        while active.any():
            r, n = rows[active], node[active]
            f, t = self.feature[n], self.threshold[n]
            value = X[r, f]
            missing = np.isnan(value)
            gap = np.where(missing, np.inf, np.abs(value - t) / scale[f])
            nearest[r] = np.minimum(nearest[r], gap)
            left = value <= t
            if missing.any():
                go_left = self.missing_left[n] if self.missing_left is not None else False
                left = np.where(missing, go_left, left)
            node[r] = np.where(left, self.left[n], self.right[n])
            active = self.left[node] >= 0
        nearest[np.isinf(nearest)] = np.finfo(np.float64).max
        return -nearest

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"tree_left": self.left, "tree_right": self.right,
                  "tree_feature": self.feature, "tree_threshold": self.threshold}
        if self.missing_left is not None:
            arrays["tree_missing_left"] = self.missing_left
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> TreeGeometry | None:
        if "tree_left" not in arrays:
            return None
        missing = arrays["tree_missing_left"] if "tree_missing_left" in arrays else None
        return cls(left=arrays["tree_left"], right=arrays["tree_right"],
                   feature=arrays["tree_feature"], threshold=arrays["tree_threshold"],
                   missing_left=missing)
