"""The :class:`Monitor`: per-client detection over a stream of queries.

It orchestrates the pieces, in the order a query meets them: input checks, retries
(:mod:`monitor.hashing`), the detectors' p-values (:mod:`monitor.detectors`), the scoring
step (:mod:`monitor.scoring`, window tests of :mod:`monitor.evidence`), the client's bounded
state (:mod:`monitor.state`, always kept in a :mod:`monitor.stores` store: ``memory://`` by
default), and the :class:`~monitor.verdict.Verdict`. What the model answered is checked,
and completed from the model, in :mod:`monitor.answers`; reasons are worded in
:mod:`monitor.verdict`.

>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Monitor, Profile
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
>>> model = LogisticRegression().fit(X[:400], y[:400])
>>> profile = Profile(seed=0).fit(model, X[:400], y[:400], X_cal=X[400:], y_cal=y[400:])
>>> mon = Monitor(profile, model=model)
>>> mon.observe("alice", rng.normal(size=(100, 4))).flagged
False
>>> verdict = mon.observe("mallory", rng.uniform(-6, 6, size=(100, 4)))
>>> verdict.flagged, verdict.flag_at
(True, 2)
>>> verdict.reason
'3 of the last 3 distinct queries lie farther from the nearest training records, relative to how densely those are packed, than 90% of real inputs (40 nats of evidence; 35 flag)'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from monitor.answers import AnswerCodes, Answers, check_outputs, complete_answers
from monitor.detectors import Batch, build_detectors
from monitor.errors import InvalidInput
from monitor.evidence import build_window_tests
from monitor.exposure import ExposureTracker
from monitor.grouping import checked_group
from monitor.hashing import digest_key as new_digest_key
from monitor.hashing import duplicate_mask, row_hashes
from monitor.profile import Profile
from monitor.rounding import RoundingNull
from monitor.scaling import ScalingNull
from monitor.scoring import ScoredRows, Windows, score_rows
from monitor.settings import MonitorConfig
from monitor.state import ClientState
from monitor.state_cache import DecodedStates
from monitor.state_layout import StateLayout
from monitor.stores.base import StateStore, check_client_id
from monitor.stores.memory import MemoryStore
from monitor.tails import MIN_PVALUE
from monitor.units import UnitTracker, variant_limit
from monitor.verdict import FlagStatus, Verdict, explanation, flag_reason

log = logging.getLogger("extraction_monitor")

GROUP_PREFIX = "group:"
"""State key prefix of group evidence (see ``Monitor(group_of=...)``)."""


@dataclass
class MonitorCounters:
    """Health counters of one monitor (exported as metrics by the serving layer)."""

    detector_errors: dict[str, int]
    """Exceptions raised by each detector (its evidence was skipped for that call)."""
    corrupt_records: int = 0
    """Unreadable stored client states (each reset that client)."""
    evidence_resets: int = 0
    """Stored states whose evidence was written for other detectors or tests (the evidence
    was reset; the flag kept)."""
    store: dict[str, int] = field(default_factory=dict)
    """The state store's own counters (:meth:`monitor.stores.StateStore.stats`)."""
    reused_states: int = 0
    """With a store: observes that continued from the state this process wrote last, since the
    store returned that very record (``decoded_states``; no decode)."""
    decoded_states: int = 0
    """With a store: observes that decoded the stored record (another worker wrote it, it was
    evicted from ``decoded_states``, or the client is new)."""


