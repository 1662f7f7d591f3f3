"""The one offline replay loop: a query log through a :class:`~monitor.Monitor`.

``analyze`` (verdict tables), ``tune`` (every client's scores after each query) and ``report``
(timelines) all replay logs with :func:`replay_log`, so they see exactly the verdicts the
online monitor would have given for the same streams.

Which API outputs are fed to the monitor (the same rule for every client):

1. probabilities ``p_0..p_{k-1}`` when the log has them;
2. otherwise, when the monitor has no model, the returned labels ``pred``;
3. otherwise nothing: the monitor recomputes what it needs from its model.

Rows go to ``monitor.observe_many`` in chunks of ``batch_rows`` (each client's rows in query
order), which gives the same verdict as observing every client row by row.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from monitor import Monitor, Profile
>>> from monitor.logs import QueryLog
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
>>> model = LogisticRegression().fit(X, y)
>>> log = QueryLog(client_ids=np.array(["a"] * 5 + ["b"] * 5, dtype=object),
...                order=np.arange(10.0), order_column="seq", X=rng.normal(size=(10, 2)))
>>> replay = replay_log(log, Monitor(Profile(seed=0).fit(model, X, y), model=model),
...                     keep_scores=True, horizon=3)
>>> {c: (v.n_queries, len(replay.scores[c])) for c, v in replay.verdicts.items()}
{'a': (3, 3), 'b': (3, 3)}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.logs import QueryLog
from monitor.verdict import Verdict

DEFAULT_BATCH_ROWS = 50_000


@dataclass
class Replay:
    """The outcome of replaying a log: each client's final verdict (in client order) and,
    when asked, its overall score after each of its queries."""

    verdicts: dict[str, Verdict]
    scores: dict[str, np.ndarray] | None = None


def choose_outputs(log: QueryLog, has_model: bool) -> tuple[str, np.ndarray | None]:
    """``(kind, outputs)`` per the rule in the module docstring; kind is proba/labels/none."""
    if log.proba is not None:
        return "proba", log.proba
    if log.labels is not None and not has_model:
        return "labels", log.labels
    return "none", None


def within_horizon(log: QueryLog, horizon: int | None) -> np.ndarray | None:
    """Rows among each client's first ``horizon`` queries (``None``: every row)."""
    if horizon is None:
        return None
    keep = np.zeros(log.n_rows, dtype=bool)
    for _, rows in log.client_slices():
        keep[rows.start:min(rows.stop, rows.start + horizon)] = True
    return keep


def replay_log(log: QueryLog, monitor, *, batch_rows: int = DEFAULT_BATCH_ROWS,
               horizon: int | None = None, keep_scores: bool = False,
               on_progress: Callable[[int, int], None] | None = None,
               groups: np.ndarray | None = None) -> Replay:
    """Replay ``log`` through ``monitor`` (a fresh one: every client starts unseen).

    ``horizon`` replays only each client's first ``horizon`` queries; ``keep_scores`` keeps
    every client's overall score after each query; ``on_progress(rows_done, rows_total)`` is
    called after each chunk. ``groups`` (one group id per row, for a monitor built with
    ``group_of``) replays each group's rows in the log's order across its clients, as the
    online monitor saw them, so group verdicts equal the online ones.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    if groups is not None:
        return _replay_in_group_order(log, monitor, groups, keep_scores, on_progress)
    _, outputs = choose_outputs(log, getattr(monitor, "model", None) is not None)
    keep = within_horizon(log, horizon)
    index = np.arange(log.n_rows) if keep is None else np.flatnonzero(keep)
    total = len(index)
    latest: dict[str, Verdict] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, batch_rows):
        part = index[start:start + batch_rows]
        verdicts = monitor.observe_many(log.client_ids[part], log.rows(part),
                                        None if outputs is None else outputs[part])
        latest.update(verdicts)
        if keep_scores:
            for client, verdict in verdicts.items():
                parts.setdefault(client, []).append(np.asarray(verdict.row_scores, np.float64))
        if on_progress is not None:
            on_progress(min(start + batch_rows, total), total)
    verdicts = {client: latest.get(client) or monitor.verdict(client)
                for client, _ in log.client_slices()}
    scores = None
    if keep_scores:
        scores = {client: np.concatenate(parts[client]) if client in parts else np.zeros(0)
                  for client in verdicts}
    return Replay(verdicts=verdicts, scores=scores)


def _replay_in_group_order(log: QueryLog, monitor, groups: np.ndarray, keep_scores: bool,
                           on_progress) -> Replay:
    """Every group's rows in order (ties: client id, then file order), one ``observe`` per run
    of consecutive rows of one client: each client's and each group's state sees its own rows
    in order."""
    _, outputs = choose_outputs(log, getattr(monitor, "model", None) is not None)
    codes, _ = pd.factorize(np.asarray(groups, dtype=object), sort=True)
    order = np.lexsort((np.arange(log.n_rows), log.order, codes))
    ids = log.client_ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    parts: dict[str, list[np.ndarray]] = {}
    latest: dict[str, Verdict] = {}
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        rows = order[start:end]
        client = str(ids[start])
        verdict = monitor.observe(client, log.rows(rows),
                                  None if outputs is None else outputs[rows])
        latest[client] = verdict
        if keep_scores:
            parts.setdefault(client, []).append(np.asarray(verdict.row_scores, np.float64))
        if on_progress is not None and (i % 1000 == 0 or end == len(order)):
            on_progress(end, len(order))
    verdicts = {client: latest.get(client) or monitor.verdict(client)
                for client, _ in log.client_slices()}
    scores = None
    if keep_scores:
        scores = {c: np.concatenate(parts[c]) if c in parts else np.zeros(0) for c in verdicts}
    return Replay(verdicts=verdicts, scores=scores)


__all__ = ["DEFAULT_BATCH_ROWS", "Replay", "choose_outputs", "replay_log", "within_horizon"]
