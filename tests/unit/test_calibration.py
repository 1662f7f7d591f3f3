"""Statistical calibration test: the configured level is the benign false-alarm rate.

For each victim — a 4-feature and a 13-feature one among them, and a label-only API whose
monitor has no model — many benign clients of each kind send records the victim never trained
on (the public split, which the profile's calibration never saw): random records, drifted
records (the profile's drift model), rounded records (every value to a few decimals), and the dependence-heavy kinds (a tail record re-sent
with jitter, a what-if sweep, a prototype's neighbourhood). At alpha = 0.01 the fraction of
each kind's clients flagged over its whole stream must be at most 2 * alpha.
"""

from __future__ import annotations

import numpy as np
import pytest

from attacks.benign import (
    drifted_records,
    prototype_user,
    random_records,
    rounded_records,
    tail_jitter,
    what_if,
)
from monitor import Monitor, MonitorConfig

N_CLIENTS, N_QUERIES, ALPHA = 100, 200, 0.01
KINDS = {
    "random": random_records,
    "drift": drifted_records,
    "rounded": rounded_records,
    "tail-jitter": tail_jitter,
    "what-if": what_if,
    "prototype": prototype_user,
}
CASES = [("cancer-logreg", "proba"), ("wine-tree", "proba"), ("iris-knn", "proba"),
         ("digits-mlp", "proba"), ("cancer-logreg", "label")]


def benign_log(victim, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Client ids and rows of :data:`N_CLIENTS` seeded benign clients of ``kind``."""
    rng = np.random.default_rng(2024)
    streams = [KINDS[kind](victim, N_QUERIES, rng, client_id=f"{kind}-{i}")
               for i in range(N_CLIENTS)]
    ids = np.concatenate([[s.client_id] * len(s.X) for s in streams]).astype(object)
    return ids, np.concatenate([s.X for s in streams])


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_benign_kind_is_flagged_at_most_twice_alpha(fitted_victim, name, mode, kind):
    victim, profile = fitted_victim(name)
    ids, X = benign_log(victim, kind)
    if mode == "label":  # a label-only API and no model: margins are unknown
        monitor = Monitor(profile, MonitorConfig(alpha=ALPHA))
        verdicts = monitor.observe_many(ids, X, outputs=victim.model.predict(X))
    else:
        monitor = Monitor(profile, MonitorConfig(alpha=ALPHA), model=victim.model)
        verdicts = monitor.observe_many(ids, X)
    flagged = sum(v.flagged for v in verdicts.values())
    print(f"{name} ({mode}) {kind}: {flagged} of {N_CLIENTS} benign clients flagged")
    assert len(verdicts) == N_CLIENTS
    assert flagged / N_CLIENTS <= 2 * ALPHA
