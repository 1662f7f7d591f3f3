"""Per-client state: bounded, compact, and serialisable without pickle.

Everything a client's verdict depends on lives here, in fixed-size arrays: recent row hashes
(to skip retries), each window test's recent units' evidence (by test key, e.g. ``density.w32``),
each stateful detector's declared arrays (by detector name and key, e.g. ``chain`` /
``buffer``), and a short score history. Its size does not grow with the client's history
(the optional PRADA baseline excepted, whose growing sets are capped by ``prada_max_stored``).
:meth:`ClientState.to_record` turns it into the bytes and summary a store keeps
(:mod:`monitor.state_record`); :meth:`ClientState.from_record` reads them back.

The *safety state* — whether and when the client was flagged, why, its peak score, and when
its exposure reached the operator's limit — is
kept apart from the *evidence* (windows and detector state): when the detectors or tests
change, :meth:`ClientState.reset_evidence` drops the evidence and keeps the flag.

>>> state = ClientState(windows={"density.w8": np.array([1, 0], dtype=np.uint8)}, n_queries=2)
>>> record = state.to_record()
>>> back = ClientState.from_record(record.blob)
>>> back.windows["density.w8"].tolist(), back.flag_at, record.summary.n_queries
([1, 0], None, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from monitor.baselines.prada import PradaState
from monitor.state_record import RecordSummary, StateRecord, decode_state, encode_state

STATE_VERSION = 2
"""Layout of :meth:`ClientState.to_arrays`. Version 1 records (0.1) are still read: their
counters, flag, reason and peak score are kept, their evidence starts afresh."""

_WINDOW = "window."
_DETECTOR = "detector."
_PRADA = "prada."


@dataclass
class ClientState:
    """The bounded state of one client."""

    n_queries: int = 0
    n_distinct: int = 0
    n_units: int = 0
    """Evidence units made so far (:mod:`monitor.units`)."""
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    windows: dict[str, np.ndarray] = field(default_factory=dict)
    """Each window test's ring buffer of unit evidence, by test key (``density.w32``)."""
    window_meta: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    """Per test (in test order): ring head, units held, their evidence sum, units with
    evidence."""
    detector_state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    score: float = 0.0
    peak_score: float = 0.0
    query_score: float = 0.0
    """``-log10`` of the smallest p-value of the latest evidence unit."""
    peak_query_score: float = 0.0
    """The largest :attr:`query_score` so far (one impossible query shows here)."""
    flag_at: int | None = None
    flag_reason: str | None = None
    flag_test: str | None = None
    """Key of the window test that raised the flag (``boundary.w32``)."""
    exposure_at: int | None = None
    """Queries the client had sent when its exposure first reached ``exposure_limit``."""
    evidence_seen: int = 0
    """Bit ``i``: detector ``i`` (config order) has had evidence for this client (the
    boundary detector has none for a label-only API without a model)."""
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float16))
    prada: PradaState | None = None
    """The PRADA baseline's state (only when ``prada`` is on)."""
    group: str | None = None
    """The group of the client's first query that named one (:mod:`monitor.grouping`): a
    client keeps it. Safety state: an evidence reset keeps it."""

    @property
    def flagged(self) -> bool:
        return self.flag_at is not None

    def nbytes(self) -> int:
        """Bytes held in arrays (the PRADA baseline's growing sets included)."""
        total = self.hashes.nbytes + self.history.nbytes
        total += sum(w.nbytes for w in self.windows.values())
        total += sum(a.nbytes for arrays in self.detector_state.values()
                     for a in arrays.values())
        if self.prada is not None:
            total += self.prada.nbytes()
        return total + 64  # scalars

    def reset_evidence(self, windows: dict[str, np.ndarray], window_meta: np.ndarray,
                       detector_state: dict[str, dict[str, np.ndarray]]) -> None:
        """Replace the evidence (windows, detector state, current score); keep the flag,
        its reason, the peak scores, the exposure mark and the counters."""
        self.windows = windows
        self.window_meta = window_meta
        self.detector_state = detector_state
        self.score = 0.0
        self.query_score = 0.0

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (for ``.npz`` or a key-value store)."""
        out = {
            "version": np.array([STATE_VERSION]),
            "counters": np.array([self.n_queries, self.n_distinct,
                                  -1 if self.flag_at is None else self.flag_at,
                                  -1 if self.exposure_at is None else self.exposure_at,
                                  self.n_units, self.evidence_seen]),
            "scores": np.array([self.score, self.peak_score, self.query_score,
                                self.peak_query_score]),
            "hashes": self.hashes, "history": self.history,
            "flag_reason": np.array([self.flag_reason or ""]),
            "flag_test": np.array([self.flag_test or ""]),
            "group": np.array([self.group or ""]),
            "window_meta": self.window_meta,
        }
        for key, window in self.windows.items():
            out[_WINDOW + key] = window
        for detector, arrays in self.detector_state.items():
            for key, value in arrays.items():
                out[f"{_DETECTOR}{detector}.{key}"] = value
        if self.prada is not None:
            for key, value in self.prada.to_arrays().items():
                out[_PRADA + key] = value
        return out

    def to_record(self) -> StateRecord:
        """The record a store keeps: the encoded arrays and the summary it indexes."""
        score, peak = float(self.score), float(self.peak_score)
        # what summarise(arrays) reads back from the counters and scores, taken directly
        return StateRecord(encode_state(self.to_arrays()), RecordSummary(
            n_queries=int(self.n_queries), score=score if math.isfinite(score) else 0.0,
            peak_score=peak if math.isfinite(peak) else 0.0, flagged=self.flag_at is not None))

    @classmethod
    def from_record(cls, blob: bytes) -> ClientState:
        """Read :meth:`to_record` bytes; ``ValueError`` (and ``KeyError``, ``IndexError``,
        ``TypeError`` for a decodable record of another kind) when they are not a state."""
        return cls.from_arrays(decode_state(blob))

    @classmethod
    def from_arrays(cls, arrays) -> ClientState:
        """Read :meth:`to_arrays` output (version 1 records are converted)."""
        windows: dict[str, np.ndarray] = {}
        detector_state: dict[str, dict[str, np.ndarray]] = {}
        prada: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            if name.startswith(_PRADA):
                prada[name[len(_PRADA):]] = value
            elif name.startswith(_WINDOW):
                windows[name[len(_WINDOW):]] = np.asarray(value)
            elif name.startswith(_DETECTOR):
                detector, key = name[len(_DETECTOR):].split(".", 1)
                detector_state.setdefault(detector, {})[key] = np.asarray(value)
        # version 1's count windows mean nothing to 0.2's tests: only its safety state is read
        return cls(
            hashes=np.asarray(arrays["hashes"]), windows=windows, detector_state=detector_state,
            window_meta=np.asarray(arrays["window_meta"]) if "window_meta" in arrays
            else np.zeros((0, 4), dtype=np.int64),
            history=np.asarray(arrays["history"]),
            prada=PradaState.from_arrays(prada) if prada else None, **_scalars(arrays))

    @classmethod
    def flag_only(cls, arrays) -> ClientState:
        """A state with only the counters, scores and flag of a record (its
        :data:`FLAG_ARRAYS`, decoded without the evidence): what enforcement reads on every
        request."""
        return cls(**_scalars(arrays))

    @classmethod
    def flag_only_from_record(cls, blob: bytes) -> ClientState:
        """:meth:`flag_only` of a record's bytes (only its :data:`FLAG_ARRAYS` decoded)."""
        return cls.flag_only(decode_state(blob, only=FLAG_ARRAYS))


