"""A client's query stream: what one API client sent, in order, with ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClientStream:
    """The queries one simulated client sends, in send order.

    ``kind`` names the behaviour ("benign-random", "jbda", ...), ``is_attack``
    is the ground truth, ``ts`` are monotone send times in seconds (``None``
    means evenly spaced, one second apart).

    >>> import numpy as np
    >>> s = ClientStream("c1", "benign-random", False, np.zeros((3, 2)))
    >>> s.n_queries, s.timestamps().tolist()
    (3, [0.0, 1.0, 2.0])
    """

    client_id: str
    kind: str
    is_attack: bool
    X: np.ndarray
    ts: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.atleast_2d(np.asarray(self.X, dtype=float))
        if self.X.ndim != 2:
            raise ValueError(f"stream {self.client_id!r}: X must be 2-D (n, d), got {self.X.shape}")
        if self.ts is not None:
            self.ts = np.asarray(self.ts, dtype=float)
            if self.ts.shape != (len(self.X),):
                raise ValueError(
                    f"stream {self.client_id!r}: ts has shape {self.ts.shape}, "
                    f"expected ({len(self.X)},)"
                )
            if len(self.ts) > 1 and np.any(np.diff(self.ts) < 0):
                raise ValueError(f"stream {self.client_id!r}: ts must be non-decreasing")

    @property
    def n_queries(self) -> int:
        return len(self.X)

    def timestamps(self) -> np.ndarray:
        """Send times in seconds: ``ts`` or ``0, 1, 2, ...`` when ``ts`` is None."""
        if self.ts is None:
            return np.arange(self.n_queries, dtype=float)
        return self.ts


def poisson_times(n: int, rng: np.random.Generator, mean_gap: float = 2.0,
                  start: float = 0.0) -> np.ndarray:
    """``n`` send times of a client whose gaps are exponential with ``mean_gap`` seconds."""
    return start + np.cumsum(rng.exponential(mean_gap, size=n))


def with_times(stream: ClientStream, rng: np.random.Generator, mean_gap: float = 1.0,
               start: float = 0.0) -> ClientStream:
    """The same stream with Poisson send times (exponential gaps of ``mean_gap`` s)."""
    return ClientStream(stream.client_id, stream.kind, stream.is_attack, stream.X,
                        poisson_times(stream.n_queries, rng, mean_gap, start), dict(stream.meta))
