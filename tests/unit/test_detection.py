"""Detection floors on seeded streams: every reference victim, the demo's attackers and every
benign behaviour (the dependence-heavy kinds included).

The figures (queries-to-flag, PRADA beside ours) are printed with ``-s``; the benchmark
(`extraction-monitor bench`) measures every attack family.
"""

from __future__ import annotations

import numpy as np
import pytest

from attacks.benign import benign_streams
from attacks.synthetic import demo_clients
from monitor import Monitor, MonitorConfig
from victims import VICTIMS


@pytest.mark.slow
@pytest.mark.parametrize("name", [*VICTIMS, "iris-knn"])
def test_demo_attacks_flagged_and_benign_clients_not(fitted_victim, name):
    victim, profile = fitted_victim(name)
    mon = Monitor(profile, MonitorConfig(prada=True), model=victim.model)
    clients = demo_clients(victim, seed=0, n=400)
    clients += benign_streams(victim, seed=1, n=300, hard=True)
    results = {}
    for stream in clients:
        verdict = mon.observe(f"{stream.client_id}/{stream.kind}", stream.X)
        results[(stream.kind, stream.client_id)] = (stream.is_attack, verdict)
    lines = []
    for (kind, _), (is_attack, v) in results.items():
        lines.append(f"{name:14s} {kind:20s} attack={is_attack!s:5} flag_at={v.flag_at} "
                     f"prada_flag_at={v.prada['flag_at']} units={v.n_units}")
    print("\n".join(lines))
    missed = [k for k, (a, v) in results.items() if a and not v.flagged]
    false_alarms = [k for k, (a, v) in results.items() if not a and v.flagged]
    assert not false_alarms, false_alarms
    assert not missed, missed
    delays = [v.flag_at for a, v in results.values() if a and v.flagged]
    print(f"{name}: median queries-to-flag {np.median(delays):.0f}")


@pytest.mark.parametrize("name", ["cancer-logreg", "digits-mlp"])
def test_uniform_attacker_flagged_within_ten_queries(fitted_victim, name):
    victim, profile = fitted_victim(name)
    rng = np.random.default_rng(7)
    X = rng.uniform(victim.lower, victim.upper, size=(200, victim.n_features))
    verdict = Monitor(profile, model=victim.model).observe("u", X)
    assert verdict.flagged and verdict.flag_at < 10
    assert "training" in verdict.reason


def test_one_impossible_query_carries_a_high_per_query_score(fitted_victim):
    victim, profile = fitted_victim("digits-mlp")
    impossible = victim.upper * 4.0  # far outside every real input
    verdict = Monitor(profile, model=victim.model).observe("once", impossible[None])
    assert not verdict.flagged  # one query is never enough on its own ...
    assert verdict.peak_query_score >= 5.5  # ... but it says how strong it is (p <= 3e-6)
    ordinary = Monitor(profile, model=victim.model).observe("once", victim.X_public[:1])
    assert ordinary.peak_query_score < 3
