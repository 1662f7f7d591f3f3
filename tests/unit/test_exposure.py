"""Exposure accounting: how much of the victim a client's answers reveal (a 1-NN shadow copy on
the profile's reference subset), the operator's exposure limit, and its actions over HTTP."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import client, running

from monitor import Monitor, MonitorConfig
from monitor.serving import ServingConfig
from monitor.stores import open_store
from victims.app import build_victim_app


def _uniform(victim, n, seed=0):
    return np.random.default_rng(seed).uniform(victim.lower, victim.upper,
                                               (n, victim.n_features))


def test_exposure_grows_with_real_records_and_not_with_retries(fitted_victim):
    victim, profile = fitted_victim("digits-mlp")
    mon = Monitor(profile, model=victim.model)
    assert mon.verdict("nobody").exposure is None
    few = mon.observe("thief", victim.X_public[:5]).exposure
    many = mon.observe("thief", victim.X_public[5:400]).exposure
    assert few < 0.5 < 0.8 < many <= 1.0
    retries = mon.observe("retrier", np.repeat(victim.X_public[:1], 300, axis=0)).exposure
    assert retries < 0.2  # one answer: a constant copy of one digit class
    state = mon.state("thief").detector_state["exposure"]
    assert sum(a.nbytes for a in state.values()) <= 4 * len(profile.exposure_["points"])


def test_exposure_tracks_the_fidelity_a_copy_reaches(fitted_victim):
    """An in-distribution thief's exposure against the agreement of a 1-NN copy of its answers
    on the public records (the quantity exposure estimates on the held-out subset)."""
    from sklearn.neighbors import KNeighborsClassifier

    victim, profile = fitted_victim("cancer-logreg")
    mon = Monitor(profile, model=victim.model)
    rng = np.random.default_rng(0)
    pool = victim.X_public[rng.permutation(len(victim.X_public))]
    estimated, actual = [], []
    for n in (1, 3, 10, 30, 100):
        mon.reset("thief")
        estimated.append(mon.observe("thief", pool[:n]).exposure)
        Z = profile.transform(pool[:n])
        copy = KNeighborsClassifier(1).fit(Z, victim.model.predict(pool[:n]))
        actual.append(np.mean(copy.predict(profile.transform(victim.X_public))
                              == victim.model.predict(victim.X_public)))
    assert np.corrcoef(estimated, actual)[0, 1] > 0.9
    assert np.max(np.abs(np.subtract(estimated, actual))) < 0.15


def test_exposure_limit_is_safety_state(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    store = open_store("memory://")
    mon = Monitor(profile, MonitorConfig(exposure_limit=0.9), model=victim.model, store=store)
    verdict = mon.observe("thief", victim.X_public[:150])
    assert verdict.exposure_exceeded and 0 < verdict.exposure_at <= 150
    assert not verdict.flagged  # real records: nothing anomalous, only exposure
    changed = Monitor(profile, MonitorConfig(exposure_limit=0.9, detectors=("density",)),
                      model=victim.model, store=store)
    assert changed.verdict("thief").exposure_exceeded  # survives a detector-list change
    assert changed.flag_status("thief").exposure_exceeded


@pytest.mark.parametrize("action", ["block"])
def test_exposure_actions_apply_over_http(victim, action):
    from victims.app import build_victim_monitor

    monitor = build_victim_monitor(victim, MonitorConfig(exposure_limit=0.97))
    app = build_victim_app(victim, monitor, ServingConfig(
        salt="e", actions=["log"], exposure_actions=["log", action]), admin_token="t")
    statuses = []
    with running(app) as base, client(base, "thief") as c:
        for start in range(0, 170, 10):
            rows = victim.X_public[start:start + 10].tolist()
            statuses.append(c.post("/predict", json={"instances": rows}).status_code)
        listed = c.get("/monitor/clients", headers={"Authorization": "Bearer t"}).json()
    assert 403 in statuses and statuses[0] == 200
    blocked = statuses.index(403)
    assert all(s == 403 for s in statuses[blocked:])  # from the limit on, every request
    row = listed["clients"][0]
    assert row["exposure_exceeded"] and not row["flagged"] and row["exposure"] >= 0.97
