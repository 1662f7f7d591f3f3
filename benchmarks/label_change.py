"""Measure label_change (issue 25): benign flag rates at alpha 0.05 and a label-only line search between real records.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/label_change.py cancer-logreg,wine-tree,iris-knn density,local_density,boundary,chain,label_change
"""
import sys
import time
import warnings

import numpy as np

from attacks.benign import (
    drifted_records,
    full_sweep,
    one_class_user,
    prototype_user,
    random_records,
    sorted_batch,
    tail_jitter,
    what_if,
)
from attacks.oracle import Oracle
from attacks.retraining import line_search_retraining
from monitor import Monitor, MonitorConfig, Profile
from victims import load_victim

warnings.simplefilter("ignore")
names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["cancer-logreg"]
dets = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("label_change",)
ALPHA = 0.05
KINDS = dict(random=random_records, drift=drifted_records, jitter=tail_jitter, whatif=what_if,
             proto=prototype_user, sorted=sorted_batch, oneclass=one_class_user, sweep=full_sweep)
for name in names:
    v = load_victim(name)
    t = time.time()
    prof = Profile().fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal)
    cal = prof.calibration_["label_change"]["statistic"]
    print(name, "fit", round(time.time()-t, 1), "s; cal n", len(cal), "quantiles of distance",
          np.round(-np.quantile(cal[np.isfinite(cal)], [0.99, 0.95, 0.5]), 3), "radius", round(prof.unit_radius(), 3))
    for mode in ("label", "proba"):
        rng = np.random.default_rng(7)
        for kind, fn in KINDS.items():
            streams = [fn(v, 200, rng, client_id=f"{kind}-{i}") for i in range(100)]
            ids = np.concatenate([[s.client_id] * len(s.X) for s in streams]).astype(object)
            X = np.concatenate([s.X for s in streams])
            mon = Monitor(prof, MonitorConfig(alpha=ALPHA, detectors=dets))
            out = v.model.predict(X) if mode == "label" else v.model.predict_proba(X)
            verdicts = mon.observe_many(ids, X, outputs=out)
            print(f"  {mode} benign {kind}: {sum(x.flagged for x in verdicts.values())}/100")
        # attack: line search between real records, labels only
        flags = []
        for seed in range(10):
            r = np.random.default_rng(seed)
            vl = load_victim(name, output_mode="label")
            anchors = v.X_public[r.choice(len(v.X_public), min(100, len(v.X_public)), replace=False)]
            lo, hi = v.X_public.min(0), v.X_public.max(0)
            o = Oracle(vl.answer, 1000)
            # all starting points are real records (init_fraction small; anchors fill start)
            res = line_search_retraining(o, (lo, hi), 1000, r, v.classes, anchors=anchors, steps=8,
                                         init_fraction=0.1)
            mon = Monitor(prof, MonitorConfig(alpha=ALPHA, detectors=dets))
            X = res.stream.X
            out = v.model.predict(X) if mode == "label" else v.model.predict_proba(X)
            vd = mon.observe(f"a{seed}", X, outputs=out)
            flags.append(vd.flag_at)
        print(f"  {mode} line-search flag_at:", flags)
