"""Threshold tuning from an operator's own logs: benign clients bound the false-alarm rate.

Each client's stream is replayed through a monitor (every client has its own state, so
each sees a fresh monitor) and its overall scores after every query are kept. A threshold
``t`` flags a client when the running peak of its scores reaches ``t``; so for benign
clients the fraction flagged at ``t`` is the fraction whose peak is ``>= t``.

The tuned threshold is the smallest achievable score level whose one-sided
Clopper-Pearson upper bound (at ``confidence``) on that benign fraction is at most the
target false-positive rate. With ``n`` benign clients and none flagged the bound is
``1 - (1 - confidence) ** (1 / n)``, so a target below it cannot be supported; then the
threshold falls back to the largest benign peak plus a margin and the achieved bound is
reported. With attack clients too, the same replays give ROC and detection-delay curves.
Ground-truth columns (``truth_*``) only label clients; they are never scored.

>>> clopper_pearson_upper(np.array([0, 3]), 300).round(4)
array([0.0099, 0.0256])
>>> first_crossings(np.array([0.0, 1.0, 0.5, 2.0]), np.array([0.5, 2.0, 3.0]))
array([ 1,  3, -1])
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import beta

from monitor.logs import CLIENT_COLUMN, QueryLog, read_columns
from monitor.monitor import Monitor
from monitor.profile import Profile
from monitor.replay import replay_log
from monitor.settings import MonitorConfig, write_config_file

OVERALL = "overall"
"""Name of the combined score in curves and per-detector tables."""
TRUTH_ATTACK = "truth_is_attack"
TRUTH_KIND = "truth_kind"
TRUTH_FIDELITY = "truth_fidelity"


# ----------------------------------------------------------------------------- statistics
def clopper_pearson_upper(k, n: int, confidence: float = 0.95) -> np.ndarray:
    """One-sided Clopper-Pearson upper confidence bound on a rate from ``k`` of ``n``."""
    k = np.asarray(k, dtype=np.float64)
    if n <= 0:
        return np.ones_like(k)
    upper = beta.ppf(confidence, k + 1, np.maximum(n - k, 1e-12))
    return np.where(k >= n, 1.0, upper)


def calibrated_false_alarm_rate(threshold: float) -> float:
    """The per-client false-alarm rate a score threshold stands for on the profile's
    calibration: a score is ``-log10`` of a p-value bound, so threshold ``t`` is ``10 ** -t``.

    >>> calibrated_false_alarm_rate(2.0), round(calibrated_false_alarm_rate(0.165), 3)
    (0.01, 0.684)
    """
    return float(10.0 ** -float(threshold))


def min_clients_for(target_fpr: float, confidence: float = 0.95) -> int:
    """Fewest benign clients whose zero-flag Clopper-Pearson bound is within ``target_fpr``.

    >>> min_clients_for(0.01), min_clients_for(0.05)
    (299, 59)
    """
    return int(np.ceil(np.log(1 - confidence) / np.log(1 - target_fpr)))


def first_crossings(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """0-based index of the first score ``>= t`` for each threshold ``t`` (``-1``: never)."""
    if len(scores) == 0:
        return np.full(len(thresholds), -1)
    running = np.maximum.accumulate(np.asarray(scores, dtype=np.float64))
    at = np.searchsorted(running, thresholds, side="left")
    return np.where(at < len(running), at, -1)


def roc_auc_from_curve(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under ROC points (any order; (0, 0) and (1, 1) are added)."""
    order = np.lexsort((tpr, fpr))
    x = np.r_[0.0, fpr[order], 1.0]
    y = np.r_[0.0, tpr[order], 1.0]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


