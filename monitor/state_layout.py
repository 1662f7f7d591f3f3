"""What a client's state looks like for one monitor, and how a stored one is read back.

A :class:`StateLayout` knows the monitor's window tests and its stateful parts (stateful
detectors, the evidence-unit tracker, the exposure tracker: whatever declares arrays through
``initial_state()``), and whether the PRADA baseline runs. From those it makes a new client's
:class:`~monitor.state.ClientState`, and reads a stored record: a corrupt record resets that
client only (counted in :attr:`StateLayout.corrupt_records`); a record whose evidence was
written for other detectors or tests keeps its safety state (flag, reason, peak scores,
counters) and starts its evidence afresh (:attr:`StateLayout.evidence_resets`).

>>> from monitor.evidence import build_window_tests
>>> layout = StateLayout(tests=[], parts=[])
>>> state = layout.new_state()
>>> layout.load("alice", state.to_record().blob).n_queries, layout.load("bob", b"junk").n_queries
(0, 0)
>>> layout.corrupt_records
1
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from monitor.baselines.prada import PradaState
from monitor.scoring import Windows
from monitor.state import ClientState

log = logging.getLogger("extraction_monitor")


class StateLayout:
    """A new client's state for ``tests`` and ``parts``, and stored states read against them.

    ``prada_max_stored``: the PRADA baseline's cap when it runs, ``None`` when it does not.
    """

    def __init__(self, tests: Sequence, parts: Sequence,
                 prada_max_stored: int | None = None) -> None:
        self.tests = list(tests)
        self.parts = list(parts)
        self.prada_max_stored = prada_max_stored
        self.corrupt_records = 0
        """Unreadable stored states (each reset that client)."""
        self.evidence_resets = 0
        """Stored states whose evidence was written for other detectors or tests."""
        self._shapes = {part.name: {k: a.shape[1:] for k, a in part.initial_state().items()}
                        for part in self.parts}
        """Each part's arrays and their shapes after the first axis (which may grow)."""
        self._fixed = {part.name: {k: a.shape for k, a in part.initial_state().items()}
                       for part in self.parts if getattr(part, "fixed_shape", False)}
        """Parts whose arrays never change shape (the exposure tracker's answer copy)."""

    def _new_evidence(self) -> tuple[Windows, dict[str, dict[str, np.ndarray]]]:
        return Windows.empty(self.tests), {p.name: p.initial_state() for p in self.parts}

    def new_state(self) -> ClientState:
        """A new client's state."""
        windows, detector_state = self._new_evidence()
        return ClientState(windows=windows.rings, window_meta=windows.meta,
                           detector_state=detector_state,
                           prada=None if self.prada_max_stored is None
                           else PradaState(self.prada_max_stored))

    def matches(self, state: ClientState) -> bool:
        """Whether a stored state's evidence was written by these tests and parts."""
        if not Windows(state.windows, state.window_meta).matches(self.tests):
            return False
        for name, expected in self._shapes.items():
            stored = state.detector_state.get(name, {})
            if stored.keys() != expected.keys() or any(
                    stored[k].shape[1:] != shape for k, shape in expected.items()):
                return False
        return all(state.detector_state[name][k].shape == shape
                   for name, fixed in self._fixed.items() for k, shape in fixed.items())

    def load(self, client_id: str, blob: bytes | None) -> ClientState:
        """The state a stored record holds (``None``: a new client), read against this
        layout: corrupt → a new state; other evidence → evidence afresh, safety state kept."""
        if blob is None:
            return self.new_state()
        try:
            state = ClientState.from_record(blob)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self.corrupt_records += 1
            log.error("client %s: unreadable stored state (%s); resetting this client", client_id,
                      exc)
            return self.new_state()
        state.detector_state = {name: arrays for name, arrays in state.detector_state.items()
                                if name in self._shapes}
        if not self.matches(state):
            self.evidence_resets += 1
            log.warning("client %s: stored evidence was written for other detectors or tests; "
                        "its evidence starts afresh, its flag (%s) is kept", client_id,
                        "flagged" if state.flagged else "not flagged")
            windows, detector_state = self._new_evidence()
            state.reset_evidence(windows.rings, windows.meta, detector_state)
        if self.prada_max_stored is None:
            state.prada = None
        elif state.prada is None:  # the baseline was switched on after this record was written
            state.prada = PradaState(self.prada_max_stored)
        return state


__all__ = ["StateLayout"]
