"""Per-client state: bounded, compact, and serialisable without pickle.

Everything a client's verdict depends on lives here, in fixed-size arrays:
recent row hashes (to skip retries), each detector's evidence window, the
chain detector's recent queries, and a short score history. Its size does not
grow with the client's history (the optional PRADA baseline excepted, which is
capped by ``prada_max_stored``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATE_VERSION = 1


@dataclass
class ClientState:
    """The bounded state of one client."""

    n_queries: int = 0
    n_distinct: int = 0
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    windows: dict[str, np.ndarray] = field(default_factory=dict)
    chain: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float16))
    score: float = 0.0
    peak_score: float = 0.0
    flag_at: int | None = None
    flag_reason: str | None = None
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float16))
    prada: object | None = None

    def nbytes(self) -> int:
        """Bytes held in arrays (the PRADA baseline's growing sets included)."""
        total = self.hashes.nbytes + self.chain.nbytes + self.history.nbytes
        total += sum(w.nbytes for w in self.windows.values())
        if self.prada is not None:
            total += self.prada.nbytes()
        return total + 64  # scalars

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (for ``.npz`` or a key-value store); PRADA excluded."""
        out = {
            "version": np.array([STATE_VERSION]),
            "counters": np.array([self.n_queries, self.n_distinct,
                                  -1 if self.flag_at is None else self.flag_at]),
            "scores": np.array([self.score, self.peak_score]),
            "hashes": self.hashes, "chain": self.chain, "history": self.history,
            "flag_reason": np.array([self.flag_reason or ""]),
        }
        for name, window in self.windows.items():
            out[f"window_{name}"] = window
        return out

    @classmethod
    def from_arrays(cls, arrays) -> ClientState:
        version = int(arrays["version"][0])
        if version != STATE_VERSION:
            raise ValueError(f"client state has version {version}, expected {STATE_VERSION}")
        n_queries, n_distinct, flag_at = (int(v) for v in arrays["counters"])
        score, peak = (float(v) for v in arrays["scores"])
        reason = str(arrays["flag_reason"][0])
        return cls(
            n_queries=n_queries, n_distinct=n_distinct, hashes=np.asarray(arrays["hashes"]),
            windows={k[len("window_"):]: np.asarray(v) for k, v in arrays.items()
                     if k.startswith("window_")},
            chain=np.asarray(arrays["chain"]), score=score, peak_score=peak,
            flag_at=None if flag_at < 0 else flag_at, flag_reason=reason or None,
            history=np.asarray(arrays["history"]),
        )