class Monitor:
    """Watches every client's queries and keeps a calibrated verdict per client.

    Rows are a DataFrame or named records (mapped by column name, in any order), or an array
    in the profile's column order (:meth:`Profile.rows`). Margins come from the probabilities
    the API returned (``outputs``); when it returned labels only, or nothing, from ``model`` if
    one is given (otherwise the boundary detector has no evidence for those rows; a classifier
    without ``predict_proba`` always needs ``model`` for its ``decision_function`` margins). A
    regressor's outputs are its ``(n,)`` predicted values. :meth:`evidence_notes` says, in
    sentences to log at startup, which detectors will have no evidence. ``store`` is the
    :class:`monitor.stores.StateStore` that keeps per-client state (SQLite or Redis: outside
    this process, for several workers and restarts); by default a
    :class:`~monitor.stores.MemoryStore` of this process (:attr:`store_is_default`). ``group_of`` is
    optional: it maps a client id to a group id (an account, a subnet, a tenant — or one
    constant for "all traffic"); every query then also feeds the group's own state, so an
    attack split across sybil clients of one group is seen whole (``verdict.group``).
    Exact duplicates are recognised across the group too. ``observe(..., group=...)`` names
    the group per call instead (the serving layer's ``[serving] group_by``,
    :mod:`monitor.grouping`); either way a client keeps the group of its first query that
    named one (kept in its state).

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = (X[:, 0] > 0).astype(int)
    >>> model = LogisticRegression().fit(X, y)
    >>> monitor = Monitor(Profile(seed=0).fit(model, X, y), model=model)
    >>> monitor.observe("key-1", X[:5], group="acme").group["group_id"]
    'acme'
    >>> monitor.observe("key-1", X[5:9], group="other").group["n_queries"]  # keeps acme
    9
    >>> monitor.groups()
    ['acme']
    """

    def __init__(self, profile: Profile, config: MonitorConfig | dict | None = None, model=None,
                 store: StateStore | None = None, group_of: Callable[[str], str | None] | None = None,
                 digest_key: bytes | None = None) -> None:
        self.profile = profile
        self.digest_key = digest_key
        """Key of the retry digest (:mod:`monitor.hashing`); ``None``: the serving layer sets
        the deployment's (derived from the salt), else a random one is drawn at first use."""
        if isinstance(config, dict):  # a [monitor] table as read from a config file
            config = MonitorConfig.from_dict(config)
        self.config = config or MonitorConfig()
        self.model = model
        self.store: StateStore = store if store is not None else MemoryStore()
        self.store_is_default = store is None
        """Whether :attr:`store` is the in-process store made for this monitor (serving swaps
        it for one with the deployment's TTL: :meth:`use_store`)."""
        self.group_of = group_of
        self.detectors = build_detectors(profile, self.config)
        self.tests = build_window_tests(self.detectors, self.config, profile)
        self.threshold = self.tests[0].evidence.threshold
        self.exposure = ExposureTracker.from_profile(profile) if self.config.exposure else None
        self.units = UnitTracker(profile.unit_radius() if self.config.units else 0.0,
                                 int(profile.reference_.shape[1]),
                                 max_changed=variant_limit(profile.n_features_)
                                 if self.config.units else 0)
        self.detector_errors: dict[str, int] = {d.name: 0 for d in self.detectors}
        self._answer_codes = AnswerCodes(np.asarray(self.profile.classes_))
        self._codes_labels = self.task == "classification" and any(
            getattr(d, "needs_labels", False) for d in self.detectors)
        """Whether a detector reads the answers' labels (coded once per call for it)."""
        self._per_query = [d for d in self.detectors
                           if not d.stateful and not getattr(d, "needs_stream", False)]
        """Detectors scored on every distinct query (before units are formed)."""
        self._per_unit = [d for d in self.detectors if d not in self._per_query]
        """Detectors scored on new units only (stateful ones, and those reading the stream)."""
        self.rounding = RoundingNull(profile, [d.name for d in self._per_query])
        """Rows on a coarse decimal grid judged against rounded held-out data (rounding.py)."""
        self.scaling = ScalingNull(profile, self._per_query,
                                   max((t.truncation for t in self.tests), default=1.0))
        """Rows with evidence also judged as records after the client's unit change
        (scaling.py)."""
        stateful = [d for d in self.detectors if d.stateful] + [self.units, self.scaling]
        self.layout = StateLayout(
            self.tests, stateful + ([self.exposure] if self.exposure is not None else []),
            self.config.prada_max_stored
            if self.config.prada and self.task == "classification" else None)  # needs classes
        """A new client's state, and stored states read back (:mod:`monitor.state_layout`)."""
        self._decoded = DecodedStates(self.config.decoded_states)
        """The states this process wrote last, kept decoded."""

    def _label_codes(self, answers: Answers) -> np.ndarray | None:
        """Each answer's class index (``profile.classes_`` order, -1 for a label the victim
        lacks): its label, else the argmax of its probabilities; ``None`` when neither is
        known. Coded here once, so no detector decides this itself."""
        if answers.labels is not None:
            return self._answer_codes.of(answers.labels)
        if answers.proba is not None and np.ndim(answers.proba) == 2:
            return np.asarray(answers.proba).argmax(axis=1).astype(np.int16)
        return None

    def use_store(self, store: StateStore) -> None:
        """Keep client state in ``store`` from now on (before the first query)."""
        self.store = store
        self.store_is_default = False
        self._decoded = DecodedStates(self.config.decoded_states)

    # ----------------------------------------------------------------- what serving reads
    @property
    def n_features(self) -> int:
        """Features per query row."""
        return int(self.profile.n_features_)

    @property
    def classes(self) -> np.ndarray:
        """The victim's class labels, in probability-column order (empty for a regressor)."""
        return np.asarray(self.profile.classes_)

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return getattr(self.profile, "task_", "classification")

    @property
    def schema(self):
        """The model's columns as the profile recorded them (:class:`~monitor.features.
        FeatureSchema`: names, kinds, categories, where missing values are accepted)."""
        return self.profile.schema_

    def evidence_notes(self, outputs: str = "proba") -> list[str]:
        """One sentence per detector (or exposure) that will have no evidence when the API's
        answers are ``outputs`` — ``proba`` (probabilities), ``labels``, ``values`` (a
        regressor's predictions) or ``none`` — with the model this monitor was given; log them
        at startup. Empty when every detector has what it needs.

        >>> from sklearn.linear_model import LogisticRegression
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
        >>> mon = Monitor(Profile(seed=0).fit(LogisticRegression().fit(X, y), X, y))
        >>> mon.evidence_notes("proba"), len(mon.evidence_notes("labels"))
        ([], 1)
        """
        from monitor.detectors import evidence_notes

        return evidence_notes(self.profile, [d.name for d in self.detectors], outputs,
                              self.model is not None, self.exposure is not None)

    @property
    def feature_names(self) -> list[str]:
        """The training data's feature names (``x_0 ..`` when it had none)."""
        return list(self.profile.feature_names_)

    def counters(self) -> MonitorCounters:
        """Detector errors, unreadable records, evidence resets and the store's counters."""
        return MonitorCounters(
            detector_errors=dict(self.detector_errors),
            corrupt_records=self.layout.corrupt_records,
            evidence_resets=self.layout.evidence_resets,
            store=self.store.stats(),
            reused_states=self._decoded.hits, decoded_states=self._decoded.misses)

    def flag_status(self, client_id: str) -> FlagStatus | None:
        """Whether ``client_id`` is flagged, read from its (stored) state; ``None`` if unknown.

        Only the record's flag arrays are decoded (serving asks on every request); an
        unreadable record takes the full path, which counts and logs it."""
        blob = self.store.get_blob(check_client_id(client_id))
        if blob is None:
            return None
        try:
            state = ClientState.flag_only_from_record(blob)
        except (ValueError, KeyError, IndexError, TypeError):
            state = self.layout.load(client_id, blob)
        return FlagStatus(state.flagged, float(state.peak_score), state.flag_at,
                          state.flag_reason, state.exposure_at is not None)

    def export_state(self, client_id: str) -> bytes:
        """The client's state record (:func:`monitor.state_record.decode_state` reads it);
        ``KeyError`` for an unknown client."""
        return self.store.export(client_id)

    # ----------------------------------------------------------------- input checks
    def _outputs(self, rows, outputs) -> Answers:
        """The checked outputs (checked here unless they are already :class:`Answers`, as
        the serving layer hands them), completed from the model where it is given."""
        checked = outputs if isinstance(outputs, Answers) else check_outputs(
            self.profile, outputs, len(rows))
        return complete_answers(self.profile, self.model, rows, checked)

    # ----------------------------------------------------------------- the stream
    def observe(self, client_id: str, X, outputs=None, group: str | None = None) -> Verdict:
        """Process rows ``X`` from ``client_id``; return its verdict.

        ``X`` is a DataFrame or named records (columns mapped by name, in any order), or an
        ``(n, d)`` array (or one row) in the profile's column order. ``outputs`` are what the
        API returned: ``(n, k)`` probabilities or ``(n,)`` labels, or a regressor's ``(n,)``
        values, or those already checked (:class:`monitor.answers.Answers`). Raises :class:`~monitor.errors.InvalidInput` before touching any state
        if the rows or outputs are malformed. ``group`` names the client's group for this call
        (else ``group_of``'s); a client keeps its first one.
        """
        rows = self.profile.rows(X)
        answers = self._outputs(rows, outputs)
        try:
            group = checked_group(group)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return self._observe_rows(client_id, rows.X, answers, self._hashes(rows.X),
                                  group=group)

    def observe_many(self, client_ids, X, outputs=None) -> dict[str, Verdict]:
        """Rows from many clients at once (a log chunk); each client's rows in their order.

        Equivalent to calling :meth:`observe` per client on its rows, but the stateless
        detectors (density, boundary) and the model run once over all rows, which is what
        makes offline analysis fast. Returns each client's verdict after its last row.
        """
        rows = self.profile.rows(X)
        X = rows.X
        client_ids = np.asarray(client_ids, dtype=object)
        if client_ids.shape != (len(X),):
            raise InvalidInput(f"client_ids must have one id per row ({len(X)}), "
                               f"got shape {client_ids.shape}")
        answers = self._outputs(rows, outputs)
        hashes = self._hashes(X)
        batch = Batch(X=X, Z=self.profile.transform(X), proba=answers.proba,
                      decision=answers.decision)
        precomputed = {}
        for detector in self._per_query:
            try:
                precomputed[detector.name] = np.asarray(detector.pvalues(batch),
                                                        dtype=np.float64)
            except Exception:  # the per-client path retries it, counts and logs the error
                pass
        uniques, first, inverse = np.unique(client_ids, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniques)))
        verdicts: dict[str, Verdict] = {}
        for u in np.argsort(first, kind="stable"):
            part = order[(bounds[u - 1] if u else 0):bounds[u]]
            cid = str(uniques[u])
            verdicts[cid] = self._observe_rows(
                cid, X[part], answers.take(part), hashes[part],
                {name: p[part] for name, p in precomputed.items()})
        return verdicts

    def _hashes(self, X: np.ndarray) -> np.ndarray:
        if self.digest_key is None:
            self.digest_key = new_digest_key()
        return row_hashes(X, self.digest_key)

    def _observe_rows(self, client_id, X, answers: Answers, hashes,
                      precomputed=None, group: str | None = None) -> Verdict:
        if group is None and self.group_of is not None:
            group = checked_group(self.group_of(client_id))
        kept: list[str | None] = [None]
        member: dict[str, np.ndarray] = {}
        verdict = self._observe_key(client_id, X, answers, hashes, precomputed,
                                    group=group, kept=kept, member=member)
        group_id = kept[0]
        if group_id is not None:
            group_verdict = self._observe_key(GROUP_PREFIX + group_id, X, answers, hashes,
                                              group_pvalues=member)
            verdict.group = group_verdict.group_entry(group_id)
        return verdict

    def _observe_key(self, key: str, X, answers: Answers, hashes, precomputed=None,
                     group: str | None = None, kept: list | None = None,
                     member: dict | None = None, group_pvalues: dict | None = None) -> Verdict:
        """Update ``key``'s state with these rows; a client's first ``group`` is stored in its
        state, and the group it keeps is put in ``kept[0]``. ``member`` receives the client's
        per-query p-values (see :meth:`_update`); ``group_pvalues`` are a member's, for a
        group's state."""
        done = []

        def compute(blob):  # the store may rerun it (optimistic stores): no side effects
            state = self._decoded.take(key, blob) or self.layout.load(key, blob)
            if state.group is None and group is not None:
                state.group = group
            done[:] = [state, self._update(state, X, answers, hashes, precomputed,
                                           member=member, group_pvalues=group_pvalues)]
            return state.to_record()

        written = self.store.update(key, compute)  # detectors outside the store's lock
        if kept is not None:
            kept[0] = done[0].group
        verdict = self._verdict(key, *done)
        if written is not None:
            self._decoded.put(key, written, done[0])
        return verdict

    def _pvalues(self, detectors, batch: Batch, state: ClientState, precomputed=None,
                 rows=None) -> dict:
        """``detectors``' p-values for ``batch`` (taken from ``precomputed`` at ``rows`` of
        the call where a log chunk's were computed at once); a failing detector gives 1.0
        (no evidence), counted and logged."""
        pvalues = {}
        for detector in detectors:
            if precomputed is not None and detector.name in precomputed:
                pvalues[detector.name] = precomputed[detector.name][rows]
                continue
            try:
                pvalues[detector.name] = np.asarray(
                    detector.pvalues(batch, state.detector_state.get(detector.name)),
                    dtype=np.float64)
            except Exception:  # a broken detector must never break serving
                self.detector_errors[detector.name] += 1
                log.exception("detector %s failed; its evidence is skipped", detector.name)
                pvalues[detector.name] = np.ones(len(batch.X))
        return pvalues

    def _update(self, state: ClientState, X, answers: Answers, hashes, precomputed=None,
                member: dict | None = None, group_pvalues: dict | None = None) -> ScoredRows:
        """Advance the client's state by rows ``X``: retries drop out, distinct rows are
        mapped to evidence units, and each new unit's p-values enter the window tests.

        Group evidence: ``member`` (a dict, filled here) receives this client's per-query
        p-values, one per row of the call (1 for its retries), each already judged with the
        client's own rounding and unit-change nulls. A group's state is advanced with
        ``group_pvalues`` (a member's) instead of its own per-query p-values, and its
        member-order-dependent detectors (chain, label_change, block: they would compare
        queries of different members) give no evidence (p = 1), so a group of benign
        clients is a stream of valid per-query p-values however its members interleave."""
        n = len(X)
        duplicate = duplicate_mask(hashes, state.hashes)
        if duplicate.any():
            distinct = np.flatnonzero(~duplicate)
            X, known = X[distinct], answers.take(distinct)
        else:  # the usual case: no retries, no copies
            distinct, known = np.arange(n), answers
        m = len(distinct)
        Z = self.profile.transform(X)
        labels = answers.labels
        codes = self._label_codes(known) if self._codes_labels and m else None
        queries = Batch(X=X, Z=Z, proba=known.proba, decision=known.decision, labels=codes)
        # per-query detectors first: their p-values also tell the units which queries escalate
        if group_pvalues is None:
            per_query = self._pvalues(self._per_query, queries, state, precomputed, distinct)
            per_query = self.rounding.adjust(per_query, X, queries)  # rounded rows' null
            per_query = self.scaling.adjust(  # and taken back by the client's unit change
                per_query, X, state.detector_state[self.scaling.name])
        else:  # a group: its member's p-values, judged with the member's own nulls
            per_query = {name: p[distinct] for name, p in group_pvalues.items()}
        if member is not None:
            member.clear()
            for name, p in per_query.items():
                member[name] = np.ones(n)
                member[name][distinct] = p
        smallest = reduce(np.minimum, per_query.values()) if per_query and m else None
        leaders = state.detector_state[self.units.name]["leaders"]  # before this call's units
        assigned = self.units.assign(Z, state.detector_state[self.units.name], smallest)
        if assigned.new_unit.all():  # every distinct query starts a unit (the usual case)
            starts, units = np.arange(m), distinct
            batch = Batch(X, Z, known.proba, assigned.nearest_leader, known.decision,
                          leaders=leaders, labels=codes)
            pvalues = dict(per_query)
        else:
            starts = np.flatnonzero(assigned.new_unit)  # positions among the distinct rows
            units = distinct[starts]  # rows of this call that start a new unit
            batch = queries.take(starts)
            batch = Batch(batch.X, batch.Z, batch.proba, assigned.nearest_leader[starts],
                          batch.decision, leaders=leaders, labels=batch.labels)
            pvalues = {name: p[starts] for name, p in per_query.items()}
        if group_pvalues is None:
            pvalues.update(self._pvalues(self._per_unit, batch, state))
        else:
            pvalues.update({d.name: np.ones(len(batch.X)) for d in self._per_unit})
        new_unit = np.zeros(n, dtype=bool)
        new_unit[units] = True
        scored = score_rows(Windows(state.windows, state.window_meta), pvalues, new_unit,
                            self.tests, state.score, state.n_units, self.threshold,
                            state.flagged, in_place=True)
        state.windows, state.window_meta = scored.windows.rings, scored.windows.meta
        self._note_evidence(state, batch, pvalues)

        if self.exposure is not None and m:
            self._expose(state, Z, labels, distinct, n)
        if state.prada is not None and labels is not None and m:
            index = state.n_queries + distinct
            state.prada.update(Z, np.asarray(labels)[distinct], self.config.prada_delta,
                               index)
        if scored.flag is not None:
            state.flag_at = state.n_queries + scored.flag.row
            test = self.tests[scored.flag.test]
            state.flag_reason = flag_reason(
                scored.flag, test, self.detectors[self.detector_index(test.detector)])
            state.flag_test = self.tests[scored.flag.test].key
        row_scores = scored.row_scores
        state.n_queries += n
        state.n_distinct += m
        state.n_units += len(units)
        state.score = float(row_scores[-1]) if n else state.score
        state.peak_score = max(state.peak_score, float(row_scores.max(initial=0.0)))
        memory = self.config.dedup_memory
        if memory:
            state.hashes = np.concatenate([state.hashes, hashes[distinct]])[
                len(state.hashes) + m - memory:]
        state.history = np.concatenate([state.history, row_scores.astype(np.float32)])[
            -self.config.history:]
        return scored

    def _note_evidence(self, state: ClientState, batch: Batch, pvalues: dict) -> None:
        """The latest unit's per-query score, and which detectors have had evidence."""
        if len(batch.X) == 0:
            return
        smallest = reduce(np.minimum, pvalues.values()) if pvalues else np.ones(1)
        scores = -np.log10(np.maximum(smallest, MIN_PVALUE))
        state.query_score = float(scores[-1])
        state.peak_query_score = max(state.peak_query_score, float(scores.max()))
        if state.evidence_seen == (1 << len(self.detectors)) - 1:
            return  # every detector has had evidence already
        for i, detector in enumerate(self.detectors):
            has = getattr(detector, "has_evidence", None)
            if has is None or has(batch):
                state.evidence_seen |= 1 << i

    def _expose(self, state: ClientState, Z: np.ndarray, labels, distinct: np.ndarray,
                n_rows: int) -> None:
        if labels is None:
            return
        answers = np.asarray(labels)[distinct]
        if not self.exposure.regression:
            answers = self._answer_codes.of(answers)
        self.exposure.update(Z, answers, state.detector_state[self.exposure.name])
        limit = self.config.exposure_limit
        if limit is not None and state.exposure_at is None:
            exposure = self.exposure.exposure(state.detector_state[self.exposure.name])
            if exposure is not None and exposure >= limit:
                state.exposure_at = state.n_queries + n_rows

    # ----------------------------------------------------------------- verdicts
    def detector_index(self, name: str) -> int:
        """Position of detector ``name`` in :attr:`detectors`."""
        return next(i for i, d in enumerate(self.detectors) if d.name == name)

    def _verdict(self, client_id: str, state: ClientState,
                 scored: ScoredRows | None = None) -> Verdict:
        exposure = None
        if self.exposure is not None and self.exposure.name in state.detector_state:
            exposure = self.exposure.exposure(state.detector_state[self.exposure.name])
        prada = None
        if state.prada is not None:
            prada = {"flagged": state.prada.flag_at is not None, "flag_at": state.prada.flag_at,
                     "score": state.prada.score}
        # the explanation is built when read, from a snapshot of what it needs
        meta, evidence_seen, history = state.window_meta.copy(), state.evidence_seen, state.history
        reason = (state.flag_reason or "flagged") if state.flagged else None
        return Verdict.deferred(
            lambda: explanation(self.tests, self.detectors, meta, evidence_seen,
                                reason, history),
            client_id=client_id, n_queries=state.n_queries, score=state.score,
            peak_score=state.peak_score, threshold=self.threshold,
            flagged=state.flagged, flag_at=state.flag_at,
            flag_detector=state.flag_test.split(".")[0] if state.flag_test else None,
            n_distinct=state.n_distinct, n_units=state.n_units,
            query_score=state.query_score, peak_query_score=state.peak_query_score,
            exposure=exposure, exposure_exceeded=state.exposure_at is not None,
            exposure_at=state.exposure_at, prada=prada,
            row_scores=scored.row_scores if scored is not None else np.zeros(0),
        )

    def verdict(self, client_id: str) -> Verdict:
        """The client's current verdict (an all-clear verdict for an unseen client)."""
        state = self.state(client_id) or self.layout.new_state()
        return self._verdict(client_id, state)

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
        return list(self.store.clients())

    def reset(self, client_id: str) -> None:
        """Forget a client's state, its flag included (an operator action)."""
        self.store.delete(client_id)

    def state(self, client_id: str) -> ClientState | None:
        """A copy of the client's state, decoded from its stored record (``None``: unknown)."""
        blob = self.store.get_blob(check_client_id(client_id))
        return None if blob is None else self.layout.load(client_id, blob)


__all__ = ["GROUP_PREFIX", "FlagStatus", "Monitor", "MonitorCounters"]