def _scalars(arrays) -> dict:
    """The counters, scores and flag fields of a record's arrays."""
    version = int(arrays["version"][0])
    if version not in (1, STATE_VERSION):
        raise ValueError(f"client state has version {version}, expected {STATE_VERSION}")
    counters = [int(v) for v in arrays["counters"]]
    n_queries, n_distinct, flag_at = counters[:3]
    exposure_at = counters[3] if len(counters) > 3 else -1
    n_units = counters[4] if len(counters) > 4 else n_distinct  # older: one unit per query
    evidence_seen = counters[5] if len(counters) > 5 else 0
    scores = [float(v) for v in arrays["scores"]] + [0.0, 0.0]
    score, peak, query_score, peak_query = scores[:4]
    reason = str(arrays["flag_reason"][0])
    flag_test = str(arrays["flag_test"][0]) if "flag_test" in arrays else ""
    group = str(arrays["group"][0]) if "group" in arrays else ""
    return {"n_queries": n_queries, "n_distinct": n_distinct, "n_units": n_units,
            "score": score, "peak_score": peak, "query_score": query_score,
            "peak_query_score": peak_query, "flag_at": None if flag_at < 0 else flag_at,
            "flag_reason": reason or None, "flag_test": flag_test or None,
            "group": group or None,
            "exposure_at": None if exposure_at < 0 else exposure_at,
            "evidence_seen": evidence_seen}


FLAG_ARRAYS = ("version", "counters", "scores", "flag_reason", "flag_test")
"""The arrays of a record :meth:`ClientState.flag_only` reads."""
