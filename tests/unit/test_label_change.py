"""The label_change detector: honest on benign clients, and a floor on label-only bisection.

Benign clients send records the victim never trained on (the public split) in random and in
sorted order, answered with labels only; at alpha = 0.05 at most 2 alpha of them are flagged.
A Lowd-Meek line search between real records of different labels, on a labels-only API, is
flagged by label_change alone within 400 queries in at least 9 of 10 seeded runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from attacks.benign import random_records, sorted_batch
from attacks.oracle import Oracle
from attacks.retraining import line_search_retraining
from monitor import Monitor, MonitorConfig
from monitor.detectors import Batch, LabelChangeDetector
from victims import load_victim

ALPHA, N_CLIENTS, N_QUERIES = 0.05, 100, 200
ONLY = MonitorConfig(alpha=ALPHA, detectors=("label_change",))


@pytest.mark.parametrize("kind", [random_records, sorted_batch], ids=["random", "sorted"])
@pytest.mark.parametrize("name", ["cancer-logreg", "wine-tree"])
def test_benign_label_only_clients_are_flagged_at_most_twice_alpha(fitted_victim, name, kind):
    victim, profile = fitted_victim(name)
    rng = np.random.default_rng(25)
    streams = [kind(victim, N_QUERIES, rng, client_id=f"benign-{i}") for i in range(N_CLIENTS)]
    ids = np.concatenate([[s.client_id] * len(s.X) for s in streams]).astype(object)
    X = np.concatenate([s.X for s in streams])
    verdicts = Monitor(profile, ONLY).observe_many(ids, X, outputs=victim.model.predict(X))
    flagged = sum(v.flagged for v in verdicts.values())
    print(f"{name} {kind.__name__}: {flagged} of {N_CLIENTS} flagged")
    assert flagged / N_CLIENTS <= 2 * ALPHA


def _line_search(victim, seed: int, budget: int = 1000) -> np.ndarray:
    """A label-only line search whose starting points are all real (public) records."""
    rng = np.random.default_rng(seed)
    labels_only = load_victim(victim.name, output_mode="label")
    n_anchors = min(100, len(victim.X_public))
    anchors = victim.X_public[rng.choice(len(victim.X_public), n_anchors, replace=False)]
    box = (victim.X_public.min(axis=0), victim.X_public.max(axis=0))
    result = line_search_retraining(Oracle(labels_only.answer, budget), box, budget, rng,
                                    victim.classes, anchors=anchors, steps=8,
                                    init_fraction=0.1)
    return result.stream.X


def test_label_only_line_search_is_flagged_within_400_queries(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    flag_at = []
    for seed in range(10):
        X = _line_search(victim, seed)
        verdict = Monitor(profile, ONLY).observe(f"attack-{seed}", X,
                                                 outputs=victim.model.predict(X))
        flag_at.append(verdict.flag_at)
    print("flagged at", flag_at)
    assert sum(f is not None and f < 400 for f in flag_at) >= 9


def test_probabilities_and_labels_give_the_same_evidence(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    X = _line_search(victim, 0, budget=300)
    by_labels = Monitor(profile, ONLY).observe("a", X, outputs=victim.model.predict(X))
    by_proba = Monitor(profile, ONLY).observe("a", X, outputs=victim.model.predict_proba(X))
    assert by_labels.flag_at == by_proba.flag_at is not None


def test_no_labels_no_evidence(fitted_victim):
    victim, profile = fitted_victim("cancer-logreg")
    detector = LabelChangeDetector(profile)
    X = victim.X_public[:20]
    state = detector.initial_state()
    Z = profile.transform(X)
    batch = Batch(X=X, Z=Z, proba=None, leaders=Z[:5].astype(np.float16))
    assert (detector.pvalues(batch, state) == 1).all()
    assert not detector.has_evidence(batch)
    assert state["labels"].tolist() == [-1] * 20  # aligned with the tracker's new leaders


def test_a_stream_at_once_equals_it_row_by_row(fitted_victim):
    """Through the monitor (the unit tracker's leaders): one call or one call per row."""
    victim, profile = fitted_victim("wine-tree")
    X = _line_search(victim, 3, budget=300)
    labels = victim.model.predict(X)
    config = MonitorConfig(alpha=ALPHA, detectors=("label_change",), dedup_memory=0)
    at_once = Monitor(profile, config)
    whole = at_once.observe("a", X, outputs=labels)
    by_row = Monitor(profile, config)
    scores = [by_row.observe("a", X[i:i + 1], outputs=labels[i:i + 1]).score
              for i in range(len(X))]
    np.testing.assert_allclose(whole.row_scores, scores, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(at_once.state("a").detector_state["label_change"]["labels"],
                                  by_row.state("a").detector_state["label_change"]["labels"])
    assert whole.flag_at is not None
