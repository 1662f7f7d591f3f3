"""Detection on victim families and benign users the detectors were never tuned on.

The reference victims (``victims/``) and benign kinds (``attacks/benign.py``) are what the
detectors were developed against; this script asks how the default monitor does on six other
model families and datasets, built here and nowhere else, with benign users written here
independently of ``attacks/benign.py``:

* victims: Gaussian naive Bayes on wine; gradient boosting on a synthetic table of Poisson
  counts, log-normal amounts and normal scores; extra trees on digits (integer pixels); an MLP
  on two-feature moons; an RBF SVM on breast cancer; a random forest on a 4-class synthetic
  table. Splits 50% train, 20% calibration, 30% public, stratified.
* benign users (each client 200 queries of public records): random records; sorted by one
  feature; 80% one class; re-measured (2% noise); rounded to integers, to 1 and to 2 decimals;
  to 3 significant digits; retried (each record 1-3 times); a small working set (20 records
  re-sent); browsing neighbourhoods (5 of a record's 8 nearest public records); scaled by one
  factor per client in [0.95, 1.05] and in [0.85, 1.15]; cut (truncated toward zero) to
  integers and to 1 decimal.
* attacks: every registry attack that applies to any classifier (``attacks.registry``), at its
  default budget, seed 0.

Run:  .venv/bin/python benchmarks/unseen_victims.py           (about 10 minutes on 2 cores)
      .venv/bin/python benchmarks/unseen_victims.py --quick   (3 victims, 15 clients per kind)
Writes benchmarks/results/unseen_victims.{json,md} (``--out DIR`` elsewhere).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ALPHA = 0.01
N_QUERIES = 200


def _heavy_table(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Counts, amounts and scores: the skewed, discrete columns real tables have."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.uniform(0.5, 6, 4), (n, 4)).astype(float)
    amounts = rng.lognormal(0, 1.2, (n, 3))
    scores = rng.normal(0, 1, (n, 3))
    z = 0.4 * counts[:, 0] - 0.3 * counts[:, 2] + 0.8 * np.log(amounts[:, 0]) + scores[:, 1]
    return np.hstack([counts, amounts, scores]), (z + rng.logistic(0, 1, n) > 0.5).astype(int)


def _svm():
    """An RBF SVM with Platt-scaled probabilities (sigmoid calibration on held-out folds)."""
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(
        SVC(kernel="rbf", C=3.0, gamma="scale"), method="sigmoid", cv=3))


VICTIMS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, object]]] = {
    "wine-gnb": lambda: (*datasets.load_wine(return_X_y=True), GaussianNB()),
    "counts-gbm": lambda: (*_heavy_table(), GradientBoostingClassifier(random_state=0)),
    "digits-extratrees": lambda: (*datasets.load_digits(return_X_y=True),
                                  ExtraTreesClassifier(200, random_state=0)),
    "moons-mlp": lambda: (*datasets.make_moons(2000, noise=0.25, random_state=0),
                          MLPClassifier((32, 32), max_iter=800, random_state=0)),
    "cancer-svc": lambda: (*datasets.load_breast_cancer(return_X_y=True), _svm()),
    "synth20-forest": lambda: (*datasets.make_classification(
        4000, 20, n_informative=6, n_redundant=4, n_classes=4, n_clusters_per_class=2,
        random_state=3), RandomForestClassifier(150, random_state=0)),
}
QUICK_VICTIMS = ("wine-gnb", "counts-gbm", "moons-mlp")


def build_victim(name: str, output_mode: str = "proba"):
    """A :class:`victims.registry.Victim` of family ``name`` (trained here)."""
    from victims.registry import OUTPUT_MODES, Victim

    X, y, model = VICTIMS[name]()
    X = np.asarray(X, dtype=float)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=0.5, stratify=y,
                                                        random_state=0)
    X_cal, X_public, y_cal, y_public = train_test_split(X_rest, y_rest, train_size=0.4,
                                                        stratify=y_rest, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    return Victim(name=name, model=model, output_mode=output_mode,
                  feature_names=[f"f_{j}" for j in range(X.shape[1])],
                  classes=np.asarray(model.classes_), X_train=X_train, y_train=y_train,
                  X_cal=X_cal, y_cal=y_cal, X_public=X_public, y_public=y_public,
                  lower=X.min(axis=0), upper=X.max(axis=0), output_modes=OUTPUT_MODES)


def benign_users(public: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 n: int = N_QUERIES) -> dict[str, Callable[[], np.ndarray]]:
    """Benign kind -> a function drawing one client's rows (see the module docstring)."""
    std = public.std(axis=0) + 1e-12

    def records() -> np.ndarray:
        return public[rng.integers(0, len(public), n)]

    def sorted_by_feature() -> np.ndarray:
        X = records()
        return X[np.argsort(X[:, rng.integers(public.shape[1])], kind="stable")]

    def mostly_one_class() -> np.ndarray:
        pool = np.flatnonzero(labels == rng.choice(np.unique(labels)))
        own = pool[rng.integers(0, len(pool), n)]
        return public[np.where(rng.random(n) < 0.8, own, rng.integers(0, len(public), n))]

    def significant(X: np.ndarray, digits: int = 3) -> np.ndarray:
        step = 10.0 ** (np.floor(np.log10(np.abs(X) + 1e-300)) - (digits - 1))
        return np.where(X == 0, 0.0, np.round(X / step) * step)

    def browsing() -> np.ndarray:
        centres = public[rng.integers(0, len(public), n // 5 + 1)]
        d = (((centres[:, None, :] - public[None, :, :]) / std) ** 2).sum(axis=2)
        near = np.argsort(d, axis=1)[:, :8]
        picks = np.stack([rng.permutation(row)[:5] for row in near])
        return public[picks.ravel()][:n]

    return {
        "random": records,
        "sorted": sorted_by_feature,
        "one-class-80%": mostly_one_class,
        "re-measured": lambda: records() + rng.normal(0, 0.02, (n, public.shape[1])) * std,
        "integers": lambda: np.round(records()),
        "1-decimal": lambda: np.round(records(), 1),
        "2-decimals": lambda: np.round(records(), 2),
        "3-significant": lambda: significant(records()),
        "retried": lambda: np.repeat(records(), rng.integers(1, 4, n), axis=0)[:n],
        "working-set": lambda: records()[:20][rng.integers(0, 20, n)],
        "browsing": browsing,
        "scaled-5%": lambda: records() * rng.uniform(0.95, 1.05),
        "scaled-15%": lambda: records() * rng.uniform(0.85, 1.15),
        "cut-to-integers": lambda: np.trunc(records()),
        "cut-to-1-decimal": lambda: np.trunc(np.round(records() * 10, 6)) / 10,
    }


def benign_rows(victim, profile, n_clients: int, seed: int = 7) -> list[dict]:
    """One row per benign kind: clients flagged of ``n_clients`` (the default monitor)."""
    from monitor import Monitor, MonitorConfig

    rng = np.random.default_rng(seed)
    rows = []
    for kind, draw in benign_users(victim.X_public, victim.model.predict(victim.X_public),
                                   rng).items():
        streams = [draw() for _ in range(n_clients)]
        ids = np.concatenate([[f"{kind}-{i}"] * len(s) for i, s in enumerate(streams)])
        X = np.concatenate(streams)
        monitor = Monitor(profile, MonitorConfig(alpha=ALPHA),
                          model=victim.model if victim.output_mode != "label" else None)
        verdicts = monitor.observe_many(ids.astype(object), X, outputs=victim.answer(X))
        flagged = [v for v in verdicts.values() if v.flagged]
        rows.append({"victim": victim.name, "mode": victim.output_mode, "kind": kind,
                     "clients": n_clients, "flagged": len(flagged),
                     "reason": flagged[0].reason if flagged else ""})
    return rows


def attack_rows(victim, profile) -> list[dict]:
    """One row per generic attack: queries sent and queries to flag (NaN: not flagged)."""
    from attacks.registry import ATTACKS, run_attack
    from monitor import Monitor, MonitorConfig

    rows = []
    for name, spec in ATTACKS.items():
        if "cancer-logreg" not in spec.applies_to or victim.output_mode not in spec.output_modes:
            continue  # victim-specific attacks (equation solving, path finding) need their family
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_attack(name, victim, seed=0)
        monitor = Monitor(profile, MonitorConfig(alpha=ALPHA),
                          model=victim.model if victim.output_mode != "label" else None)
        X = result.stream.X
        verdict = monitor.observe("attack", X, outputs=victim.answer(X))
        rows.append({"victim": victim.name, "mode": victim.output_mode, "attack": name,
                     "queries": len(X), "flag_at": verdict.flag_at})
    return rows


def _table(frame: pd.DataFrame, index: str, value: str) -> str:
    """A markdown table of ``value`` by ``index`` (rows) and victim/mode (columns)."""
    wide = frame.assign(column=frame.victim + " " + frame["mode"]).pivot(
        index=index, columns="column", values=value)
    wide = wide.reindex(index=frame[index].unique(), columns=(frame.victim + " " + frame["mode"]
                                                              ).unique())
    cells = wide.astype(object).where(wide.notna(), "")
    lines = ["| " + " | ".join([index, *cells.columns]) + " |", "|---" * (1 + cells.shape[1]) + "|"]
    lines += ["| " + " | ".join([str(k), *map(str, row)]) + " |" for k, row in cells.iterrows()]
    return "\n".join(lines)


def markdown(benign: pd.DataFrame, attacks: pd.DataFrame, command: str, seconds: float) -> str:
    """The results as markdown: benign clients flagged per kind, then queries to flag."""
    caught = attacks.assign(cell=[("-" if pd.isna(f) else str(int(f))) + f" / {q}"
                                  for f, q in zip(attacks.flag_at, attacks.queries, strict=True)])
    rate = attacks.groupby(["victim", "mode"], sort=False).flag_at.apply(
        lambda s: f"{s.notna().sum()}/{len(s)}")
    n = int(benign.clients.iloc[0])
    return "\n".join([
        "# Unseen victims: the default monitor on families it was never tuned on", "",
        f"Command: `{command}` ({seconds:.0f} s). alpha = {ALPHA}; each benign kind is "
        f"{n} clients of {N_QUERIES} queries per victim and output mode.", "",
        f"## Benign clients flagged (of {n} per cell)", "",
        _table(benign, "kind", "flagged"), "",
        f"Total: {int(benign.flagged.sum())} of {int(benign.clients.sum())} benign clients.", "",
        "## Attacks: queries to flag / queries sent ('-' = not flagged)", "",
        _table(caught, "attack", "cell"), "",
        "Attacks flagged per victim: " + ", ".join(f"{v} {m} {r}" for (v, m), r in rate.items()),
        "",
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 victims, 15 clients per kind")
    parser.add_argument("--victims", default=None, help="comma-separated subset of "
                        + ", ".join(VICTIMS))
    parser.add_argument("--modes", default="proba,label", help="output modes (proba, label)")
    parser.add_argument("--clients", type=int, default=None, help="benign clients per kind")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from monitor import Profile

    names = args.victims.split(",") if args.victims else \
        list(QUICK_VICTIMS if args.quick else VICTIMS)
    unknown = sorted(set(names) - set(VICTIMS))
    if unknown:
        parser.error(f"unknown victim(s) {', '.join(unknown)}; choose from {', '.join(VICTIMS)}")
    n_clients = args.clients or (15 if args.quick else 40)
    started = time.perf_counter()
    benign, attacks = [], []
    for name in names:
        for mode in args.modes.split(","):
            victim = build_victim(name, mode)
            profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                          X_cal=victim.X_cal, y_cal=victim.y_cal)
            benign += benign_rows(victim, profile, n_clients)
            attacks += attack_rows(victim, profile)
            print(f"{name} {mode}: {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    command = "benchmarks/unseen_victims.py " + " ".join(argv if argv is not None else
                                                          __import__("sys").argv[1:])
    benign_frame, attack_frame = pd.DataFrame(benign), pd.DataFrame(attacks)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(benign_frame, attack_frame, command.strip(), seconds)
    (args.out / "unseen_victims.md").write_text(text)
    result = {"benign": benign, "attacks": attacks, "seconds": seconds}
    (args.out / "unseen_victims.json").write_text(json.dumps(result, indent=1, default=str))
    print(text)
    return result


if __name__ == "__main__":
    main()
