"""What the monitor concludes about one client, why (:func:`flag_reason`,
:func:`explanation`), and every flat view of it, each declared here once:

* :meth:`Verdict.summary` — the fields worth alerting on (:data:`SUMMARY_FIELDS`);
* :meth:`Verdict.listed` — a client as the admin API lists it (:data:`LISTED_FIELDS`);
* :meth:`Verdict.to_row` — one row of a verdict table (``analyze``, ``report``), with a
  ``score_<detector>`` column per detector;
* :meth:`Verdict.to_dict` — every field, JSON-ready (the admin API's client detail);
* :meth:`Verdict.flag_status` — what enforcement caches about a flagged client
  (:class:`FlagStatus`);
* :meth:`Verdict.group_entry` — a group's verdict as its clients' verdicts carry it
  (:data:`GROUP_FIELDS`).

Every consumer (offline analysis, report, admin API, serving logs and alerts) goes through
these, so a verdict looks the same wherever it appears.

>>> v = Verdict(client_id="c", n_queries=3, score=0.0, peak_score=0.0, threshold=2.0,
...             flagged=False, flag_at=None, reason="not flagged",
...             detectors={"density": {"score": 0.0, "count": 0, "window": 3}})
>>> v.to_row()["score_density"], sorted(v.summary())[:3]
(0.0, ['client_id', 'detectors', 'exposure'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from monitor.evidence import QUANTUM
from monitor.scoring import FILL, SUM, UNUSUAL

SUMMARY_FIELDS = ("client_id", "n_queries", "score", "peak_score", "threshold", "flagged",
                  "flag_at", "flag_detector", "reason", "peak_query_score", "exposure", "exposure_exceeded",
                  "detectors")
"""Fields of :meth:`Verdict.summary`."""

DEFERRED_FIELDS = ("detectors", "reason", "history")
"""The explanation of a verdict: built on first read by :meth:`Verdict.deferred` verdicts (a
served request reads whether its client is flagged, rarely why)."""

LISTED_FIELDS = ("client_id", "n_queries", "score", "peak_score", "flagged", "flag_at", "reason",
                 "exposure", "exposure_exceeded")
"""Fields of :meth:`Verdict.listed` (the admin API's client list)."""

GROUP_FIELDS = ("n_queries", "score", "peak_score", "flagged", "flag_at", "reason", "exposure",
                "exposure_exceeded")
"""Fields of a group's verdict that :meth:`Verdict.group_entry` carries (with ``group_id``)."""

GROUP_COLUMNS = ("group_id", "flagged", "flag_at", "peak_score", "exposure")
"""Group fields a verdict row carries (as ``group_id``, ``group_flagged``, ...) when the monitor
tracks groups."""

ROW_COLUMNS = ("client_id", "n_queries", "score", "peak_score", "threshold", "flagged",
               "flag_at", "flag_detector", "reason", "n_units", "peak_query_score", "exposure")
"""The leading columns of :meth:`Verdict.to_row`; ``score_<detector>`` columns follow."""


_PLANS: dict[type, tuple[tuple[str, Callable[[], Any] | None, Any], ...]] = {}


def _deferred_plan(cls: type) -> tuple[tuple[str, Callable[[], Any] | None, Any], ...]:
    """The non-deferred fields of a verdict class, in order, each with its default factory
    (or ``None``) and default: read once per class, not on every verdict."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple(
            (spec.name, None if spec.default_factory is MISSING else spec.default_factory,
             spec.default) for spec in fields(cls) if spec.name not in DEFERRED_FIELDS)
    return plan


@dataclass(frozen=True)
class FlagStatus:
    """What enforcement needs to know about a client, read from its state."""

    flagged: bool
    peak_score: float
    flag_at: int | None
    reason: str | None
    exposure_exceeded: bool = False


@dataclass
class Verdict:
    """A client's verdict after its latest query.

    ``score`` is the overall score now (higher = more suspicious); ``flagged``
    is sticky: it records that ``peak_score`` reached ``threshold``, first at
    query ``flag_at`` (0-based). ``detectors`` maps each detector to its score
    and its count of extreme queries in the current window. ``row_scores`` are
    the overall scores after each row of the latest ``observe`` call. ``n_units`` counts the
    client's evidence units (distinct queries, near-duplicates and one-feature variants merged);
    ``query_score`` is ``-log10`` of the smallest p-value of its latest unit and
    ``peak_query_score`` the largest so far (one impossible query shows there, at most 6).
    Each detector's entry says whether it has had any ``evidence`` (False for the boundary
    detector of a label-only API without a model, of a labels-only classifier, and of a
    regressor). ``exposure`` estimates
    the fidelity a copy built from the client's answers would reach (``None`` before any
    answer); ``exposure_exceeded`` says it reached the configured ``exposure_limit``, first
    after ``exposure_at`` queries.
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
    flag_detector: str | None = None
    n_distinct: int = 0
    n_units: int = 0
    query_score: float = 0.0
    peak_query_score: float = 0.0
    exposure: float | None = None
    exposure_exceeded: bool = False
    exposure_at: int | None = None
    history: list[float] = field(default_factory=list)
    prada: dict[str, Any] | None = None
    group: dict[str, Any] | None = None
    row_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @classmethod
    def deferred(cls, explain: Callable[[], dict[str, Any]], **values: Any) -> Verdict:
        """A verdict whose :data:`DEFERRED_FIELDS` ``explain()`` builds when first read.

        ``explain`` must capture what it needs at call time (the monitor hands it a snapshot
        of the client's windows), so the explanation is the one of this verdict even when it
        is read after later queries.

        >>> v = Verdict.deferred(lambda: {"detectors": {}, "reason": "not flagged", "history": []},
        ...                      client_id="c", n_queries=1, score=0.0, peak_score=0.0,
        ...                      threshold=2.0, flagged=False, flag_at=None)
        >>> "reason" in v.__dict__, v.reason, "reason" in v.__dict__
        (False, 'not flagged', True)
        """
        verdict = cls.__new__(cls)
        state = verdict.__dict__
        for name, factory, default in _deferred_plan(cls):
            if name in values:
                state[name] = values.pop(name)
            else:
                state[name] = factory() if factory is not None else default
        if values:
            raise TypeError(f"Verdict has no field(s) {sorted(values)}")
        verdict.__dict__["_explain"] = explain
        return verdict

    def __getattr__(self, name: str) -> Any:  # only called for attributes not yet set
        explain = self.__dict__.get("_explain")
        if name in DEFERRED_FIELDS and explain is not None:
            self.__dict__.update(explain())
            self.__dict__.pop("_explain", None)
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:  # pickled (to a Dask worker, say) explained
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def summary(self) -> dict[str, Any]:
        """The fields worth logging, alerting and listing (no raw rows, no history)."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}

    def listed(self) -> dict[str, Any]:
        """The client as the admin API's list shows it (:data:`LISTED_FIELDS`)."""
        return {name: getattr(self, name) for name in LISTED_FIELDS}

    def flag_status(self) -> FlagStatus:
        """What enforcement caches about the client (:class:`FlagStatus`)."""
        return FlagStatus(bool(self.flagged), float(self.peak_score), self.flag_at,
                          self.reason if self.flagged else None, bool(self.exposure_exceeded))

    def group_entry(self, group_id: str) -> dict[str, Any]:
        """This verdict, a group's, as ``Verdict.group`` of its clients' verdicts holds it."""
        return {"group_id": str(group_id), **{k: getattr(self, k) for k in GROUP_FIELDS}}

    def to_row(self) -> dict[str, Any]:
        """One verdict-table row: the :data:`ROW_COLUMNS`, ``score_<detector>`` per detector,
        and ``prada_flagged`` / ``prada_flag_at`` when the PRADA baseline ran."""
        row: dict[str, Any] = {
            "client_id": self.client_id,
            "n_queries": int(self.n_queries),
            "score": float(self.score),
            "peak_score": float(self.peak_score),
            "threshold": float(self.threshold),
            "flagged": bool(self.flagged),
            "flag_at": self.flag_at,
            "flag_detector": self.flag_detector,
            "reason": self.reason,
            "n_units": int(self.n_units),
            "peak_query_score": round(float(self.peak_query_score), 3),
            "exposure": self.exposure,
        }
        for name, detail in self.detectors.items():
            row[f"score_{name}"] = float(detail["score"])
        if self.prada is not None:
            row["prada_flagged"] = bool(self.prada["flagged"])
            row["prada_flag_at"] = self.prada["flag_at"]
        if self.group is not None:
            row.update({f"group_{k}" if k != "group_id" else k: v for k, v in self.group.items()
                        if k in GROUP_COLUMNS})
        return row

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (row scores as a list)."""
        out = {spec.name: getattr(self, spec.name) for spec in fields(self)
               if spec.name != "row_scores"}
        out["row_scores"] = [float(s) for s in self.row_scores]
        return out


def flag_reason(flag, test, detector) -> str:
    """The one-line reason of a flag: how many of the window's units were unusual, in the
    words of the ``detector`` whose window ``test`` fired, and the evidence against the flag
    level (in nats: natural-log units of evidence)."""
    window = min(test.window, flag.n_units)
    nats = flag.window_sum * QUANTUM
    return (f"{flag.n_unusual} of the last {window} distinct queries "
            f"{detector.phrase(test.truncation)} ({nats:.0f} nats of evidence; "
            f"{test.evidence.flag_sum * QUANTUM:.0f} flag)")


def explanation(tests, detectors, meta: np.ndarray, evidence_seen: int,
                reason: str | None, history: np.ndarray) -> dict[str, Any]:
    """A verdict's :data:`DEFERRED_FIELDS`: per-detector detail from the window tests'
    ``meta`` (one row per test: head, fill, evidence sum, unusual units), the reason (the
    flag's ``reason``, or which test is nearest to flagging), and the score history."""
    sums = meta[:, SUM].tolist()
    entries: dict[str, dict] = {
        d.name: {"score": 0.0, "evidence": bool(evidence_seen >> i & 1), "count": 0,
                 "tests": {}} for i, d in enumerate(detectors)}
    best, best_ratio = 0, -1.0
    fills = meta[:, FILL].tolist()
    unusual_counts = meta[:, UNUSUAL].tolist()
    for t, test in enumerate(tests):
        entry = entries[test.detector]
        unusual = unusual_counts[t]
        entry["tests"][test.name] = {"units": fills[t], "unusual": unusual,
                                     "nats": round(float(sums[t]) * QUANTUM, 3)}
        entry["count"] = max(entry["count"], unusual)
        entry["score"] = max(entry["score"], test.evidence.detector_score(sums[t]))
        ratio = sums[t] / max(test.evidence.flag_sum, 1)
        if ratio > best_ratio:
            best, best_ratio = t, ratio
    if reason is None:
        test = tests[best]
        reason = (f"not flagged; nearest test {test.key}: {sums[best] * QUANTUM:.0f} of "
                  f"{test.evidence.flag_sum * QUANTUM:.0f} nats over "
                  f"{fills[best]} units")
    return {"detectors": entries, "reason": reason, "history": history.tolist()}


__all__ = ["DEFERRED_FIELDS", "GROUP_COLUMNS", "GROUP_FIELDS", "LISTED_FIELDS", "ROW_COLUMNS",
           "SUMMARY_FIELDS", "FlagStatus", "Verdict", "explanation",
           "flag_reason"]
