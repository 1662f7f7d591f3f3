"""A single self-contained HTML report of a monitor's verdicts (PNG plots inlined).

Sections: a table of clients (flagged first, with which detector fired and why),
per-client score timelines with the threshold line, ROC / detection-delay curves when
ground truth is known, and the profile's calibration checks. Plots are drawn with
matplotlib's Agg canvas directly (no pyplot, no global backend change) and saved without
timestamps, so the same inputs give the same file.

>>> import pandas as pd
>>> table = pd.DataFrame({"client_id": ["a", "b"], "n_queries": [10, 20], "score": [0.0, 3.1],
...                       "peak_score": [0.0, 3.1], "threshold": [2.0, 2.0],
...                       "flagged": [False, True], "flag_at": [None, 12],
...                       "reason": ["not flagged", "14 of the last 19 ..."]})
>>> html = render_report(table, title="demo")
>>> html.index("<td>b</td>") < html.index("<td>a</td>"), html.startswith("<!DOCTYPE html>")
(True, True)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monitor.tuning import OVERALL, roc_auc_from_curve

MAX_TIMELINES = 24
"""Timelines drawn at most (flagged clients first, then the highest peaks)."""


def png_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (deterministic: no metadata)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def order_clients(table: pd.DataFrame) -> pd.DataFrame:
    """Flagged clients first (earliest flag first), then by peak score, highest first."""
    key = table.assign(
        _flagged=~table["flagged"].astype(bool),
        _flag_at=pd.to_numeric(table["flag_at"], errors="coerce").astype("float64")
        .fillna(np.inf) if "flag_at" in table else 0.0,
        _peak=-pd.to_numeric(table["peak_score"], errors="coerce").astype("float64")
        .fillna(0.0) if "peak_score" in table else 0.0,
    )
    key = key.sort_values(["_flagged", "_peak", "_flag_at", "client_id"], kind="stable")
    return key.drop(columns=["_flagged", "_flag_at", "_peak"]).reset_index(drop=True)


def fired_detector(row: pd.Series) -> str:
    """The detector with the highest ``score_<name>`` column (empty when none)."""
    scores = {k[6:]: v for k, v in row.items()
              if isinstance(k, str) and k.startswith("score_") and pd.notna(v)}
    if not scores:
        return ""
    name, value = max(scores.items(), key=lambda kv: float(kv[1]))
    return name if float(value) > 0 else ""


def timeline_figure(client: str, scores: np.ndarray, threshold: float,
                    flag_at: int | None) -> Figure:
    """One client's overall score after each query, with the threshold line."""
    fig = Figure(figsize=(6.4, 2.2))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(scores) + 1), scores, lw=1.2, color="#1f77b4", label="score")
    ax.axhline(threshold, color="#d62728", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if flag_at is not None:
        ax.axvline(flag_at + 1, color="#ff7f0e", lw=1, label=f"flagged at query {flag_at + 1}")
    ax.set_title(client, fontsize=9)
    ax.set_xlabel("query", fontsize=8)
    ax.set_ylabel("score", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def curves_figure(curves: pd.DataFrame) -> Figure:
    """ROC (left) and median queries-to-flag against FPR (right), per detector."""
    fig = Figure(figsize=(9, 3.4))
    roc, delay = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, part in curves.groupby("detector", sort=False):
        part = part.sort_values("threshold")
        auc = roc_auc_from_curve(part["fpr"].to_numpy(), part["tpr"].to_numpy())
        fpr, tpr = part["fpr"].to_numpy(), part["tpr"].to_numpy()
        order = np.lexsort((tpr, fpr))
        roc.plot(np.r_[0.0, fpr[order], 1.0], np.r_[0.0, tpr[order], 1.0],
                 label=f"{name} (AUC {auc:.3f})", lw=2 if name == OVERALL else 1)
        delay.plot(part["threshold"], part["median_queries_to_flag"], marker=".",
                   label=name, lw=2 if name == OVERALL else 1)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.5)
    roc.set_xlabel("fraction of benign clients flagged")
    roc.set_ylabel("fraction of attacks flagged")
    roc.set_title("ROC over clients (peak score)")
    roc.legend(fontsize=7)
    delay.set_xlabel("threshold")
    delay.set_ylabel("median queries to flag")
    delay.set_title("detection delay")
    delay.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _calibration_statistics(profile) -> dict[str, np.ndarray]:
    """Each detector's calibration statistic (higher = more unusual), by detector name."""
    calibration = getattr(profile, "calibration_", {}) or {}
    return {name: np.asarray(values["statistic"]) for name, values in calibration.items()
            if "statistic" in values and len(values["statistic"])}


def calibration_checks(profile, level: float = 0.01) -> pd.DataFrame:
    """Per calibration statistic: values, ties, and the leave-one-out fraction with p <= level.

    For exchangeable data the fraction is at most ``level``; far below it means ties or a
    coarse statistic (fewer extreme events than promised, so less power), above it means
    a bug.
    """
    rows = []
    for name, values in _calibration_statistics(profile).items():
        values = np.sort(np.asarray(values, dtype=np.float64))
        n = len(values)
        at_least = n - np.searchsorted(values, values, side="left")  # includes itself
        p = at_least / n  # conformal p-value of each value against the other n-1 (+1)
        rows.append({"statistic": name, "n": n,
                     "distinct": int(len(np.unique(values))),
                     "level": level, "fraction_p_le_level": float(np.mean(p <= level))})
    return pd.DataFrame(rows)


def calibration_figure(profile) -> Figure:
    """Histograms of the profile's calibration statistics."""
    statistics = _calibration_statistics(profile)
    fig = Figure(figsize=(3.2 * max(len(statistics), 1), 2.6))
    for i, (name, values) in enumerate(statistics.items()):
        ax = fig.add_subplot(1, len(statistics), i + 1)
        ax.hist(values, bins=30, color="#7f7f7f")
        ax.set_title(f"calibration: {name}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _table_html(frame: pd.DataFrame, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cls = ' class="flagged"' if bool(row.get("flagged", False)) else ""
        cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.to_numpy())
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


_STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:1100px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}
tr.flagged{background:#fde0dc}h2{margin-top:1.5em}img{max-width:100%}
"""


def render_report(table: pd.DataFrame, *, timelines: Mapping[str, np.ndarray] | None = None,
                  curves: pd.DataFrame | None = None, profile=None,
                  truth: Mapping[str, bool] | None = None, title: str = "extraction-monitor report",
                  max_timelines: int = MAX_TIMELINES, level: float = 0.01) -> str:
    """The report as one HTML string.

    ``table``: verdicts as written by ``extraction-monitor analyze`` (client_id, flagged,
    flag_at, peak_score, threshold, reason, score_<detector>...). ``timelines``: client ->
    overall score after each query. ``curves``: :func:`monitor.tuning.threshold_curve`
    rows with a ``detector`` column (needs ground truth). ``truth``: client -> is attack.
    """
    required = {"client_id", "flagged"}
    missing = sorted(required - set(table.columns))
    if missing:
        raise ValueError(f"verdict table lacks column(s) {', '.join(missing)}; "
                         "give a table written by `extraction-monitor analyze` or a log")
    table = order_clients(table)
    shown = table.copy()
    shown.insert(1, "fired", [fired_detector(r) if bool(r["flagged"]) else ""
                              for _, r in table.iterrows()])
    if truth is not None:
        shown.insert(2, "truth", shown["client_id"].astype(str).map(
            lambda c: "attack" if truth.get(c) else "benign"))
    n_flagged = int(table["flagged"].astype(bool).sum())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(table)} clients, <b>{n_flagged} flagged</b> (listed first).</p>",
        "<h2>Clients</h2>", _table_html(shown, "clients"),
    ]
    if timelines:
        parts.append("<h2>Score timelines</h2>")
        for _, row in table.head(max_timelines).iterrows():
            client = str(row["client_id"])
            if client not in timelines or len(timelines[client]) == 0:
                continue
            flag_at = row.get("flag_at")
            flag_at = None if flag_at is None or pd.isna(flag_at) else int(flag_at)
            threshold = float(row.get("threshold", np.nan))
            fig = timeline_figure(client, np.asarray(timelines[client]), threshold, flag_at)
            reason = html.escape(str(row.get("reason", "")))
            parts.append(f'<div class="timeline"><img alt="score timeline of '
                         f'{html.escape(client)}" src="{png_data_uri(fig)}">'
                         f"<p>{reason}</p></div>")
        if len(table) > max_timelines:
            parts.append(f"<p>(timelines of the first {max_timelines} clients only)</p>")
    elif "n_queries" in table.columns:
        parts.append("<p>No per-query timelines: give the log (not a verdict table) to draw "
                     "them.</p>")
    if curves is not None and "tpr" in curves.columns:
        parts.append("<h2>ROC and detection delay (ground truth)</h2>")
        parts.append(f'<img alt="ROC and delay curves" src="{png_data_uri(curves_figure(curves))}">')
        aucs = {name: roc_auc_from_curve(p["fpr"].to_numpy(), p["tpr"].to_numpy())
                for name, p in curves.groupby("detector", sort=False)}
        parts.append(_table_html(pd.DataFrame({"detector": list(aucs),
                                               "roc_auc": list(aucs.values())}), "auc"))
    if profile is not None:
        parts.append("<h2>Profile calibration checks</h2>")
        source = html.escape(str(getattr(profile, "calibration_source_", "")))
        parts.append(f"<p>Calibrated on: {source}. Fraction of calibration values whose "
                     f"leave-one-out conformal p-value is at most {level} (should be close to "
                     f"{level}; far below means ties).</p>")
        parts.append(_table_html(calibration_checks(profile, level), "calibration"))
        parts.append(f'<img alt="calibration histograms" '
                     f'src="{png_data_uri(calibration_figure(profile))}">')
    parts.append("</body></html>")
    return "\n".join(parts)


def is_verdict_table(path) -> bool:
    """Whether ``path`` holds a verdict table (``peak_score`` and ``flagged``) rather than a log."""
    from monitor.logs import read_table

    columns = set(read_table(path).columns)
    return {"peak_score", "flagged"} <= columns and "x_0" not in columns


def build_report(path, profile, config=None, model=None, title: str | None = None) -> str:
    """The HTML report of a verdict table, or of a log (replayed first; with ground truth
    columns, ROC / delay curves too)."""
    from monitor.logs import read_log, read_table
    from monitor.monitor import Monitor
    from monitor.replay import replay_log
    from monitor.tables import verdict_table
    from monitor.tuning import (
        TRUTH_ATTACK,
        TRUTH_COLUMNS,
        client_truth,
        read_truth,
        threshold_curve,
    )

    title = title or f"extraction-monitor report: {getattr(path, 'name', path)}"
    if is_verdict_table(path):
        table = read_table(path)
        table["flagged"] = table["flagged"].map(
            lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
        return render_report(table, profile=profile, title=title)
    log = read_log(path, profile.feature_names_, len(profile.classes_), extra=TRUTH_COLUMNS)
    replay = replay_log(log, Monitor(profile, config=config, model=model), keep_scores=True)
    scores = replay.scores
    table = verdict_table(replay.verdicts.values())
    truth_rows = read_truth(log)
    truth = curves = None
    if TRUTH_ATTACK in truth_rows.columns:
        kinds = client_truth(truth_rows, default_attack=False)
        truth = {c: bool(kinds["is_attack"].get(c, False)) for c in scores}
        benign = [s for c, s in scores.items() if not truth[c]]
        attacks = [s for c, s in scores.items() if truth[c]]
        if benign and attacks:
            levels = np.unique(np.concatenate([np.zeros(1), *scores.values()]))
            curves = threshold_curve(benign, attacks, levels)
            curves.insert(0, "detector", OVERALL)
    return render_report(table, timelines=scores, curves=curves, profile=profile,
                         truth=truth, title=title)


__all__ = ["MAX_TIMELINES", "build_report", "calibration_checks", "is_verdict_table",
           "order_clients", "png_data_uri", "render_report"]
