"""What the monitor concludes about one client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Verdict:
    """A client's verdict after its latest query.

    ``score`` is the overall score now (higher = more suspicious); ``flagged``
    is sticky: it records that ``peak_score`` reached ``threshold``, first at
    query ``flag_at`` (0-based). ``detectors`` maps each detector to its score
    and its count of extreme queries in the current window. ``row_scores`` are
    the overall scores after each row of the latest ``observe`` call.
    """

    client_id: str
    n_queries: int
    score: float
    peak_score: float
    threshold: float
    flagged: bool
    flag_at: int | None
    reason: str
    detectors: dict[str, dict[str, float]]
    n_distinct: int = 0
    history: list[float] = field(default_factory=list)
    prada: dict[str, Any] | None = None
    group: dict[str, Any] | None = None
    row_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (row scores as a list)."""
        out = {k: v for k, v in self.__dict__.items() if k != "row_scores"}
        out["row_scores"] = [float(s) for s in self.row_scores]
        return out
