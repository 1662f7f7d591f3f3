"""Exact nearest-neighbour distances to a fixed set of points, vectorised and chunked.

>>> import numpy as np
>>> from monitor.neighbors import knn_distances
>>> ref = np.array([[0.0, 0.0], [3.0, 4.0]])
>>> knn_distances(np.array([[0.0, 1.0]]), ref, k=2).round(3)
array([[1.   , 4.243]])
"""

from __future__ import annotations

import numpy as np

_CHUNK_CELLS = 4_000_000  # rows x reference points per block: bounds memory at ~32 MB


def squared_distances(X: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray | None = None) -> np.ndarray:
    """All squared Euclidean distances between rows of ``X`` and of ``ref``, clipped at 0.

    The cross product runs in ``ref``'s precision (float32 halves its cost); the norms and
    the result are float64.
    """
    if ref_sq is None:
        ref_sq = np.einsum("ij,ij->i", ref, ref, dtype=np.float64)
    x_sq = np.einsum("ij,ij->i", X, X)
    d2 = x_sq[:, None] - 2.0 * (X.astype(ref.dtype, copy=False) @ ref.T) + ref_sq[None, :]
    return np.maximum(d2, 0.0, out=d2)


def knn_distances(X: np.ndarray, ref: np.ndarray, k: int,
                  ref_sq: np.ndarray | None = None) -> np.ndarray:
    """Distances from each row of ``X`` to its ``k`` nearest rows of ``ref``, ascending.

    ``ref_sq`` (the squared norms of ``ref``'s rows) may be passed to save recomputing them.
    """
    return knn(X, ref, k, ref_sq)[0]


def knn(X: np.ndarray, ref: np.ndarray, k: int, ref_sq: np.ndarray | None = None,
        exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of each row of ``X``'s ``k`` nearest rows of ``ref``, ascending.

    ``exclude_self``: ``X`` is ``ref`` itself and a row is not its own neighbour.

    >>> ref = np.array([[0.0], [1.0], [3.0]])
    >>> d, i = knn(ref, ref, 1, exclude_self=True)
    >>> d.ravel().tolist(), i.ravel().tolist()
    ([1.0, 1.0, 2.0], [1, 0, 1])
    """
    X = np.asarray(X, dtype=np.float64)
    ref = np.asarray(ref)
    if ref.dtype not in (np.float32, np.float64):
        ref = ref.astype(np.float64)
    k = min(k, len(ref) - (1 if exclude_self else 0))
    if ref_sq is None:
        ref_sq = np.einsum("ij,ij->i", ref, ref, dtype=np.float64)
    if len(X) == 1 and not exclude_self and k < len(ref):  # the online path: one row
        x = X[0]
        d2 = ref_sq - 2.0 * (ref @ x.astype(ref.dtype, copy=False)) + float(x @ x)
        index = np.argpartition(d2, k - 1)[:k]
        values = np.maximum(d2[index], 0.0)
        order = np.argsort(values, kind="stable")
        return np.sqrt(values[order])[None, :], index[order][None, :]
    out = np.empty((len(X), k))
    index = np.empty((len(X), k), dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(1, len(ref)))
    for start in range(0, len(X), step):
        d2 = squared_distances(X[start:start + step], ref, ref_sq)
        if exclude_self:
            rows = np.arange(len(d2))
            d2[rows, start + rows] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else \
            np.broadcast_to(np.arange(d2.shape[1]), d2.shape)
        values = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(values, axis=1, kind="stable")
        out[start:start + step] = np.sqrt(np.take_along_axis(values, order, axis=1))
        index[start:start + step] = np.take_along_axis(part, order, axis=1)
    return out, index