# ----------------------------------------------------------------------------- replays
def observed_levels(*score_maps: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every distinct score seen in the given ``{client: row scores}`` maps, with 0, ascending.

    Flagging only changes where a client's running peak crosses a threshold, so these are
    all the thresholds that behave differently on the data.
    """
    parts = [np.zeros(1)] + [np.asarray(s, dtype=np.float64) for m in score_maps
                             for s in m.values()]
    return np.unique(np.concatenate(parts))


def replay_scores(log: QueryLog, profile: Profile, config: MonitorConfig | None = None,
                  model=None, horizon: int | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Overall scores after each of every client's first ``horizon`` queries.

    Returns ``(scores, verdicts)``: client -> row scores, client -> final :class:`Verdict`
    (one :func:`monitor.replay.replay_log` of a fresh monitor).
    """
    replay = replay_log(log, Monitor(profile, config=config, model=model), horizon=horizon,
                        keep_scores=True)
    return replay.scores, replay.verdicts


def replay_detectors(log: QueryLog, profile: Profile, config: MonitorConfig, model=None,
                     horizon: int | None = None, per_detector: bool = True
                     ) -> dict[str, dict[str, np.ndarray]]:
    """``{"overall": scores, detector: scores, ...}``; a detector's scores come from a
    monitor running that detector alone (its score as in ``Verdict.detectors``)."""
    out = {OVERALL: replay_scores(log, profile, config, model, horizon)[0]}
    if per_detector:
        for name in config.detectors:
            alone = config.replace(detectors=(name,), score_threshold=None)
            out[name] = replay_scores(log, profile, alone, model, horizon)[0]
    return out


# ----------------------------------------------------------------------------- ground truth
TRUTH_COLUMNS = (TRUTH_ATTACK, TRUTH_KIND, TRUTH_FIDELITY)


def read_truth(log: QueryLog | str | Path) -> pd.DataFrame:
    """Per-row ground truth in each client's query order: client_id, and truth_is_attack /
    truth_kind / truth_fidelity when the log has them.

    ``log`` is a :class:`QueryLog` read with ``read_log(..., extra=TRUTH_COLUMNS)`` (its kept
    rows, aligned with its scores) or a log file (every row). Only labels clients (and the
    fidelity an attacker had reached); never scored.
    """
    if not isinstance(log, QueryLog):
        return read_columns(log, TRUTH_COLUMNS)
    return pd.DataFrame({CLIENT_COLUMN: log.client_ids.astype(str),
                         **{c: log.extra[c] for c in TRUTH_COLUMNS if c in log.extra}})


def client_truth(truth: pd.DataFrame, default_attack: bool) -> pd.DataFrame:
    """One row per client: is_attack (from truth_is_attack, else ``default_attack``), kind."""
    grouped = truth.groupby(CLIENT_COLUMN, sort=True)
    if TRUTH_ATTACK in truth.columns:
        flags = truth[TRUTH_ATTACK].map(
            lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))
        is_attack = flags.groupby(truth[CLIENT_COLUMN]).any()
    else:
        is_attack = grouped.size().astype(bool) & default_attack
    kind = grouped[TRUTH_KIND].first() if TRUTH_KIND in truth.columns else pd.Series(
        np.where(is_attack, "attack", "benign"), index=is_attack.index)
    return pd.DataFrame({"is_attack": is_attack.astype(bool), "kind": kind.astype(str)})


