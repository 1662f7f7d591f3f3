"""A keyed 64-bit digest of each row, to recognise exact retries.

A retry carries no evidence, so whoever can make two different rows digest alike can hide
queries as "retries". The digest is therefore keyed: BLAKE2b (``digest_size=8``) keyed with a
per-deployment secret (:func:`digest_key`, derived from the client-id salt, never a public
seed) over the row's canonical bytes — little-endian float64, with ``-0.0`` folded into
``0.0`` — so an attacker who does not know the key cannot find two rows with equal digests
faster than by sending about 2^32 queries. One call digests a whole batch: the rows are
converted to one contiguous buffer once, and each row is one C-level ``blake2b`` call on a
slice of it.

>>> import numpy as np
>>> from monitor.hashing import digest_key, row_hashes
>>> key = digest_key("deployment salt")
>>> h = row_hashes(np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [-0.0, 0.0]]), key)
>>> bool(h[0] == h[1]), bool(h[0] == h[2]), bool(row_hashes(np.zeros((1, 2)), key)[0] == h[3])
(True, False, True)
>>> bool(row_hashes(np.ones((1, 2)), digest_key("other"))[0] == row_hashes(np.ones((1, 2)), key)[0])
False
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np

DIGEST_CONTEXT = b"extraction-monitor retry digest v1"
"""Domain separation: the digest key never equals any other key derived from the salt."""


def digest_key(salt: str | bytes | None = None) -> bytes:
    """The 32-byte BLAKE2b key of a deployment: ``HMAC-SHA256(salt, DIGEST_CONTEXT)``.

    ``None`` gives a fresh random key (one process; retries across restarts then count
    once more, which only adds evidence).
    """
    if salt is None:
        return secrets.token_bytes(32)
    raw = salt.encode() if isinstance(salt, str) else bytes(salt)
    return hmac.new(raw, DIGEST_CONTEXT, hashlib.sha256).digest()


def canonical_bytes(X: np.ndarray) -> np.ndarray:
    """Rows as contiguous little-endian float64 with ``-0.0`` as ``0.0``."""
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    return np.ascontiguousarray(rows + 0.0, dtype="<f8")


def row_hashes(X: np.ndarray, key: bytes | None = None) -> np.ndarray:
    """One uint64 per row: the keyed BLAKE2b digest of its canonical bytes.

    Without ``key`` a random one is drawn for this call only (equal rows of this batch
    still digest alike); the :class:`~monitor.Monitor` passes its deployment key.
    """
    rows = canonical_bytes(X)
    n, d = rows.shape
    key = key if key is not None else secrets.token_bytes(32)
    width = 8 * d
    buffer = memoryview(rows.tobytes())
    blake = hashlib.blake2b
    out = np.empty(n, dtype=np.uint64)
    digests = b"".join(blake(buffer[i * width:(i + 1) * width], digest_size=8, key=key).digest()
                       for i in range(n))
    if n:
        out[:] = np.frombuffer(digests, dtype="<u8")
    return out


def duplicate_mask(hashes: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """True where a row repeats one of ``recent`` or an earlier row of the same batch."""
    if len(hashes) == 1:  # the online fast path: one row per request
        return np.array([bool((recent == hashes[0]).any())])
    seen_before = np.isin(hashes, recent)
    _, first = np.unique(hashes, return_index=True)
    repeat_in_batch = np.ones(len(hashes), dtype=bool)
    repeat_in_batch[first] = False
    return seen_before | repeat_in_batch
