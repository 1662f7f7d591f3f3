"""A vectorised 64-bit hash of each row, to recognise exact retries.

>>> import numpy as np
>>> from monitor.hashing import row_hashes
>>> h = row_hashes(np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [-0.0, 0.0]]))
>>> bool(h[0] == h[1]), bool(h[0] == h[2]), bool(row_hashes(np.zeros((1, 2)))[0] == h[3])
(True, False, True)
"""

from __future__ import annotations

import numpy as np

_MULTIPLIERS = np.random.default_rng(20190101).integers(1, 2**63, size=4096, dtype=np.uint64) | 1


_MULTIPLIERS_BY_WIDTH: dict[int, np.ndarray] = {}


def _multipliers(d: int) -> np.ndarray:
    mult = _MULTIPLIERS_BY_WIDTH.get(d)
    if mult is None:
        mult = _MULTIPLIERS[np.arange(d) % len(_MULTIPLIERS)] + np.uint64(d // len(_MULTIPLIERS))
        _MULTIPLIERS_BY_WIDTH[d] = mult
    return mult


def row_hashes(X: np.ndarray) -> np.ndarray:
    """One uint64 per row; equal rows (``-0.0 == 0.0``) get equal hashes."""
    bits = np.ascontiguousarray(np.asarray(X, dtype=np.float64) + 0.0).view(np.uint64)
    mult = _multipliers(bits.shape[1])
    with np.errstate(over="ignore"):
        mixed = bits ^ (bits >> np.uint64(29))
        h = (mixed * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(32)
        h *= np.uint64(0x9E3779B97F4A7C15)
    return h


def duplicate_mask(hashes: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """True where a row repeats one of ``recent`` or an earlier row of the same batch."""
    if len(hashes) == 1:  # the online fast path: one row per request
        return np.array([bool((recent == hashes[0]).any())])
    seen_before = np.isin(hashes, recent)
    _, first = np.unique(hashes, return_index=True)
    repeat_in_batch = np.ones(len(hashes), dtype=bool)
    repeat_in_batch[first] = False
    return seen_before | repeat_in_batch
