"""The detection benchmark: victims x attacks x benign behaviours x detector configurations.

Every client stream (an attack run or a benign behaviour) is sent ONCE through one fresh
:class:`~monitor.Monitor` per configuration of :data:`CONFIGS` (PRADA baseline, each
calibrated detector alone, the default combined monitor, combined + chain, and the default
detectors without the set-level ``block`` detector, to show what it adds). Per client and
configuration it records whether and when the client was flagged, its peak score, and for
attacks the fidelity (agreement with the victim on its public records) of the surrogate
retrained on the answers received up to and including the flagged query, next to the
fidelity of the attack's final surrogate (what it steals without any monitor).

:func:`run_bench` returns a :class:`BenchResult`; :func:`write_outputs` writes
``per_client.csv``, ``adaptive.csv``, ``summary.md``, ``roc.png`` and ``timelines.png``.

>>> list(CONFIGS)
['prada', 'density', 'boundary', 'chain', 'combined', 'combined+chain', 'combined-block']

A small run (seconds): ``run_bench(BenchSpec(victims=("cancer-logreg",),
attacks=("uniform",), benign_seeds=(0,), adaptive_attacks=()))``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.monitor import Monitor
from monitor.profile import Profile
from monitor.settings import MonitorConfig

CONFIGS: dict[str, MonitorConfig] = {
    "prada": MonitorConfig(detectors=("density",), prada=True),
    "density": MonitorConfig(detectors=("density",)),
    "boundary": MonitorConfig(detectors=("boundary",)),
    "chain": MonitorConfig(detectors=("chain",)),
    "combined": MonitorConfig(),
    "combined+chain": MonitorConfig(detectors=("density", "boundary", "chain")),
    "combined-block": MonitorConfig(detectors=tuple(
        d for d in MonitorConfig().detectors if d != "block")),
}
"""Configuration name -> monitor settings. For ``prada`` only the PRADA baseline's own
alarm (``verdict.prada``) is read; the density detector there is unused ballast."""

COMBINED = "combined"
"""The configuration the adaptive attackers and the acceptance bar are measured against."""

ALL_VICTIMS = ("digits-mlp", "cancer-logreg", "wine-tree", "digits-svm", "iris-knn",
               "synth40-hgb", "cancer-forest")
"""The classification victims (the monitor profiles classifiers)."""
FIDELITY_BAR = 0.9
"""Acceptance: flagged before the surrogate reaches this fraction of its final fidelity."""
BENIGN_BAR = 0.01
"""Acceptance: at most this fraction of benign clients flagged."""
TARGET_FPR = 0.01
"""Benign false-positive rate at which detection rates are read off the ROC."""
PRADA_CHUNK = 10
"""PRADA tests every 10 queries; its peak score is tracked at that granularity."""


@dataclass(frozen=True)
class BenchSpec:
    """What to run. ``attacks=None`` means every registry attack that applies to a victim;
    ``budget=None`` the registry default budget (else ``min(budget, default)``).
    ``mix_ratios`` are fractions of camouflage (public records) in the adaptive stream;
    ``sybil_ks`` the numbers of sybil clients the attack is split over.

    >>> spec = quick_spec(seed=3)
    >>> spec.victims, spec.seeds, len(spec.benign_seeds)
    (('cancer-logreg', 'wine-tree'), (3,), 4)
    """

    victims: tuple[str, ...] = ALL_VICTIMS
    attacks: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    benign_seeds: tuple[int, ...] = tuple(range(12))
    benign_n: int = 300
    budget: int | None = None
    adaptive_attacks: tuple[str, ...] = ("uniform", "jbda")
    mix_ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
    sybil_ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    output_mode: str = "proba"
    jobs: int = 1
    timeline_clients: int = 6
    configs: tuple[str, ...] = tuple(CONFIGS)
    hard_benign: bool = True
    """Also the dependence-heavy benign kinds (tail-record jitter, what-if sweeps, prototypes,
    full sweeps)."""

    def __post_init__(self) -> None:
        unknown = set(self.configs) - set(CONFIGS)
        if unknown:
            raise ValueError(f"unknown configuration(s) {sorted(unknown)}; "
                             f"choose among {', '.join(CONFIGS)}")
        if any(not 0 <= r < 1 for r in self.mix_ratios):
            raise ValueError("mix_ratios must be fractions in [0, 1)")
        if any(k < 1 for k in self.sybil_ks):
            raise ValueError("sybil_ks must be >= 1")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")


def quick_spec(seed: int = 0) -> BenchSpec:
    """Two small victims, six fast attack families at registry budgets: about 30 s of CPU."""
    return BenchSpec(
        victims=("cancer-logreg", "wine-tree"),
        attacks=("uniform", "jbda", "knockoff", "boundary-walk", "equation-solving",
                 "path-finding"),
        seeds=(seed,), benign_seeds=tuple(seed + i for i in range(4)), benign_n=200,
        adaptive_attacks=("uniform",), mix_ratios=(0.0, 0.5, 0.9),
        sybil_ks=(1, 4, 16),
    )


def full_spec(seed: int = 0, jobs: int = 2) -> BenchSpec:
    """All victims and applicable attacks at registry default budgets."""
    return BenchSpec(seeds=(seed,), benign_seeds=tuple(seed + i for i in range(12)), jobs=jobs)


@dataclass
class BenchResult:
    """Per-client rows, adaptive-attacker rows and score timelines of one benchmark run.

    >>> result = BenchResult(quick_spec(), pd.DataFrame(), pd.DataFrame())
    >>> result.timelines, result.seconds
    ([], 0.0)
    """

    spec: BenchSpec
    per_client: pd.DataFrame
    adaptive: pd.DataFrame
    timelines: list[dict] = field(default_factory=list, repr=False)
    seconds: float = 0.0


# --------------------------------------------------------------------------- victims
_VICTIMS: dict[tuple[str, str], tuple[object, Profile]] = {}


def victim_and_profile(name: str, output_mode: str = "proba") -> tuple[object, Profile]:
    """The victim (seed 0) and its fitted profile, cached per process."""
    key = (name, output_mode)
    if key not in _VICTIMS:
        from attacks.registry import load_target

        v = load_target(name, output_mode=output_mode, seed=0)
        profile = Profile().fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal)
        _VICTIMS[key] = (v, profile)
    return _VICTIMS[key]


# --------------------------------------------------------------------------- one stream
def _peak_prada(mon: Monitor, client_id: str, X: np.ndarray) -> tuple[int | None, float]:
    """Feed PRADA one test period at a time; (its flag_at, its peak ``1 - W``)."""
    peak, flag_at = 0.0, None
    for start in range(0, len(X), PRADA_CHUNK):
        prada = mon.observe(client_id, X[start:start + PRADA_CHUNK]).prada
        peak, flag_at = max(peak, prada["score"]), prada["flag_at"]
    return flag_at, peak


def score_stream(profile: Profile, model, X: np.ndarray, configs: Sequence[str],
                 client_id: str = "client") -> dict[str, dict]:
    """Run ``X`` once through a fresh monitor per configuration.

    Returns config -> {flag_at, peak_score, threshold, row_scores}. For ``prada`` the
    threshold is ``1 - prada_delta`` and the peak is PRADA's largest ``1 - W``.
    """
    out = {}
    for name in configs:
        config = CONFIGS[name]
        mon = Monitor(profile, config, model=model)
        if name == "prada":
            flag_at, peak = _peak_prada(mon, client_id, X)
            out[name] = {"flag_at": flag_at, "peak_score": peak,
                         "threshold": 1.0 - config.prada_delta, "row_scores": None}
            continue
        verdict = mon.observe(client_id, X)
        out[name] = {"flag_at": verdict.flag_at, "peak_score": verdict.peak_score,
                     "threshold": verdict.threshold, "row_scores": verdict.row_scores,
                     "exposure": getattr(verdict, "exposure", None)}
    return out


# --------------------------------------------------------------------------- fidelity
def _public_fidelity(surrogate, victim) -> float:
    from attacks.fidelity import agreement

    return agreement(surrogate, victim, victim.X_public)


def fidelity_after(result, victim, n: int) -> float:
    """Public-record fidelity of the surrogate rebuilt from the first ``n`` answers.

    Attacks without ``refit`` (path finding) get a surrogate of the victim's own family
    retrained on those answers' labels.
    """
    n = int(min(max(n, 1), result.n_queries))
    if result.refit is not None:
        return _public_fidelity(result.refit(n), victim)
    from attacks.surrogate import fit_surrogate

    answers = np.asarray(result.answers)[:n]
    labels = victim.classes[answers.argmax(axis=1)] if answers.ndim == 2 else answers
    kind = "tree" if "tree" in victim.name else "mlp"
    return _public_fidelity(fit_surrogate(result.stream.X[:n], labels, kind=kind), victim)


def fidelity_floor(victim) -> float:
    """Fidelity of a constant surrogate (the victim's most frequent public label)."""
    labels = victim.model.predict(victim.X_public)
    return float(np.unique(labels, return_counts=True)[1].max() / len(labels))


# --------------------------------------------------------------------------- tasks
def _rows(base: dict, scored: dict[str, dict]) -> list[dict]:
    rows = []
    for config, s in scored.items():
        flag_at = s["flag_at"]
        rows.append({**base, "config": config, "flagged": flag_at is not None,
                     "flag_at": np.nan if flag_at is None else int(flag_at),
                     "queries_to_flag": np.nan if flag_at is None else int(flag_at) + 1,
                     "peak_score": float(s["peak_score"]), "threshold": float(s["threshold"]),
                     "exposure": np.nan if s.get("exposure") is None else s["exposure"]})
    return rows


def _benign_task(spec: BenchSpec, victim_name: str, seed: int) -> tuple[list, list, list]:
    from attacks.benign import benign_streams

    victim, profile = victim_and_profile(victim_name, spec.output_mode)
    rows, timelines = [], []
    for stream in benign_streams(victim, seed=seed, n=spec.benign_n, hard=spec.hard_benign):
        scored = score_stream(profile, victim.model, stream.X, spec.configs, stream.client_id)
        base = {"victim": victim_name, "seed": seed, "client_id": stream.client_id,
                "kind": "benign", "behaviour": stream.kind, "n_queries": stream.n_queries,
                "fidelity_at_flag": np.nan, "fidelity_final": np.nan}
        rows += _rows(base, scored)
        if COMBINED in scored and seed == spec.benign_seeds[0]:
            timelines.append({"victim": victim_name, "client_id": stream.client_id,
                              "kind": "benign", "behaviour": stream.kind,
                              "threshold": scored[COMBINED]["threshold"],
                              "row_scores": scored[COMBINED]["row_scores"]})
    return rows, [], timelines


def _attack_task(spec: BenchSpec, victim_name: str, attack: str, seed: int
                 ) -> tuple[list, list, list]:
    from attacks.registry import ATTACKS, run_attack

    victim, profile = victim_and_profile(victim_name, spec.output_mode)
    default = ATTACKS[attack].default_budget
    budget = default if spec.budget is None else min(spec.budget, default)
    started = time.perf_counter()
    result = run_attack(attack, victim, budget=budget, seed=seed)
    attack_seconds = time.perf_counter() - started
    X = result.stream.X
    scored = score_stream(profile, victim.model, X, spec.configs, result.stream.client_id)
    final = _public_fidelity(result.surrogate, victim)
    floor = fidelity_floor(victim)
    cache: dict[int, float] = {}
    rows = []
    for row in _rows({"victim": victim_name, "seed": seed, "client_id": result.stream.client_id,
                      "kind": attack, "behaviour": result.stream.kind,
                      "n_queries": result.n_queries, "fidelity_final": final, "fidelity_floor": floor,
                      "attack_seconds": attack_seconds}, scored):
        n = row["queries_to_flag"]
        if np.isnan(n):
            row["fidelity_at_flag"] = np.nan
        else:
            if int(n) not in cache:
                cache[int(n)] = final if n >= result.n_queries else \
                    fidelity_after(result, victim, int(n))
            row["fidelity_at_flag"] = cache[int(n)]
        rows.append(row)
    timelines = []
    if COMBINED in scored and seed == spec.seeds[0]:
        timelines.append({"victim": victim_name, "client_id": result.stream.client_id,
                          "kind": attack, "behaviour": attack,
                          "threshold": scored[COMBINED]["threshold"],
                          "row_scores": scored[COMBINED]["row_scores"]})
    adaptive = []
    if attack in spec.adaptive_attacks and seed == spec.seeds[0]:
        adaptive = adaptive_rows(spec, victim_name, victim, profile, result, seed)
    return rows, adaptive, timelines


def adaptive_rows(spec: BenchSpec, victim_name: str, victim, profile: Profile, result,
                  seed: int) -> list[dict]:
    """The combined monitor against the attack mixed with public records and split over
    sybils. ``mix_ratio`` is the fraction of camouflage queries in the stream."""
    from attacks.adaptive import mix_with_public, split_sybils

    rng = np.random.default_rng([seed, 7])
    rows = []
    base = {"victim": victim_name, "attack": result.name, "seed": seed,
            "attack_queries": result.n_queries}
    for r in spec.mix_ratios:
        stream = mix_with_public(result.stream, victim, r / (1 - r), rng)
        s = score_stream(profile, victim.model, stream.X, (COMBINED,), stream.client_id)[COMBINED]
        flag_at = s["flag_at"]
        attack_before = np.nan if flag_at is None else \
            int((~stream.meta["is_cover"][:flag_at + 1]).sum())
        rows.append({**base, "strategy": "mix", "mix_ratio": r, "sybils": 1,
                     "n_clients_flagged": int(flag_at is not None), "detected": flag_at is not None,
                     "stream_queries": stream.n_queries,
                     "first_flag_at": np.nan if flag_at is None else flag_at,
                     "attack_queries_before_flag": attack_before})
    for k in spec.sybil_ks:
        streams = split_sybils(result.stream, k, rng)
        flags = [score_stream(profile, victim.model, s.X, (COMBINED,), s.client_id)[COMBINED]
                 ["flag_at"] for s in streams]
        flagged = [f for f in flags if f is not None]
        # attack queries answered to sybils before each one's flag (all of an unflagged one's)
        answered = sum(s.n_queries if f is None else f + 1 for s, f in zip(streams, flags,
                                                                            strict=True))
        group_flag_at = sybil_group_flag_at(profile, victim.model, result.stream.X, k)
        rows.append({**base, "strategy": "sybil", "mix_ratio": 0.0, "sybils": k,
                     "n_clients_flagged": len(flagged), "detected": bool(flagged),
                     "stream_queries": int(np.mean([s.n_queries for s in streams])),
                     "first_flag_at": min(flagged) if flagged else np.nan,
                     "attack_queries_before_flag": answered if flagged else np.nan,
                     "group_flagged": group_flag_at is not None,
                     "group_flag_at": np.nan if group_flag_at is None else group_flag_at})
    return rows


def sybil_group_flag_at(profile: Profile, model, X: np.ndarray, k: int) -> int | None:
    """The group query (0-based, over all ``k`` sybils' queries) at which the sybils' group is
    flagged, or ``None``: the attack's queries sent round-robin by ``k`` sybils of one group,
    one query per request, as ``split_sybils`` splits them."""
    monitor = Monitor(profile, CONFIGS[COMBINED], model=model)
    for i in range(len(X)):
        verdict = monitor.observe(f"sybil-{i % k}", X[i:i + 1], group="sybils")
        if verdict.group["flagged"]:
            return verdict.group["flag_at"]
    return None


def _tasks(spec: BenchSpec) -> list[tuple[Callable, tuple]]:
    from attacks.registry import ATTACKS

    tasks = []
    for victim_name in spec.victims:
        names = [a for a, s in ATTACKS.items() if victim_name in s.applies_to
                 and spec.output_mode in s.output_modes
                 and (spec.attacks is None or a in spec.attacks)]
        tasks += [(_attack_task, (spec, victim_name, a, seed)) for a in names
                  for seed in spec.seeds]
        tasks += [(_benign_task, (spec, victim_name, seed)) for seed in spec.benign_seeds]
    return tasks


def _call(task: tuple[Callable, tuple]):
    fn, args = task
    return fn(*args)


def run_bench(spec: BenchSpec, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every task of ``spec`` (in ``spec.jobs`` processes) and gather the tables."""
    unknown = [v for v in spec.victims if v not in ALL_VICTIMS]
    if unknown:
        raise ValueError(f"unknown victim(s) {unknown}; choose among {', '.join(ALL_VICTIMS)}")
    started = time.perf_counter()
    tasks = _tasks(spec)
    if spec.jobs == 1:
        outputs = []
        for i, task in enumerate(tasks):
            outputs.append(_call(task))
            if progress:
                progress(f"[{i + 1}/{len(tasks)}] {task[1][1:]}")
    else:
        with ProcessPoolExecutor(spec.jobs) as pool:
            outputs = []
            for i, out in enumerate(pool.map(_call, tasks)):
                outputs.append(out)
                if progress:
                    progress(f"[{i + 1}/{len(tasks)}] {tasks[i][1][1:]}")
    rows = [r for out in outputs for r in out[0]]
    adaptive = [r for out in outputs for r in out[1]]
    timelines = [t for out in outputs for t in out[2]]
    per_client = pd.DataFrame(rows)
    columns = ["victim", "seed", "client_id", "kind", "behaviour", "config", "n_queries",
               "flagged", "flag_at", "queries_to_flag", "peak_score", "threshold", "exposure",
               "fidelity_at_flag", "fidelity_final", "fidelity_floor", "attack_seconds"]
    per_client = per_client.reindex(columns=columns)
    return BenchResult(spec, per_client, pd.DataFrame(adaptive), timelines,
                       time.perf_counter() - started)


# --------------------------------------------------------------------------- summaries
def threshold_at_fpr(benign_peaks: np.ndarray, target: float = TARGET_FPR) -> float:
    """Smallest score threshold at which at most ``target`` of benign peaks reach it.

    >>> threshold_at_fpr(np.array([0.1, 0.2, 0.3, 0.4]), 0.25) > 0.3
    True
    """
    peaks = np.sort(np.asarray(benign_peaks, dtype=float))
    allowed = int(np.floor(target * len(peaks)))
    if len(peaks) == 0:
        return 0.0
    return float(np.nextafter(peaks[len(peaks) - 1 - allowed], np.inf))


def detection_table(per_client: pd.DataFrame, target_fpr: float = TARGET_FPR) -> pd.DataFrame:
    """Per attack family x configuration: detection rate at the monitor's own threshold,
    median queries-to-flag, median fidelity at flag vs final, detection rate at
    ``target_fpr`` (threshold swept on peak scores, pooled over victims)."""
    rows = []
    for config, group in per_client.groupby("config", sort=False):
        benign = group[group.kind == "benign"]
        t = threshold_at_fpr(benign.peak_score.to_numpy(), target_fpr)
        for kind, g in group[group.kind != "benign"].groupby("kind", sort=False):
            rows.append({
                "attack": kind, "config": config, "clients": len(g),
                "detection_rate": g.flagged.mean(),
                "median_queries_to_flag": g.queries_to_flag.median(),
                "median_fidelity_at_flag": g.fidelity_at_flag.median(),
                "median_fidelity_final": g.fidelity_final.median(),
                f"detection_at_fpr{target_fpr:g}": float((g.peak_score >= t).mean()),
            })
    return pd.DataFrame(rows)


def benign_table(per_client: pd.DataFrame) -> pd.DataFrame:
    """Benign false-positive rate per configuration (fraction of benign clients flagged)."""
    benign = per_client[per_client.kind == "benign"]
    return benign.groupby("config", sort=False).agg(
        benign_clients=("flagged", "size"), flagged=("flagged", "sum"),
        fpr=("flagged", "mean")).reset_index()


def acceptance(per_client: pd.DataFrame, config: str = COMBINED) -> pd.DataFrame:
    """The issue's bar per attack family (+ benign): pass/fail and why."""
    g = per_client[per_client.config == config]
    rows = []
    for kind, runs in g[g.kind != "benign"].groupby("kind", sort=False):
        reasons, vacuous = [], []
        for _, r in runs.iterrows():
            where = f"{r.victim} (seed {r.seed})"
            if not r.flagged:
                why = (f"{where}: not flagged in {r.n_queries} queries "
                       f"(peak {r.peak_score:.2f} < {r.threshold:.2f})")
            elif r.fidelity_at_flag >= FIDELITY_BAR * r.fidelity_final:
                why = (f"{where}: flagged at query {int(r.queries_to_flag)} with "
                       f"fidelity {r.fidelity_at_flag:.2f} >= {FIDELITY_BAR:g} x "
                       f"final {r.fidelity_final:.2f}")
            else:
                continue
            if r.fidelity_final <= r.fidelity_floor + 0.02:
                vacuous.append(f"{why} [attack steals nothing: final fidelity "
                               f"{r.fidelity_final:.2f} <= constant-label floor "
                               f"{r.fidelity_floor:.2f} + 0.02]")
            else:
                reasons.append(why)
        result = "FAIL" if reasons else "pass" if not vacuous else \
            "n/a (attack steals nothing)" if len(vacuous) == len(runs) else "pass (+ vacuous)"
        rows.append({"criterion": f"{kind}: flagged before {FIDELITY_BAR:.0%} of final fidelity",
                     "result": result,
                     "why": "; ".join(reasons + vacuous) if reasons or vacuous else
                     f"all {len(runs)} runs flagged in time"})
    benign = g[g.kind == "benign"]
    fpr = benign.flagged.mean() if len(benign) else np.nan
    offenders = benign[benign.flagged].groupby(["victim", "behaviour"]).size()
    rows.append({"criterion": f"benign clients flagged <= {BENIGN_BAR:.0%}",
                 "result": "pass" if fpr <= BENIGN_BAR else "FAIL",
                 "why": f"{int(benign.flagged.sum())} of {len(benign)} flagged ({fpr:.1%})" + (
                     "; " + ", ".join(f"{v}/{b}: {n}" for (v, b), n in offenders.items())
                     if len(offenders) else "")})
    return pd.DataFrame(rows)


def adaptive_table(adaptive: pd.DataFrame) -> pd.DataFrame:
    """Per victim x attack: the smallest mixing ratio and sybil count at which the combined
    monitor no longer flags (``none`` when it flags at every tested value)."""
    if adaptive.empty:
        return pd.DataFrame()
    rows = []
    for (victim, attack), g in adaptive.groupby(["victim", "attack"], sort=False):
        mix = g[g.strategy == "mix"].sort_values("mix_ratio")
        syb = g[g.strategy == "sybil"].sort_values("sybils")
        mix_fail = mix[~mix.detected].mix_ratio
        syb_fail = syb[~syb.detected].sybils
        rows.append({
            "victim": victim, "attack": attack,
            "detected_at_mix": " ".join(f"{r:g}:{'Y' if d else 'n'}"
                                        for r, d in zip(mix.mix_ratio, mix.detected,
                                                        strict=True)),
            "mix_r_where_detection_fails": f"{mix_fail.min():g}" if len(mix_fail) else "none",
            "sybils_flagged_of_k": " ".join(f"{n}/{k}" for n, k in
                                            zip(syb.n_clients_flagged, syb.sybils, strict=True)),
            "k_where_detection_fails": str(int(syb_fail.min())) if len(syb_fail) else "none",
            "group_flag_at_by_k": " ".join(
                f"{k}:{'n' if pd.isna(a) else int(a) + 1}" for k, a in
                zip(syb.sybils, syb.get("group_flag_at", pd.Series(np.nan, syb.index)),
                    strict=True)),
        })
    return pd.DataFrame(rows)


def fidelity_table(per_client: pd.DataFrame) -> pd.DataFrame:
    """Per attack: final fidelity and queries used on each victim (mean over seeds), as
    ``fidelity (queries)``, with the constant-label floor of each victim in the last row."""
    attacks = per_client[(per_client.kind != "benign")
                         & (per_client.config == per_client.config.iloc[0])]
    if attacks.empty:
        return pd.DataFrame()
    agg = attacks.groupby(["kind", "victim"], sort=False).agg(
        fid=("fidelity_final", "mean"), n=("n_queries", "mean"), floor=("fidelity_floor", "first"))
    cells = agg.apply(lambda r: f"{r.fid:.2f} ({r.n:.0f})", axis=1).unstack("victim")
    floors = agg.groupby("victim", sort=False).floor.first()
    cells.loc["(constant-label floor)"] = floors.map("{:.2f}".format)
    return cells.fillna("").reset_index().rename(columns={"kind": "attack"})


def _md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float | np.floating):
                cells.append("" if np.isnan(v) else format(v, floatfmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pivot(det: pd.DataFrame, value: str, configs: Sequence[str]) -> pd.DataFrame:
    table = det.pivot(index="attack", columns="config", values=value)
    return table.reindex(columns=[c for c in configs if c in table.columns]).reset_index()


def summary_markdown(result: BenchResult, command: str = "") -> str:
    """The Markdown summary of a run."""
    spec, pc = result.spec, result.per_client
    det = detection_table(pc)
    fpr_col = f"detection_at_fpr{TARGET_FPR:g}"
    n_benign = int((pc[pc.config == spec.configs[0]].kind == "benign").sum())
    parts = [
        "# Detection benchmark\n",
        (f"Command: `{command}`\n" if command else ""),
        f"Victims: {', '.join(spec.victims)} (output mode `{spec.output_mode}`); attack seeds "
        f"{list(spec.seeds)}; benign seeds {list(spec.benign_seeds)} ({n_benign} benign "
        f"clients, {spec.benign_n} queries each, batch jobs 2x); budget "
        f"{'registry default' if spec.budget is None else f'min({spec.budget}, default)'}. "
        f"Run time {result.seconds:.0f} s.\n",
        "Configurations: `prada` = PRADA baseline (Juuti et al. 2019, its own W < 0.95 alarm); "
        "`density`, `boundary`, `chain` = one calibrated detector alone; `combined` = the "
        f"default monitor (`MonitorConfig()`: {' + '.join(MonitorConfig().detectors)}); "
        "`combined+chain` = density + boundary + chain; `combined-block` = the default "
        "detectors without the set-level block detector.\n",
        "Fidelity = agreement with the victim on its public records. *At flag*: the attack's "
        "surrogate retrained on the answers up to and including the flagged query "
        "(`AttackResult.refit`; path finding has none, so a surrogate of the victim's family "
        "is retrained on those labels). *Final*: the attack's surrogate after its whole "
        "budget, i.e. without any monitor.\n",
        "## Attack fidelity at its budget, without monitor: fidelity (queries used)\n",
        _md(fidelity_table(pc)),
        "\n## Detection rate at each configuration's own threshold\n",
        _md(_pivot(det, "detection_rate", spec.configs)),
        f"\n## Detection rate at benign FPR <= {TARGET_FPR:.0%} (ROC on peak scores)\n",
        "Each client's score is its *peak* score over its stream (PRADA: peak 1 - W). The "
        f"threshold is swept per configuration on all benign clients pooled over victims and "
        f"set at the smallest value that at most {TARGET_FPR:.0%} of them reach; with "
        f"{n_benign} benign clients that allows {int(np.floor(TARGET_FPR * n_benign))} of "
        "them above it.\n",
        _md(_pivot(det, fpr_col, spec.configs)),
        "\n## Benign false-positive rate (fraction of benign clients flagged)\n",
        _md(benign_table(pc), ".3f"),
        "\n## Median queries-to-flag (flagged clients only)\n",
        _md(_pivot(det, "median_queries_to_flag", spec.configs), ".0f"),
        "\n## Median fidelity at flag (flagged clients) vs without monitor\n",
        _md(_pivot(det, "median_fidelity_at_flag", spec.configs).merge(
            det[det.config == spec.configs[0]][["attack", "median_fidelity_final"]].rename(
                columns={"median_fidelity_final": "without_monitor"}), on="attack")),
        f"\n## Acceptance (configuration `{COMBINED}`)\n",
        _md(acceptance(pc)),
        "\n## Adaptive attackers (configuration `combined`)\n",
        "`mix r` = fraction of the stream that is camouflage (public records interleaved "
        "with the attack queries, `mix_with_public` with ratio r/(1-r)); `k` = sybils the "
        "attack is split over round-robin (`split_sybils`); an attack counts as detected "
        "when at least one of its sybils is flagged; `group_flag_at_by_k` = the group query "
        "(1-based, over all k sybils' queries, `[serving] group_by`) at which the sybils' "
        "group is flagged (`n`: never). Only r and k values in the table were tested.\n",
        _md(adaptive_table(result.adaptive)),
        "\nFiles: `per_client.csv` (one row per client x configuration), `adaptive.csv`, "
        "`roc.png`, `timelines.png`.\n",
    ]
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------- plots
def plot_roc(per_client: pd.DataFrame, path: str | Path) -> Path:
    """ROC (attack clients vs benign clients, peak scores) per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for config, g in per_client.groupby("config", sort=False):
        benign = g[g.kind == "benign"].peak_score.to_numpy()
        attack = g[g.kind != "benign"].peak_score.to_numpy()
        if not len(benign) or not len(attack):
            continue
        levels = np.unique(np.concatenate([benign, attack, [np.inf]]))[::-1]
        fpr = (benign[None, :] >= levels[:, None]).mean(axis=1)
        tpr = (attack[None, :] >= levels[:, None]).mean(axis=1)
        ax.step(fpr, tpr, where="post", label=config)
    ax.axvline(TARGET_FPR, color="grey", ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, 1)
    ax.set_xlabel("benign false-positive rate (peak score >= threshold)")
    ax.set_ylabel("attack detection rate")
    ax.set_title("ROC over peak scores, all victims pooled")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plotted_timelines(timelines: list[dict], per_victim: int = 6) -> list[dict]:
    """The timelines a plot shows: per victim the first ``per_victim`` attack clients and
    the first ``per_victim // 2`` benign clients."""
    chosen = []
    for victim in dict.fromkeys(t["victim"] for t in timelines):
        mine = [t for t in timelines if t["victim"] == victim]
        chosen += [t for t in mine if t["kind"] != "benign"][:per_victim]
        chosen += [t for t in mine if t["kind"] == "benign"][:per_victim // 2]
    return chosen


def plot_timelines(timelines: list[dict], path: str | Path, per_victim: int = 6) -> Path:
    """Per-client overall score after each query (combined monitor), one panel per victim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    victims = list(dict.fromkeys(t["victim"] for t in timelines))
    fig, axes = plt.subplots(max(len(victims), 1), 1, figsize=(8, 2.8 * max(len(victims), 1)),
                             squeeze=False)
    if not victims:  # the combined monitor was not among the run's configurations
        axes[0, 0].text(0.5, 0.5, "no timelines: the run did not include `combined`",
                        ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, victim in zip(axes[:, 0], victims, strict=True):
        mine = [t for t in timelines if t["victim"] == victim]
        attacks = [t for t in mine if t["kind"] != "benign"][:per_victim]
        benign = [t for t in mine if t["kind"] == "benign"][:per_victim // 2]
        for t in attacks:
            ax.plot(t["row_scores"], lw=1.2, label=t["kind"])
        for t in benign:
            ax.plot(t["row_scores"], lw=1, ls="--", color="grey", alpha=0.7)
        if mine:
            ax.axhline(mine[0]["threshold"], color="red", lw=1, ls=":", label="threshold")
        ax.plot([], [], ls="--", color="grey", label="benign")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title(victim, fontsize=9)
        ax.set_ylabel("score (symlog)")
        ax.legend(fontsize=6, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("query index")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_outputs(result: BenchResult, out: str | Path, command: str = "") -> dict[str, Path]:
    """Write the tables, the summary and the PNGs under ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"per_client": out / "per_client.csv", "adaptive": out / "adaptive.csv",
             "timeline_scores": out / "timelines.csv", "spec": out / "spec.json",
             "summary": out / "summary.md", "roc": out / "roc.png",
             "timelines": out / "timelines.png"}
    result.per_client.to_csv(paths["per_client"], index=False, float_format="%.6g")
    result.adaptive.to_csv(paths["adaptive"], index=False, float_format="%.6g")
    shown = plotted_timelines(result.timelines, result.spec.timeline_clients)
    _timeline_frame(shown).to_csv(paths["timeline_scores"], index=False,
                                             float_format="%.4g")
    paths["spec"].write_text(json.dumps({**asdict(result.spec), "seconds": result.seconds},
                                        indent=1) + "\n")
    paths["summary"].write_text(summary_markdown(result, command))
    plot_roc(result.per_client, paths["roc"])
    plot_timelines(shown, paths["timelines"], result.spec.timeline_clients)
    return paths


def _timeline_frame(timelines: list[dict]) -> pd.DataFrame:
    frames = [pd.DataFrame({"victim": t["victim"], "client_id": t["client_id"], "kind": t["kind"],
                            "behaviour": t["behaviour"], "threshold": t["threshold"],
                            "query": np.arange(len(t["row_scores"])),
                            "score": t["row_scores"]}) for t in timelines]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_result(out: str | Path) -> BenchResult:
    """A run back from the files :func:`write_outputs` wrote (to re-summarise it)."""
    out = Path(out)
    raw = json.loads((out / "spec.json").read_text())
    seconds = raw.pop("seconds", 0.0)
    spec = BenchSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    adaptive = pd.read_csv(out / "adaptive.csv") if (out / "adaptive.csv").stat().st_size > 1 \
        else pd.DataFrame()
    timelines = []
    frame = pd.read_csv(out / "timelines.csv") if (out / "timelines.csv").stat().st_size > 1 \
        else pd.DataFrame()
    for (victim, client_id), g in (frame.groupby(["victim", "client_id"], sort=False)
                                   if len(frame) else []):
        first = g.iloc[0]
        timelines.append({"victim": victim, "client_id": client_id, "kind": first.kind,
                          "behaviour": first.behaviour, "threshold": float(first.threshold),
                          "row_scores": g.score.to_numpy()})
    return BenchResult(spec, pd.read_csv(out / "per_client.csv"), adaptive, timelines, seconds)


__all__ = [
    "CONFIGS", "BenchResult", "BenchSpec", "acceptance", "adaptive_table", "benign_table",
    "detection_table", "fidelity_after", "fidelity_table", "fidelity_floor", "load_result", "full_spec", "quick_spec", "run_bench",
    "score_stream", "summary_markdown", "threshold_at_fpr", "victim_and_profile",
    "write_outputs",
]