def client_fidelity(truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """Client -> fidelity reached after each query (only when truth_fidelity is present)."""
    if TRUTH_FIDELITY not in truth.columns:
        return {}
    values = pd.to_numeric(truth[TRUTH_FIDELITY], errors="coerce")
    return {str(c): v.to_numpy(dtype=np.float64)
            for c, v in values.groupby(truth[CLIENT_COLUMN], sort=True)}


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- curves
def threshold_curve(benign: Sequence[np.ndarray], attacks: Sequence[np.ndarray],
                    levels: np.ndarray, confidence: float = 0.95,
                    fidelity: Sequence[np.ndarray | None] | None = None) -> pd.DataFrame:
    """Per candidate threshold: benign flagged / rate / upper bound, and for attack clients
    the detection rate, median queries-to-flag and median fidelity reached before the flag.

    Queries-to-flag counts the query that flagged (``flag_at + 1``) over flagged attack
    clients. Fidelity before the flag is the fidelity after the flagging query (or after the
    last query for clients never flagged), over attack clients with fidelity.
    """
    levels = np.asarray(levels, dtype=np.float64)
    nb, na = len(benign), len(attacks)
    b_cross = np.array([first_crossings(s, levels) for s in benign]).reshape(nb, len(levels))
    k = (b_cross >= 0).sum(axis=0)
    frame = pd.DataFrame({
        "threshold": levels,
        "benign_flagged": k,
        "fpr": k / max(nb, 1),
        "fpr_upper": clopper_pearson_upper(k, nb, confidence),
    })
    if na:
        a_cross = np.array([first_crossings(s, levels) for s in attacks]).reshape(na, len(levels))
        hit = a_cross >= 0
        frame["attacks_flagged"] = hit.sum(axis=0)
        frame["tpr"] = hit.mean(axis=0)
        delay = np.where(hit, a_cross + 1.0, np.nan)
        with np.errstate(all="ignore"):
            frame["median_queries_to_flag"] = [
                float(np.median(col[~np.isnan(col)])) if (~np.isnan(col)).any() else np.nan
                for col in delay.T]
        if fidelity is not None and any(f is not None and len(f) for f in fidelity):
            stolen = np.full((na, len(levels)), np.nan)
            for i, (cross, fid) in enumerate(zip(a_cross, fidelity, strict=True)):
                if fid is None or len(fid) == 0:
                    continue
                at = np.where(cross >= 0, cross, len(attacks[i]) - 1)
                stolen[i] = fid[np.clip(at, 0, len(fid) - 1)]
            with np.errstate(all="ignore"):
                frame["median_fidelity_before_flag"] = [
                    float(np.median(c[~np.isnan(c)])) if (~np.isnan(c)).any() else np.nan
                    for c in stolen.T]
    return frame


def peaks(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Peak score of each stream (0 for an empty stream)."""
    return np.array([float(np.max(s, initial=0.0)) for s in scores])


# ----------------------------------------------------------------------------- result
@dataclass
class TuningResult:
    """What :func:`tune` chose and why; ``config`` carries the tuned ``score_threshold``.

    >>> levels = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    >>> rng = np.random.default_rng(0)
    >>> benign = {"overall": {f"b{i}": levels[rng.choice(3, 40, p=[.98, .015, .005])]
    ...                       for i in range(400)}}
    >>> attacks = {"overall": {f"a{i}": np.sort(levels[rng.integers(0, 5, 40)])
    ...                        for i in range(20)}}
    >>> result = tune(benign, attacks, target_fpr=0.01)
    >>> result.supported, result.threshold, result.benign_flagged, result.tpr
    (True, 2.0, 0, 1.0)
    """

    config: MonitorConfig
    threshold: float
    target_fpr: float
    confidence: float
    horizon: int | None
    n_benign: int
    benign_flagged: int
    achieved_fpr: float
    fpr_upper: float
    supported: bool
    message: str
    detectors: dict[str, dict[str, float]]
    curves: pd.DataFrame
    n_attack: int = 0
    tpr: float | None = None
    auc: dict[str, float] = field(default_factory=dict)
    median_queries_to_flag: float | None = None
    sources: list[dict[str, str]] = field(default_factory=list)
    default_threshold: float | None = None
    """The threshold the monitor uses without tuning (``score_threshold`` unset)."""
    comparison: pd.DataFrame | None = None
    """Rows ``default`` and ``tuned``: threshold, benign flagged / rate / upper bound and, with
    attack clients, attacks flagged / detection rate / median queries to flag."""
    drivers: list[dict[str, Any]] = field(default_factory=list)
    """The benign clients with the highest peak scores (those that set the threshold), each
    with its peak, queries, reason and source log."""

    @property
    def raises_threshold(self) -> bool:
        """Whether the tuned threshold is above the default one (fewer detections)."""
        return self.default_threshold is not None and self.threshold > self.default_threshold

    @property
    def lowers_threshold(self) -> bool:
        """Whether the tuned threshold is below the calibrated default: a weaker calibrated
        false-alarm guarantee (``10 ** -threshold`` per client instead of the default's)."""
        return self.default_threshold is not None and self.threshold < self.default_threshold

    def attacks_lost(self) -> int | None:
        """Attack clients the default threshold flags and the tuned one does not (``None``
        without attack clients or a default to compare with)."""
        if not self.n_attack or self.comparison is None or \
                "attacks_flagged" not in self.comparison:
            return None
        rows = self.comparison.set_index("which")["attacks_flagged"]
        return max(int(rows["default"]) - int(rows["tuned"]), 0)

    def threshold_warning(self) -> str:
        """One line saying what the written threshold promises on the calibrated scale,
        against the default's.

        >>> result = tune({"overall": {f"b{i}": np.zeros(3) for i in range(300)}},
        ...               target_fpr=0.05, default_threshold=2.0)
        >>> print(result.threshold_warning())
        warning: score_threshold 0.5 (default 2): a calibrated per-client false-alarm rate of 0.3162 (10^-0.5) instead of the default's 0.01 (10^-2)
        """
        text = (f"warning: score_threshold {self.threshold:.4g}"
                + (f" (default {self.default_threshold:.4g})"
                   if self.default_threshold is not None else "")
                + f": a calibrated per-client false-alarm rate of "
                  f"{calibrated_false_alarm_rate(self.threshold):.4g} (10^-{self.threshold:.4g})")
        if self.default_threshold is not None:
            text += (f" instead of the default's "
                     f"{calibrated_false_alarm_rate(self.default_threshold):.4g} "
                     f"(10^-{self.default_threshold:.4g})")
        return text

    def explain(self) -> list[str]:
        """Lines saying why this threshold: default vs tuned side by side and the benign
        clients that drive it.

        >>> levels = np.array([0.0, 1.0, 3.0])
        >>> benign = {"overall": {f"b{i}": np.zeros(5) for i in range(80)} |
        ...           {"noisy": np.array([0.0, 3.0])}}
        >>> result = tune(benign, target_fpr=0.05, default_threshold=2.0,
        ...               reasons={"noisy": "14 of the last 50 ..."})
        >>> print("\\n".join(result.explain()))  # doctest: +NORMALIZE_WHITESPACE
                                   default    tuned
        threshold                  2          3.5
        benign clients flagged     1 of 81    0 of 81
        benign rate upper bound    0.05723    0.03631
        (no attack logs: give --attacks to compare detection)
        benign clients that drive the threshold (highest peak scores):
          noisy: peak 3, 2 queries, at or above the default threshold: 14 of the last 50 ...
        """
        lines: list[str] = []
        if self.comparison is not None and len(self.comparison):
            rows = self.comparison.set_index("which")
            def cell(which, column, fmt):
                value = rows.loc[which].get(column) if which in rows.index else None
                if value is None or (isinstance(value, float) and not np.isfinite(value)):
                    return "-"
                return fmt(value)
            spec = [("threshold", "threshold", lambda v: f"{v:.4g}"),
                    ("benign clients flagged", "benign_flagged",
                     lambda v: f"{int(v)} of {self.n_benign}"),
                    ("benign rate upper bound", "fpr_upper", lambda v: f"{v:.4g}")]
            if self.n_attack:
                spec += [("attacks detected", "attacks_flagged",
                          lambda v: f"{int(v)} of {self.n_attack}"),
                         ("median queries to flag", "median_queries_to_flag",
                          lambda v: f"{v:g}")]
            lines.append(f"{'':26} {'default':10} tuned")
            for label, column, fmt in spec:
                lines.append(f"{label:26} {cell('default', column, fmt):10} "
                             f"{cell('tuned', column, fmt)}")
            if not self.n_attack:
                lines.append("(no attack logs: give --attacks to compare detection)")
        if self.drivers:
            lines.append("benign clients that drive the threshold (highest peak scores):")
            for d in self.drivers:
                text = f"  {d['client_id']}: peak {d['peak_score']:.4g}, {d['n_queries']} queries"
                if d.get("source"):
                    text += f" in {Path(d['source']).name}"
                if self.default_threshold is not None and \
                        d["peak_score"] >= self.default_threshold:
                    text += ", at or above the default threshold"
                if d.get("reason") and d["reason"] != "not flagged":
                    text += f": {d['reason']}"
                lines.append(text)
        return lines

    def tuning_table(self) -> dict[str, Any]:
        """The ``[tuning]`` provenance table written next to ``[monitor]``."""
        table: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "method": "smallest score level whose one-sided Clopper-Pearson upper bound on "
                      "the benign flagged fraction is <= target_fpr"
                      if self.supported else "largest benign peak + margin (too few clients)",
            "target_fpr": self.target_fpr,
            "confidence": self.confidence,
            "horizon": self.horizon if self.horizon is not None else "whole streams",
            "threshold": self.threshold,
            "n_benign_clients": self.n_benign,
            "benign_flagged": self.benign_flagged,
            "achieved_fpr": self.achieved_fpr,
            "fpr_upper_bound": self.fpr_upper,
            "supported": self.supported,
            "note": self.message,
            "n_attack_clients": self.n_attack,
            "data": self.sources,
            "detectors": self.detectors,
        }
        if self.default_threshold is not None:
            table["default_threshold"] = self.default_threshold
        if self.drivers:
            table["drivers"] = [{k: v for k, v in d.items() if v is not None}
                                for d in self.drivers]
        if self.tpr is not None:
            table["tpr"] = self.tpr
            table["auc"] = self.auc
        if self.median_queries_to_flag is not None and np.isfinite(self.median_queries_to_flag):
            table["median_queries_to_flag"] = self.median_queries_to_flag
        return _plain(table)

    def write(self, path: str | Path, base_tables: Mapping[str, Any] | None = None) -> Path:
        """Write ``[monitor]`` (with the tuned threshold) and ``[tuning]`` to ``path``, after
        every other table of ``base_tables`` (the input config file's tables, carried through
        unchanged: ``[serving]``, ``[store]``)."""
        path = Path(path)
        tables = {k: v for k, v in (base_tables or {}).items() if k not in ("monitor", "tuning")}
        tables.update({"monitor": self.config.to_dict(), "tuning": self.tuning_table()})
        write_config_file(path, tables)
        return path


def _plain(value):
    """Numpy scalars -> Python, NaN dropped: what TOML can hold."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()
                if not (isinstance(v, float) and not np.isfinite(v)) and v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def choose_threshold(benign_peaks: np.ndarray, levels: np.ndarray, target_fpr: float,
                     confidence: float = 0.95, margin: float = 0.5
                     ) -> tuple[float, int, float, bool]:
    """``(threshold, benign_flagged, upper_bound, supported)`` from benign peak scores.

    >>> levels = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    >>> choose_threshold(np.r_[np.zeros(98), 1.0, 2.0], levels, 0.05)
    (2.0, 1, 0.0465..., True)
    >>> choose_threshold(np.r_[np.zeros(28), 1.0, 2.0], levels, 0.05)  # too few clients
    (3.0, 0, 0.0950..., False)
    """
    n = len(benign_peaks)
    top = float(benign_peaks.max(initial=0.0)) + margin
    positive = levels[levels > 0]
    if not (positive > top - margin).any():  # nothing observed above every benign peak
        positive = np.union1d(positive, [top])
    k = (benign_peaks[:, None] >= positive[None, :]).sum(axis=0)
    upper = clopper_pearson_upper(k, n, confidence)
    ok = np.flatnonzero(upper <= target_fpr)
    if len(ok):
        i = int(ok[0])
        return float(positive[i]), int(k[i]), float(upper[i]), True
    above = positive[positive >= top]
    threshold = float(above[0]) if len(above) else top
    flagged = int((benign_peaks >= threshold).sum())
    return threshold, flagged, float(clopper_pearson_upper(flagged, n, confidence)), False


# ----------------------------------------------------------------------------- tune
def tune(benign: Mapping[str, Mapping[str, np.ndarray]],
         attacks: Mapping[str, Mapping[str, np.ndarray]] | None = None, *,
         config: MonitorConfig | None = None, target_fpr: float = 0.01,
         confidence: float = 0.95, horizon: int | None = None, margin: float = 0.5,
         fidelity: Mapping[str, np.ndarray] | None = None,
         default_threshold: float | None = None, reasons: Mapping[str, str] | None = None,
         sources: Mapping[str, str] | None = None, n_drivers: int = 5) -> TuningResult:
    """Choose thresholds from replayed scores (:func:`replay_detectors` output).

    ``benign`` / ``attacks``: ``{"overall" | detector: {client: row scores}}``. The result's
    ``config`` is ``config`` with ``score_threshold`` set to the tuned overall threshold.
    ``default_threshold`` (the untuned monitor's) is compared with the tuned one
    (``result.comparison``); the ``n_drivers`` benign clients with the highest peaks are
    named with their ``reasons`` (client -> verdict reason) and ``sources`` (client -> log).
    """
    if not 0 < target_fpr < 1:
        raise ValueError(f"target FPR must be in (0, 1), got {target_fpr}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    config = config or MonitorConfig()
    attacks = attacks or {}
    clients = list(benign[OVERALL])
    if not clients:
        raise ValueError("no benign clients to tune on")
    attack_clients = list(attacks.get(OVERALL, {}))
    fidelity = fidelity or {}
    names = [OVERALL, *[d for d in config.detectors if d in benign]]
    per: dict[str, dict[str, float]] = {}
    curves, auc = [], {}
    chosen: tuple[float, int, float, bool] | None = None
    for name in names:
        b = [benign[name][c] for c in clients]
        a = [attacks[name][c] for c in attack_clients] if attack_clients else []
        levels = observed_levels(benign[name], attacks.get(name, {}))
        threshold, k, upper, supported = choose_threshold(peaks(b), levels, target_fpr,
                                                          confidence, margin)
        curve = threshold_curve(b, a, np.union1d(levels, [threshold]), confidence,
                                [fidelity.get(c) for c in attack_clients] if a else None)
        curve.insert(0, "detector", name)
        curves.append(curve)
        row = curve.loc[np.isclose(curve["threshold"], threshold)].iloc[0]
        per[name] = {"threshold": threshold, "benign_flagged": k, "fpr": k / len(b),
                     "fpr_upper": upper}
        if a:
            per[name]["tpr"] = float(row["tpr"])
            auc[name] = roc_auc_from_curve(curve["fpr"].to_numpy(), curve["tpr"].to_numpy())
            per[name]["auc"] = auc[name]
        if name == OVERALL:
            chosen = (threshold, k, upper, supported)
            chosen_row = row
    assert chosen is not None
    threshold, k, upper, supported = chosen
    n = len(clients)
    if supported:
        message = (f"{k} of {n} benign clients reach {threshold:.3g}: rate {k / n:.4f}, "
                   f"{confidence:.0%} upper bound {upper:.4f} <= target {target_fpr}")
    else:
        message = (f"{n} benign clients cannot support a target FPR of {target_fpr} at "
                   f"{confidence:.0%} confidence (need at least "
                   f"{min_clients_for(target_fpr, confidence)}); threshold set to the largest "
                   f"benign peak + {margin}, achieved upper bound {upper:.4f}")
    overall_b = [benign[OVERALL][c] for c in clients]
    overall_a = [attacks[OVERALL][c] for c in attack_clients] if attack_clients else []
    comparison = None
    if default_threshold is not None:
        comparison = threshold_curve(overall_b, overall_a,
                                     np.array([default_threshold, threshold]), confidence)
        comparison.insert(0, "which", ["default", "tuned"])
    benign_peaks = peaks(overall_b)
    top = [i for i in np.argsort(-benign_peaks, kind="stable")[:n_drivers]
           if benign_peaks[i] > 0]
    drivers = [{"client_id": clients[i], "peak_score": float(benign_peaks[i]),
                "n_queries": int(len(overall_b[i])),
                "reason": (reasons or {}).get(clients[i]),
                "source": (sources or {}).get(clients[i])} for i in top]
    return TuningResult(
        default_threshold=default_threshold, comparison=comparison, drivers=drivers,
        config=config.replace(score_threshold=threshold),
        threshold=threshold, target_fpr=target_fpr, confidence=confidence, horizon=horizon,
        n_benign=n, benign_flagged=k, achieved_fpr=k / n, fpr_upper=upper,
        supported=supported, message=message, detectors=per,
        curves=pd.concat(curves, ignore_index=True), n_attack=len(attack_clients),
        tpr=float(chosen_row["tpr"]) if attack_clients else None, auc=auc,
        median_queries_to_flag=float(chosen_row["median_queries_to_flag"])
        if attack_clients else None,
    )


def tune_logs(profile: Profile, benign_logs: Sequence[str | Path],
              attack_logs: Sequence[str | Path] = (), *, config: MonitorConfig | None = None,
              model=None, target_fpr: float = 0.01, confidence: float = 0.95,
              horizon: int | None = None, margin: float = 0.5, per_detector: bool = True,
              columns=None, on_progress=None) -> TuningResult:
    """Read logs, replay every client, label clients, and :func:`tune`.

    A client is an attack when its ``truth_is_attack`` says so; without that column,
    clients of ``benign_logs`` are benign and clients of ``attack_logs`` are attacks.
    Client ids must be unique across logs. The same file given twice is read once.
    ``columns`` is the logs' :class:`~monitor.logs.LogColumns`; ``on_progress(done, total)``
    counts replays (one per log and detector run). The result compares the tuned threshold
    with the untuned monitor's and names the benign clients with the highest peaks.
    """
    from monitor.logs import read_log

    config = config or MonitorConfig()
    default_threshold = float(Monitor(profile, config=config.replace(score_threshold=None),
                                      model=model).threshold)
    for path in [*benign_logs, *attack_logs]:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
    digests = {str(p): sha256_of(p) for p in [*benign_logs, *attack_logs]}
    runs_per_log = 1 + (len(config.detectors) if per_detector else 0)
    # a file given twice (under any name) is replayed once: count what is replayed
    total_runs, runs_done = len(set(digests.values())) * runs_per_log, 0
    reasons: dict[str, str] = {}
    client_sources: dict[str, str] = {}
    replays: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, bool] = {}
    fidelity: dict[str, np.ndarray] = {}
    sources: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for role, paths in (("benign", benign_logs), ("attacks", attack_logs)):
        for path in paths:
            digest = digests[str(path)]
            if digest in seen:
                continue
            seen[digest] = str(path)
            sources.append({"role": role, "path": str(path), "sha256": digest})
            log = read_log(path, profile.schema_, len(profile.classes_),
                           extra=TRUTH_COLUMNS, columns=columns)
            clash = sorted(set(log.clients()) & set(labels))
            if clash:
                raise ValueError(f"{Path(path).name}: client id {clash[0]!r} also appears in "
                                 "another log; client ids must be unique across logs")
            truth = read_truth(log)
            kinds = client_truth(truth, default_attack=role == "attacks")
            labels.update({c: bool(kinds["is_attack"].get(c, role == "attacks"))
                           for c in log.clients()})
            fidelity.update(client_fidelity(truth))
            client_sources.update(dict.fromkeys(log.clients(), str(path)))
            scores, verdicts = replay_scores(log, profile, config, model, horizon)
            replays.setdefault(OVERALL, {}).update(scores)
            reasons.update({c: v.reason for c, v in verdicts.items()})
            runs_done += 1
            if on_progress is not None:
                on_progress(runs_done, total_runs)
            for name in (config.detectors if per_detector else ()):
                alone = config.replace(detectors=(name,), score_threshold=None)
                replays.setdefault(name, {}).update(
                    replay_scores(log, profile, alone, model, horizon)[0])
                runs_done += 1
                if on_progress is not None:
                    on_progress(runs_done, total_runs)
    benign, attacks = split_by_truth(replays, labels)
    result = tune(benign, attacks if attacks[OVERALL] else None, config=config,
                  target_fpr=target_fpr, confidence=confidence, horizon=horizon,
                  margin=margin, fidelity=fidelity, default_threshold=default_threshold,
                  reasons=reasons, sources=client_sources)
    result.sources = sources
    return result


def split_by_truth(replays: Mapping[str, Mapping[str, np.ndarray]], is_attack: Mapping[str, bool]
                   ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Split ``{name: {client: scores}}`` into (benign, attacks) by client label."""
    benign = {n: {c: s for c, s in d.items() if not is_attack.get(c, False)}
              for n, d in replays.items()}
    attack = {n: {c: s for c, s in d.items() if is_attack.get(c, False)}
              for n, d in replays.items()}
    return benign, attack


__all__ = [
    "OVERALL", "TRUTH_COLUMNS", "TuningResult", "calibrated_false_alarm_rate", "choose_threshold",
    "client_fidelity", "client_truth",
    "clopper_pearson_upper", "first_crossings", "min_clients_for", "peaks", "read_truth",
    "replay_detectors", "replay_scores", "observed_levels", "roc_auc_from_curve", "sha256_of",
    "split_by_truth", "threshold_curve", "tune", "tune_logs",
]
