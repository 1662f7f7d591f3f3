"""Path-finding extraction of decision trees (Tramèr et al. 2016).

The API's output identifies the leaf a query lands in (the probability vector
acts as the leaf id). From each newly found leaf the attacker scans every
feature on a coarse grid and bisects each interval whose two ends land in
different leaves, down to ``eps`` x the feature's range; every new leaf found
is explored in turn. The surrogate is a tree fitted on all answered queries,
whose splits then sit within ``eps`` of the victim's thresholds.
"""

from __future__ import annotations

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from attacks.oracle import BudgetExhausted, Oracle, answer_labels
from attacks.result import AttackResult
from attacks.streams import ClientStream

Box = tuple[np.ndarray, np.ndarray]


def _leaf_keys(answers: np.ndarray) -> list:
    answers = np.asarray(answers)
    if answers.ndim == 1:
        return answers.tolist()
    return [tuple(row) for row in np.round(answers.astype(float), 6).tolist()]


class LeafBoxModel:
    """A tree rebuilt from its leaves: each leaf is an axis-aligned box with a label.

    A point in no known box takes the label of the nearest box (distance in units
    of each feature's range).

    >>> import numpy as np
    >>> m = LeafBoxModel(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]),
    ...                  np.array([0, 1]), scale=np.array([2.0]))
    >>> m.predict(np.array([[0.5], [1.5], [5.0]])).tolist()
    [0, 1, 1]
    """

    def __init__(self, lows: np.ndarray, highs: np.ndarray, labels: np.ndarray,
                 scale: np.ndarray) -> None:
        self.lows, self.highs, self.labels = lows, highs, np.asarray(labels)
        self.scale = np.where(scale > 0, scale, 1.0)
        self.classes_ = np.unique(self.labels)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)[:, None, :]
        below = np.maximum(self.lows[None] - X, 0) / self.scale
        above = np.maximum(X - self.highs[None], 0) / self.scale
        distance = np.sqrt((below**2 + above**2).sum(axis=2))  # 0 inside a box
        return self.labels[distance.argmin(axis=1)]


def path_finding(oracle: Oracle, box: Box, rng: np.random.Generator,
                 classes: np.ndarray | None = None, grid: int = 8, eps: float = 1e-3,
                 n_starts: int = 8, client_id: str | None = None) -> AttackResult:
    """Explore the tree's leaves within the oracle's remaining budget.

    From a point ``x`` in a new leaf, each feature is scanned on ``grid`` points:
    grid points landing in unexplored leaves are queued, and the leaf's own interval
    on that feature is bisected to ``eps`` x the range on each side, giving the
    leaf's box.
    """
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    d = len(lower)
    steps = int(np.ceil(np.log2(1.0 / ((grid - 1) * eps))))
    starts = rng.uniform(lower, upper, size=(n_starts, d))
    explored: set = set()
    leaf_lows, leaf_highs, leaf_labels = [], [], []
    try:
        start_answers = oracle(starts)
        queue = list(zip(starts, _leaf_keys(start_answers),
                         answer_labels(start_answers, classes), strict=True))
        while queue:
            x, key, label = queue.pop(0)
            if key in explored:
                continue
            explored.add(key)
            lo, hi = lower.copy(), upper.copy()
            for i in rng.permutation(d):
                pts = np.repeat(x[None, :], grid, axis=0)
                pts[:, i] = np.linspace(lower[i], upper[i], grid)
                answers = oracle(pts)
                keys = _leaf_keys(answers)
                labels = answer_labels(answers, classes)
                queue += [(pts[j], keys[j], labels[j]) for j in range(grid)
                          if keys[j] not in explored]
                other = np.array([k != key for k in keys])
                left = np.flatnonzero(other & (pts[:, i] < x[i]))
                right = np.flatnonzero(other & (pts[:, i] > x[i]))
                # bisect between x (inside) and the nearest grid point outside, per side
                outs = [pts[left[-1], i]] if len(left) else []
                outs += [pts[right[0], i]] if len(right) else []
                if not outs:
                    continue
                inside = np.full(len(outs), x[i])
                outside = np.array(outs)
                for _ in range(steps):
                    mid = (inside + outside) / 2
                    probe = np.repeat(x[None, :], len(mid), axis=0)
                    probe[:, i] = mid
                    same = np.array([k == key for k in _leaf_keys(oracle(probe))])
                    inside = np.where(same, mid, inside)
                    outside = np.where(same, outside, mid)
                bound = (inside + outside) / 2
                if len(left):
                    lo[i] = bound[0]
                if len(right):
                    hi[i] = bound[-1]
            leaf_lows.append(lo)
            leaf_highs.append(hi)
            leaf_labels.append(label)
    except BudgetExhausted:
        pass
    X, answers = oracle.queries, oracle.answers
    if not leaf_labels:  # budget too small to map one leaf: fall back to a fitted tree
        model = DecisionTreeClassifier(random_state=0).fit(X, answer_labels(answers, classes))
    else:
        model = LeafBoxModel(np.array(leaf_lows), np.array(leaf_highs), np.array(leaf_labels),
                             upper - lower)
    stream = ClientStream(client_id or "attack-path-finding", "path-finding", True, X,
                          meta={"leaves_explored": len(leaf_labels)})
    return AttackResult("path-finding", stream, model, answers,
                        extracted={"leaves_explored": len(leaf_labels), "model": model})
