"""What an attack returns: its query stream, the answers, and what it extracted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from attacks.streams import ClientStream


@dataclass
class AttackResult:
    """The outcome of one attack run against an oracle.

    ``surrogate`` has ``predict`` (and usually ``predict_proba``); ``answers`` are
    the oracle's outputs for ``stream.X`` in order. ``refit(n)``, when set, rebuilds
    the surrogate from the first ``n`` answered queries (used for fidelity curves).

    >>> import numpy as np
    >>> from attacks.streams import ClientStream
    >>> r = AttackResult("demo", ClientStream("a", "demo", True, np.zeros((2, 1))),
    ...                  surrogate=None, answers=np.array([0, 1]))
    >>> r.n_queries
    2
    """

    name: str
    stream: ClientStream
    surrogate: object
    answers: np.ndarray
    refit: Callable[[int], object] | None = field(default=None, repr=False)
    extracted: dict = field(default_factory=dict, repr=False)

    @property
    def n_queries(self) -> int:
        return self.stream.n_queries
