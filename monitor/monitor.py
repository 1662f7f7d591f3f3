"""The :class:`Monitor`: per-client detection over a stream of queries.

>>> from victims import load_victim
>>> from monitor import Monitor, Profile
>>> v = load_victim("cancer-logreg")
>>> profile = Profile().fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal)
>>> mon = Monitor(profile, model=v.model)
>>> mon.observe("alice", v.X_public[:100]).flagged
False
>>> rng = np.random.default_rng(0)
>>> verdict = mon.observe("mallory", rng.uniform(v.lower, v.upper, size=(100, 30)))
>>> verdict.flagged, verdict.flag_at
(True, 18)
>>> verdict.reason
'14 of the last 19 distinct queries lie farther from the training data than 99% of real inputs'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np

from monitor.config import MonitorConfig
from monitor.detectors import Batch, build_detectors
from monitor.errors import InvalidInput
from monitor.evidence import WindowEvidence, rolling_counts
from monitor.hashing import duplicate_mask, row_hashes
from monitor.prada import PradaState
from monitor.profile import Profile
from monitor.state import ClientState
from monitor.verdict import Verdict

log = logging.getLogger("extraction_monitor")

GROUP_PREFIX = "group:"
"""State key prefix of group evidence (see ``Monitor(group_of=...)``)."""


class Monitor:
    """Watches every client's queries and keeps a calibrated verdict per client.

    Margins come from the probabilities the API returned (``outputs``); when it
    returned labels only, or nothing, from ``model`` if one is given (otherwise
    the boundary detector has no evidence for those rows). ``store`` is optional: a :class:`monitor.stores.StateStore`
    that keeps per-client state outside this process (several workers, restarts);
    by default state lives in this object. ``group_of`` is optional: it maps a
    client id to a group id (an account, a subnet, a tenant — or one constant
    for "all traffic"); every query then also feeds the group's own state, so an
    attack split across sybil clients of one group is seen whole
    (``verdict.group``). Exact duplicates are recognised across the group too.
    """

    def __init__(self, profile: Profile, config: MonitorConfig | dict | None = None, model=None,
                 store=None, group_of: Callable[[str], str | None] | None = None) -> None:
        self.profile = profile
        if isinstance(config, dict):  # a [monitor] table as read from a config file
            config = MonitorConfig.from_dict(config)
        self.config = config or MonitorConfig()
        self.model = model
        self.store = store
        self.group_of = group_of
        self.detectors = build_detectors(profile, self.config)
        self.tests = self._build_tests()
        self.threshold = self.tests[0][2].threshold
        self.detector_errors: dict[str, int] = {d.name: 0 for d in self.detectors}
        self.state_errors = 0
        self._states: dict[str, ClientState] = {}
        self._lock = threading.RLock()

    def _build_tests(self) -> list[tuple[int, str, WindowEvidence]]:
        """(detector index, window key, evidence) for every window test, sharp then broad.

        Each test tolerates the larger of the configured rate and the rate at which the
        profile's drifted held-out data looks unusual to that detector (capped at 0.95).
        """
        cfg = self.config
        kinds = [("", cfg.extreme_level, cfg.window, cfg.tolerated_rate)]
        if cfg.broad_window:
            kinds.append((":broad", cfg.broad_level, cfg.broad_window, cfg.broad_tolerated_rate))
        n_tests = len(kinds) * len(self.detectors)
        tests = []
        for suffix, level, window, rate in kinds:
            for i, d in enumerate(self.detectors):
                tolerated = min(0.95, max(rate, self.profile.drift_rate(d.name, level)))
                tests.append((i, d.name + suffix, WindowEvidence(
                    window, tolerated, cfg.horizon, n_tests, cfg.alpha, cfg.score_threshold,
                    level)))
        return tests

    # ----------------------------------------------------------------- input checks
    def _check_outputs(self, outputs, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(probabilities, labels) from what the API returned; either may be None."""
        if outputs is None:
            return None, None
        arr = np.asarray(outputs)
        k = len(self.profile.classes_)
        if arr.ndim == 2 and arr.shape == (n, k) and np.issubdtype(arr.dtype, np.number):
            proba = arr.astype(np.float64)
            if not np.isfinite(proba).all():
                raise InvalidInput("outputs contain NaN or infinite probabilities")
            return proba, self.profile.classes_[proba.argmax(axis=1)]
        if arr.ndim == 1 and arr.shape[0] == n:
            return None, arr
        raise InvalidInput(f"outputs must be ({n}, {k}) probabilities or {n} labels, "
                           f"got shape {arr.shape}")

    # ----------------------------------------------------------------- the stream
    def observe(self, client_id: str, X, outputs=None) -> Verdict:
        """Process rows ``X`` (``(n, d)`` or one row) from ``client_id``; return its verdict.

        Raises :class:`~monitor.errors.InvalidInput` before touching any state
        if the rows or outputs are malformed.
        """
        X = self.profile.check_rows(X)
        proba, labels = self._check_outputs(outputs, len(X))
        if proba is None and self.model is not None:
            proba = self.model.predict_proba(X)
            labels = self.profile.classes_[proba.argmax(axis=1)]
        return self._observe_rows(client_id, X, proba, labels, row_hashes(X))

    def observe_many(self, client_ids, X, outputs=None) -> dict[str, Verdict]:
        """Rows from many clients at once (a log chunk); each client's rows in their order.

        Equivalent to calling :meth:`observe` per client on its rows, but the
        stateless detectors (density, boundary) and the model run once over all
        rows, which is what makes offline analysis fast. Returns each client's
        verdict after its last row.
        """
        X = self.profile.check_rows(X)
        client_ids = np.asarray(client_ids, dtype=object)
        if client_ids.shape != (len(X),):
            raise InvalidInput(f"client_ids must have one id per row ({len(X)}), "
                               f"got shape {client_ids.shape}")
        proba, labels = self._check_outputs(outputs, len(X))
        if proba is None and self.model is not None:
            proba = self.model.predict_proba(X)
            labels = self.profile.classes_[proba.argmax(axis=1)]
        hashes = row_hashes(X)
        batch = Batch(X=X, Z=self.profile.transform(X), proba=proba)
        pre = {}
        for detector in self.detectors:
            if getattr(detector, "stateless", False):
                try:
                    pre[detector.name] = np.asarray(detector.pvalues(batch), dtype=np.float64)
                except Exception:  # the per-client path retries it, counts and logs the error
                    pass
        uniques, first, inverse = np.unique(client_ids, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniques)))
        verdicts: dict[str, Verdict] = {}
        for u in np.argsort(first, kind="stable"):
            rows = order[(bounds[u - 1] if u else 0):bounds[u]]
            cid = str(uniques[u])
            verdicts[cid] = self._observe_rows(
                cid, X[rows], None if proba is None else proba[rows],
                None if labels is None else np.asarray(labels)[rows], hashes[rows],
                {name: p[rows] for name, p in pre.items()})
        return verdicts

    def _observe_rows(self, client_id, X, proba, labels, hashes, pre=None) -> Verdict:
        verdict = self._observe_key(client_id, X, proba, labels, hashes, pre)
        group_id = self.group_of(client_id) if self.group_of is not None else None
        if group_id is not None:
            group = self._observe_key(GROUP_PREFIX + str(group_id), X, proba, labels, hashes,
                                      pre)
            verdict.group = {"group_id": str(group_id), "n_queries": group.n_queries,
                             "score": group.score, "peak_score": group.peak_score,
                             "flagged": group.flagged, "flag_at": group.flag_at,
                             "reason": group.reason}
        return verdict

    def _observe_key(self, key: str, X, proba, labels, hashes, pre=None) -> Verdict:
        if self.store is not None:
            with self.store.transaction(key) as tx:
                state = self._load_state(key, tx.load)
                row_scores, counts = self._update(state, X, proba, labels, hashes, pre)
                tx.save(state.to_arrays())
            return self._verdict(key, state, row_scores, counts)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = self._new_state()
            row_scores, counts = self._update(state, X, proba, labels, hashes, pre)
            return self._verdict(key, state, row_scores, counts)

    def _load_state(self, client_id: str, arrays) -> ClientState:
        """A client's state from stored arrays (or a callable returning them); a corrupt or
        old record resets that client only, also when reading it raises."""
        try:
            if callable(arrays):
                arrays = arrays()
            if arrays is None:
                return self._new_state()
            state = ClientState.from_arrays(arrays)
            if set(state.windows) != {key for _, key, _ in self.tests} or (
                    state.chain.shape[1:] != (self.profile.n_features_,)):
                raise ValueError("stored state was written for other detectors or features")
            return state
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self.state_errors += 1
            log.error("client %s: unreadable stored state (%s); resetting this client", client_id,
                      exc)
            return self._new_state()

    def _new_state(self) -> ClientState:
        state = ClientState(
            windows={key: np.zeros(0, dtype=np.uint8) for _, key, _ in self.tests},
            chain=np.zeros((0, self.profile.n_features_), dtype=np.float16),
        )
        if self.config.prada:
            state.prada = PradaState(self.config.prada_max_stored)
        return state

    def _update(self, state: ClientState, X, proba, labels, hashes,
                pre=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Advance the client's state by rows ``X``; (row scores, window counts now)."""
        n = len(X)
        dup = duplicate_mask(hashes, state.hashes)
        distinct = np.flatnonzero(~dup)
        m = len(distinct)
        Z = self.profile.transform(X[distinct])
        batch = Batch(X=X[distinct], Z=Z, proba=None if proba is None else proba[distinct])

        pvalues = []
        for detector in self.detectors:
            if pre is not None and detector.name in pre:
                pvalues.append(pre[detector.name][distinct])
                continue
            try:
                pvalues.append(np.asarray(detector.pvalues(batch, state), dtype=np.float64))
            except Exception:  # a broken detector must never break serving
                self.detector_errors[detector.name] += 1
                log.exception("detector %s failed; its evidence is skipped", detector.name)
                pvalues.append(np.ones(m))
        counts = np.zeros((len(self.tests), m), dtype=np.int64)
        test_scores = np.zeros((len(self.tests), m))
        for t, (i, key, evidence) in enumerate(self.tests):
            events = (pvalues[i] <= evidence.level).astype(np.uint8)
            counts[t], state.windows[key] = rolling_counts(state.windows[key], events,
                                                           evidence.window)
            test_scores[t] = evidence.overall(counts[t])

        if state.prada is not None and labels is not None and m:
            index = state.n_queries + distinct
            state.prada.update(Z, np.asarray(labels)[distinct], self.config.prada_delta, index)

        # overall score after each distinct row; duplicates carry the previous score forward
        distinct_scores = test_scores.max(axis=0) if m else np.zeros(0)
        position = np.cumsum(~dup) - 1  # index of the latest distinct row at each row
        with_prev = np.concatenate([[state.score], distinct_scores])
        row_scores = with_prev[position + 1]

        if state.flag_at is None:
            over = np.flatnonzero(row_scores >= self.threshold)
            if len(over):
                row = int(over[0])
                state.flag_at = state.n_queries + row
                at = int(position[row])
                t = int(np.argmax(test_scores[:, at]))
                state.flag_reason = self._reason(t, int(counts[t, at]), state.n_distinct + at + 1)
        state.n_queries += n
        state.n_distinct += m
        state.score = float(row_scores[-1]) if n else state.score
        state.peak_score = max(state.peak_score, float(row_scores.max(initial=0.0)))
        state.hashes = np.concatenate([state.hashes, hashes[distinct]])[
            len(state.hashes) + m - self.config.dedup_memory:] if self.config.dedup_memory else \
            state.hashes
        state.history = np.concatenate([state.history, row_scores.astype(np.float32)])[
            -self.config.history:]
        return row_scores, (counts[:, -1] if m else None)

    # ----------------------------------------------------------------- verdicts
    def _reason(self, test: int, count: int, n_distinct: int) -> str:
        i, _, evidence = self.tests[test]
        window = min(evidence.window, n_distinct)
        return (f"{count} of the last {window} distinct queries "
                f"{self.detectors[i].phrase(evidence.level)}")

    def _verdict(self, client_id: str, state: ClientState, row_scores: np.ndarray,
                 counts: np.ndarray | None = None) -> Verdict:
        if counts is None:
            counts = [int(state.windows[key].sum()) for _, key, _ in self.tests]
        detectors: dict[str, dict[str, float]] = {d.name: {"score": 0.0} for d in self.detectors}
        best, best_ratio = 0, -1.0
        for t, (i, key, evidence) in enumerate(self.tests):
            window = state.windows[key]
            count = int(counts[t])
            entry = detectors[self.detectors[i].name]
            prefix = "broad_" if key.endswith(":broad") else ""
            entry[prefix + "count"] = count
            entry[prefix + "window"] = int(len(window))
            entry["score"] = max(entry["score"], float(evidence.detector_scores_[count]))
            if count / evidence.flag_count > best_ratio:
                best, best_ratio = t, count / evidence.flag_count
        if state.flag_at is not None:
            reason = state.flag_reason or "flagged"
        else:
            i, key, evidence = self.tests[best]
            reason = (f"not flagged; nearest test {key}: {int(counts[best])} of "
                      f"{len(state.windows[key])} unusual, {evidence.flag_count} would flag")
        prada = None
        if state.prada is not None:
            prada = {"flagged": state.prada.flag_at is not None, "flag_at": state.prada.flag_at,
                     "score": state.prada.score}
        return Verdict(
            client_id=client_id, n_queries=state.n_queries, score=state.score,
            peak_score=state.peak_score, threshold=self.threshold,
            flagged=state.flag_at is not None, flag_at=state.flag_at, reason=reason,
            detectors=detectors, n_distinct=state.n_distinct,
            history=state.history.tolist(), prada=prada, row_scores=row_scores,
        )

    def verdict(self, client_id: str) -> Verdict:
        """The client's current verdict (an all-clear verdict for an unseen client)."""
        state = self.state(client_id) or self._new_state()
        return self._verdict(client_id, state, np.zeros(0))

    def clients(self) -> list[str]:
        """Ids of all clients with state (groups excluded)."""
        return [k for k in self._keys() if not k.startswith(GROUP_PREFIX)]

    def groups(self) -> list[str]:
        """Ids of all groups with state."""
        return [k[len(GROUP_PREFIX):] for k in self._keys() if k.startswith(GROUP_PREFIX)]

    def group_verdict(self, group_id: str) -> Verdict:
        """The verdict of a group (all its clients' queries taken together)."""
        return self.verdict(GROUP_PREFIX + str(group_id))

    def _keys(self) -> list[str]:
        if self.store is not None:
            return list(self.store.clients())
        with self._lock:
            return list(self._states)

    def reset(self, client_id: str) -> None:
        """Forget a client's state (an operator action)."""
        if self.store is not None:
            self.store.delete(client_id)
            return
        with self._lock:
            self._states.pop(client_id, None)

    def state(self, client_id: str) -> ClientState | None:
        """The client's state (a copy when it comes from a store); do not mutate."""
        if self.store is not None:
            arrays = self.store.get(client_id)
            return None if arrays is None else self._load_state(client_id, arrays)
        with self._lock:
            return self._states.get(client_id)

    def set_state(self, client_id: str, state: ClientState) -> None:
        """Install a client's state (loaded from a store)."""
        with self._lock:
            self._states[client_id] = state

    def observe_rows(self, client_id: str, rows: Iterable) -> Verdict:
        """Observe rows one at a time (the reference semantics the batch path must equal)."""
        verdict = self.verdict(client_id)
        for row in rows:
            verdict = self.observe(client_id, row)
        return verdict
