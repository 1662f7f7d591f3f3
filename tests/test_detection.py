"""Detection floors on seeded streams: every victim, the demo's benign and attack clients.

The figures (queries-to-flag, PRADA beside ours) are printed with ``-s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from attacks.benign import benign_streams
from attacks.synthetic import demo_clients
from monitor import Monitor, MonitorConfig
from victims import VICTIMS

KNOWN_MISSES = {
    # JbDA's sign steps keep its queries near its 15 public seeds: about half of them lie
    # beyond the 90th percentile of real distances to the training data, which the broad
    # density test needs 95 of 200 to call. On the SVM the walk stays just under that
    # within 400 queries (PRADA flags it at ~120, but PRADA also flags drifted benign data).
    ("digits-svm", "jbda"),
    # On wine (13 features, 71 calibration rows) drifted benign data already has ~45% of its
    # queries beyond the 90th percentile of real distances; the profile's drift model makes the
    # broad test tolerate that, and JbDA (~44%) is indistinguishable from drift there.
    ("wine-tree", "jbda"),
}


@pytest.mark.parametrize("name", VICTIMS)
def test_demo_attacks_flagged_and_benign_clients_not(fitted_victim, name):
    victim, profile = fitted_victim(name)
    mon = Monitor(profile, MonitorConfig(prada=True), model=victim.model)
    clients = demo_clients(victim, seed=0, n=400)
    clients += [s for s in benign_streams(victim, seed=1, n=300)]
    results = {}
    for stream in clients:
        verdict = mon.observe(f"{stream.client_id}/{stream.kind}", stream.X)
        results[(stream.kind, stream.client_id)] = (stream.is_attack, verdict)
    lines = []
    for (kind, _), (is_attack, v) in results.items():
        lines.append(f"{name:14s} {kind:20s} attack={is_attack!s:5} flag_at={v.flag_at} "
                     f"prada_flag_at={v.prada['flag_at']}")
    print("\n".join(lines))
    missed = [k for k, (a, v) in results.items()
              if a and not v.flagged and (name, k[0]) not in KNOWN_MISSES]
    false_alarms = [k for k, (a, v) in results.items() if not a and v.flagged]
    assert not false_alarms, false_alarms
    assert not missed, missed
    delays = [v.flag_at for a, v in results.values() if a and v.flagged]
    print(f"{name}: median queries-to-flag {np.median(delays):.0f}")


@pytest.mark.parametrize("name", ["cancer-logreg", "digits-mlp"])
def test_uniform_attacker_flagged_within_fifty_queries(fitted_victim, name):
    victim, profile = fitted_victim(name)
    rng = np.random.default_rng(7)
    X = rng.uniform(victim.lower, victim.upper, size=(200, victim.n_features))
    verdict = Monitor(profile, model=victim.model).observe("u", X)
    assert verdict.flagged and verdict.flag_at < 50
    assert "farther from the training data" in verdict.reason
