"""A decision-based boundary walk (HopSkipJump-like), labels only.

Bisect between two differently-labelled points to the decision boundary, then
walk along it: estimate the boundary normal from the labels of ``n_probe`` random
probes around the current point (HopSkipJump's Monte-Carlo gradient sign), step
sideways (orthogonal to the normal) and bisect back onto the boundary. All queries
are recorded; the surrogate is retrained on them.
"""

from __future__ import annotations

import numpy as np

from attacks.oracle import BudgetExhausted, Oracle, answer_labels
from attacks.retraining import _result

Box = tuple[np.ndarray, np.ndarray]


def boundary_walk(oracle: Oracle, box: Box, n: int, rng: np.random.Generator,
                  classes=None, anchors: np.ndarray | None = None, n_probe: int = 8,
                  step: float = 0.05, walk_length: int = 5, bisect_steps: int = 6,
                  surrogate: str = "mlp", client_id: str | None = None):
    """Walk the boundary within ``n`` queries (``step`` is a fraction of the box range)."""
    lower, upper = (np.asarray(b, dtype=float) for b in box)
    width = np.where(upper > lower, upper - lower, 1e-12)
    d = len(lower)

    def label(X):
        return answer_labels(oracle(np.atleast_2d(X)), classes)

    def bisect(inside, outside, lab_in):
        for _ in range(bisect_steps):
            mid = (inside + outside) / 2
            if label(mid)[0] == lab_in:
                inside = mid
            else:
                outside = mid
        return inside, outside

    n_init = max(4, n // 10)
    start = rng.uniform(lower, upper, size=(n_init, d))
    if anchors is not None and len(anchors):
        k = min(len(anchors), n_init // 2)
        start[:k] = anchors[:k]
    walks = 0
    try:
        labels = label(start)
        while oracle.n_queries < n:
            i, j = rng.choice(n_init, size=2, replace=False)
            if labels[i] == labels[j]:
                if len(np.unique(labels)) < 2:
                    label(rng.uniform(lower, upper))
                continue
            walks += 1
            inside, outside = bisect(start[i], start[j], labels[i])
            for _ in range(walk_length):
                x = (inside + outside) / 2
                U = rng.normal(size=(n_probe, d)) * width
                U /= np.linalg.norm(U / width, axis=1, keepdims=True)
                probes = np.clip(x + step * U, lower, upper)
                phi = np.where(label(probes) == labels[i], -1.0, 1.0)
                normal = (phi - phi.mean())[:, None] * U if phi.std() > 0 else phi[:, None] * U
                normal = normal.mean(axis=0)
                normal /= max(np.linalg.norm(normal / width), 1e-12)
                side = rng.normal(size=d) * width
                side -= (side / width) @ (normal / width) * normal
                side /= max(np.linalg.norm(side / width), 1e-12)
                x_new = np.clip(x + step * side, lower, upper)
                inside = np.clip(x_new - step * normal, lower, upper)
                outside = np.clip(x_new + step * normal, lower, upper)
                if label(inside)[0] != labels[i] or label(outside)[0] == labels[i]:
                    break
                inside, outside = bisect(inside, outside, labels[i])
    except BudgetExhausted:
        pass
    return _result("boundary-walk", oracle, classes, surrogate, int(rng.integers(2**31)),
                   client_id, {"walks": walks})
