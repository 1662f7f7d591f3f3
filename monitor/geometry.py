"""How close a query lies to the victim's decision boundary.

Two measures, both oriented so that higher means closer (more suspicious):

* ``margin_closeness``: one minus the margin between the top two class
  probabilities. Works for any model that returns probabilities.
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

    @classmethod
    def from_model(cls, model) -> TreeGeometry | None:
        """The geometry of ``model`` if it is a bare decision tree, else ``None``."""
        tree = getattr(model, "tree_", None)
        if tree is None:
            return None
        return cls(
            left=tree.children_left.astype(np.int64), right=tree.children_right.astype(np.int64),
            feature=tree.feature.astype(np.int64), threshold=tree.threshold.astype(np.float64),
        )

    def closeness(self, X: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Minus the smallest scaled distance to a split threshold on each row's path."""
        X = np.asarray(X, dtype=np.float64)
        rows = np.arange(len(X))
        node = np.zeros(len(X), dtype=np.int64)
        nearest = np.full(len(X), np.inf)
        active = self.left[node] >= 0
        while active.any():
            r, n = rows[active], node[active]
            f, t = self.feature[n], self.threshold[n]
            value = X[r, f]
            nearest[r] = np.minimum(nearest[r], np.abs(value - t) / scale[f])
            node[r] = np.where(value <= t, self.left[n], self.right[n])
            active = self.left[node] >= 0
        nearest[np.isinf(nearest)] = np.finfo(np.float64).max
        return -nearest

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"tree_left": self.left, "tree_right": self.right,
                "tree_feature": self.feature, "tree_threshold": self.threshold}

    @classmethod
    def from_arrays(cls, arrays) -> TreeGeometry | None:
        if "tree_left" not in arrays:
            return None
        return cls(left=arrays["tree_left"], right=arrays["tree_right"],
                   feature=arrays["tree_feature"], threshold=arrays["tree_threshold"])
