"""Calibration of group evidence: a group made of benign clients is flagged at most as often as
one benign client.

Each group is 6 benign clients drawn from the calibration test's kinds plus clients whose
records went through one unit change (x 0.9 or x 1.15, each its own), sending requests of
1-10 rows interleaved in time. The risk: a group's stream mixes members, so detectors that
compare a query with earlier ones (chain, label_change, block) compare different members, and
one unit-change factor estimated over the group fits no member. Group evidence is therefore
each member's per-query p-values, judged with the member's own nulls (monitor.py ``_update``).
The merged stream judged as one client is the control: on wine it is flagged far more than
2 alpha, so the test can fail.
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
from attacks.streams import ClientStream
from monitor import Monitor, MonitorConfig

ALPHA, N_GROUPS, GROUP_SIZE, N_QUERIES = 0.01, 50, 6, 100


def scaled_records(victim, n: int, rng: np.random.Generator, client_id: str) -> ClientStream:
    """Public records that all went through one unit change, at an end of [0.9, 1.15]."""
    X = victim.X_public[rng.integers(0, len(victim.X_public), n)] * rng.choice([0.9, 1.15])
    return ClientStream(client_id, "benign-scaled", False, X)


KINDS = (random_records, drifted_records, rounded_records, tail_jitter, what_if,
         prototype_user, scaled_records)


def group_requests(victim, group: int, rng: np.random.Generator):
    """The requests ``(client_id, rows)`` of one group's members, interleaved in time (each
    member's own in order)."""
    per_member = []
    for i, k in enumerate(rng.integers(0, len(KINDS), GROUP_SIZE)):
        stream = KINDS[k](victim, N_QUERIES, rng, client_id=f"g{group}/m{i}")
        cuts = np.cumsum(rng.integers(1, 11, N_QUERIES))
        per_member.append([(stream.client_id, part)
                           for part in np.split(stream.X, cuts[cuts < N_QUERIES]) if len(part)])
    slots = np.concatenate([[m] * len(reqs) for m, reqs in enumerate(per_member)])
    rng.shuffle(slots)
    at = [0] * len(per_member)
    for m in slots:
        yield per_member[m][at[m]]
        at[m] += 1


def flagged_groups(victim, profile, merged: bool = False) -> int:
    """Groups flagged (``merged``: each group's stream observed as one client instead)."""
    rng = np.random.default_rng(31)
    monitor = Monitor(profile, MonitorConfig(alpha=ALPHA), model=victim.model)
    flagged = 0
    for g in range(N_GROUPS):
        for client_id, rows in group_requests(victim, g, rng):
            if merged:
                verdict = monitor.observe(f"merged-{g}", rows)
            else:
                verdict = monitor.observe(client_id, rows, group=f"g{g}")
        flagged += verdict.flagged if merged else monitor.group_verdict(f"g{g}").flagged
    return flagged


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine-tree", "cancer-logreg", "iris-knn"])
def test_groups_of_benign_clients_are_flagged_at_most_twice_alpha(fitted_victim, name):
    victim, profile = fitted_victim(name)
    flagged = flagged_groups(victim, profile)
    print(f"{name}: {flagged} of {N_GROUPS} benign groups flagged")
    assert flagged / N_GROUPS <= 2 * ALPHA


@pytest.mark.slow
def test_the_merged_stream_as_one_client_is_not_calibrated(fitted_victim):
    victim, profile = fitted_victim("wine-tree")
    flagged = flagged_groups(victim, profile, merged=True)
    print(f"wine-tree: {flagged} of {N_GROUPS} merged streams flagged")
    assert flagged / N_GROUPS > 2 * ALPHA  # what group evidence would be without the fix
