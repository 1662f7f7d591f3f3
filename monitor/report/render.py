"""Render the report: verdicts (and, from a log, per-query scores, times and rows) into one
self-contained HTML page from the Jinja2 template ``templates/report.html.j2``.

The page reads top-down: a summary (flagged clients, when each was flagged — on a time axis
when the log has timestamps —, exposure and the detector that fired), one drill-down per
flagged client (score timeline with the threshold, queries to flag, and the features that
pushed its queries out of the reference distribution), the highest-scoring clients that were
not flagged and the full client table (both collapsed), then calibration (the benign score
distribution against the threshold and the profile's calibration checks) and, with ground
truth, ROC and detection-delay curves. Plots are static inline SVG (:mod:`monitor.report.figures`:
no JavaScript library), so the file is small, opens offline and loads nothing from the network.
The same inputs give the same bytes.

The page speaks plain words, not the core's units: evidence and scores are said as odds ("a
benign client gets this far about 1 in 1,000 times", :func:`odds`, :func:`plain_reason`), the
exposure figure says after which query and on which records it was measured, and each flagged
client gets a recommended action with its reason (:func:`recommend`).

**Query numbers start at 1** everywhere in the report ("flagged at query N" means the N-th
query of the client, so N is also the number of queries it took to flag it); the verdict
table's ``flag_at`` is 0-based, so N = ``flag_at`` + 1.

>>> import pandas as pd
>>> table = pd.DataFrame({"client_id": ["a", "b"], "n_queries": [10, 20], "score": [0.0, 3.1],
...                       "peak_score": [0.0, 3.1], "threshold": [2.0, 2.0],
...                       "flagged": [False, True], "flag_at": [None, 12],
...                       "reason": ["not flagged", "14 of the last 19 ..."]})
>>> html = render_report(table, title="demo")
>>> html.startswith("<!DOCTYPE html>"), "flagged at query 13" in html
(True, True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.report import figures
from monitor.report.explain import WINDOW, explained_rows, feature_deviation
from monitor.tuning import OVERALL, roc_auc_from_curve

MAX_TIMELINES = 24
"""Drill-downs drawn at most (flagged clients first, then the highest peaks)."""
MAX_UNFLAGGED = 8
"""Highest-scoring clients that were not flagged, drilled into (collapsed)."""
TEMPLATES = Path(__file__).with_name("templates")


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = _number
    return env


def _number(value, digits: int = 3) -> str:
    """A number for the page (``—`` when missing)."""
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    return str(value)


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
    """The detector whose test raised the flag (``flag_detector``), or for tables without that
    column the one with the highest ``score_<name>`` (empty when none)."""
    named = row.get("flag_detector")
    if isinstance(named, str) and named:
        return named
    scores = {k[6:]: v for k, v in row.items()
              if isinstance(k, str) and k.startswith("score_") and pd.notna(v)}
    if not scores:
        return ""
    name, value = max(scores.items(), key=lambda kv: float(kv[1]))
    return name if float(value) > 0 else ""


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


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
LN10 = float(np.log(10.0))


def odds(power: float) -> str:
    """"1 in 10^power" in plain words: written out up to a million, else as a power of ten.

    >>> odds(2), odds(3.4), odds(14.33), odds(0.2)
    ('1 in 100', '1 in 1,000', '1 in 10¹⁴', '1 in 1')
    """
    k = max(0, int(round(float(power)))) if np.isfinite(power) else 0
    return f"1 in {10 ** k:,}" if k <= 6 else f"1 in 10{str(k).translate(_SUPERSCRIPT)}"


def _nats_odds(nats: str) -> str:
    return odds(float(nats) / LN10)


_FLAG_EVIDENCE = re.compile(r"\((\d+(?:\.\d+)?) nats of evidence; (\d+(?:\.\d+)?) flag\)")
_NEAREST = re.compile(r"nearest test (\S+): (\d+(?:\.\d+)?) of (\d+(?:\.\d+)?) nats over "
                      r"(\d+) units")
_NATS = re.compile(r"(\d+(?:\.\d+)?) nats")


def plain_reason(reason: str) -> str:
    """A verdict's reason with the core's "nats" of evidence said as odds.

    The core sums each unusual query's ``-ln p`` (in nats); ``k`` nats are p-values whose
    product is ``e^-k``, about 1 in ``10^(k / ln 10)``: how unlikely it is that independent
    benign queries would be this unusual together by chance.

    >>> plain_reason("5 of the last 5 distinct queries lie farther from the training data "
    ...              "than 90% of real inputs (33 nats of evidence; 31 flag)").split(" (")[1]
    'strength of evidence: queries this unusual together happen by chance about 1 in 10¹⁴ times; the flag needs 1 in 10¹³)'
    >>> plain_reason("not flagged; nearest test density.w32: 12 of 31 nats over 17 units")
    'not flagged; closest to flagging: test density.w32, evidence of about 1 in 100,000 by chance (flagging needs 1 in 10¹³), over 17 distinct queries'
    >>> plain_reason("flagged")
    'flagged'
    """
    text = _FLAG_EVIDENCE.sub(
        lambda m: f"(strength of evidence: queries this unusual together happen by chance "
                  f"about {_nats_odds(m[1])} times; the flag needs {_nats_odds(m[2])})",
        str(reason))
    text = _NEAREST.sub(
        lambda m: f"closest to flagging: test {m[1]}, evidence of about {_nats_odds(m[2])} by "
                  f"chance (flagging needs {_nats_odds(m[3])}), over {m[4]} distinct queries",
        text)
    return _NATS.sub(lambda m: f"evidence of about {_nats_odds(m[1])} by chance", text)


def score_odds(score: float) -> str:
    """What a score means: a benign client reaches it about 1 in ``10^score`` times (the
    score is ``-log10`` of that probability, bounded over the monitor's horizon).

    >>> score_odds(2.0), score_odds(0.1)
    ('about 1 in 100', 'often')
    """
    if not np.isfinite(score) or score < 0.5:
        return "often"
    return "about " + odds(score)


STRONG_MARGIN = 2.0
"""A peak score this far past the threshold (100 times rarer for a benign client) is
overwhelming evidence: the report recommends blocking."""
DEFAULT_EXPOSURE_LIMIT = 0.5
"""Exposure past which the report recommends blocking when ``[monitor] exposure_limit`` is
not set."""


def recommend(flagged: bool, peak_score: float, score_now: float | None, threshold: float,
              exposure: float | None, exposure_limit: float | None = None
              ) -> tuple[str, str] | None:
    """A recommended action for a client and its one-line reason (``None``: not flagged).

    * **block** when its answers already leak a copy reaching the exposure limit
      (``exposure_limit``, else :data:`DEFAULT_EXPOSURE_LIMIT`), or when its peak score is
      :data:`STRONG_MARGIN` or more past the threshold;
    * **throttle** when it is still over the threshold after its last query;
    * **review** otherwise (flagged once, its score has fallen back below the threshold).

    >>> recommend(True, 9.0, 9.0, 2.0, 0.3)[0], recommend(True, 2.5, 2.4, 2.0, 0.7)[0]
    ('block', 'block')
    >>> recommend(True, 2.5, 2.4, 2.0, 0.1)[0], recommend(True, 2.5, 0.3, 2.0, None)
    ('throttle', ('review', 'flagged once, but its score fell back below the threshold (0.3 < 2) and its exposure is unknown: look at its queries before acting'))
    >>> recommend(False, 1.0, 1.0, 2.0, 0.9) is None
    True
    """
    if not flagged:
        return None
    limit = DEFAULT_EXPOSURE_LIMIT if exposure_limit is None else float(exposure_limit)
    source = "its exposure limit" if exposure_limit is not None else "the report's default limit"
    shown = "unknown" if exposure is None else f"{100 * exposure:.0f}%"
    if exposure is not None and exposure >= limit:
        return "block", (f"a copy built from its answers already agrees with the model on "
                         f"{shown} of the reference records, past {source} of "
                         f"{100 * limit:.0f}%")
    if np.isfinite(threshold) and peak_score >= threshold + STRONG_MARGIN:
        return "block", (f"overwhelming evidence: a benign client reaches its peak score "
                         f"{peak_score:.3g} {score_odds(peak_score)} times (the threshold is "
                         f"{odds(threshold)})")
    if score_now is not None and np.isfinite(score_now) and score_now >= threshold:
        return "throttle", (f"still over the threshold at its last query (score "
                            f"{score_now:.3g} ≥ {threshold:.3g}) but exposure {shown} is below "
                            f"{100 * limit:.0f}%: slow it down while someone reviews it")
    now = "unknown" if score_now is None or not np.isfinite(score_now) else f"{score_now:.3g}"
    exposure_text = "is unknown" if exposure is None else f"{shown} is below {100 * limit:.0f}%"
    return "review", (f"flagged once, but its score fell back below the threshold ({now} < "
                      f"{threshold:.3g}) and its exposure {exposure_text}: look at its queries "
                      f"before acting")


def _anchor(client: str) -> str:
    return "client-" + re.sub(r"[^A-Za-z0-9_-]", "_", client)


def _flag_index(row) -> int | None:
    value = row.get("flag_at")
    return None if value is None or pd.isna(value) else int(value)


def _time_text(value, kind: str | None) -> str:
    if value is None or not np.isfinite(value):
        return ""
    if kind == "datetime":
        return figures.as_datetimes([value])[0].strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{value:g}"


def _exposure(value) -> float | None:
    value = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(value) else float(value)


def _score(value) -> float | None:
    value = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(value) else float(value)


def _summary_rows(table: pd.DataFrame, times: Mapping[str, np.ndarray], time_kind,
                  truth: Mapping[str, bool] | None,
                  exposure_limit: float | None = None) -> pd.DataFrame:
    """One row per client with what the summary shows (1-based ``flag_query``; the reason in
    plain words; the recommended action of a flagged client)."""
    rows = []
    for _, row in table.iterrows():
        client = str(row["client_id"])
        at = _flag_index(row) if bool(row["flagged"]) else None
        t = times.get(client)
        has_t = t is not None and len(t) > 0
        peak = float(pd.to_numeric(row.get("peak_score", 0.0), errors="coerce") or 0)
        threshold = float(pd.to_numeric(row.get("threshold", np.nan), errors="coerce"))
        exposure = _exposure(row.get("exposure"))
        action = recommend(bool(row["flagged"]), peak, _score(row.get("score")), threshold,
                           exposure, exposure_limit)
        n_queries = int(row.get("n_queries", 0) or 0)
        rows.append({
            "client_id": client, "anchor": _anchor(client),
            "group_id": "" if pd.isna(row.get("group_id", np.nan)) else str(row.get("group_id")),
            "flagged": bool(row["flagged"]), "flag_at": at,
            "flag_query": None if at is None else at + 1,
            "flag_time": float(t[at]) if has_t and at is not None and at < len(t) else np.nan,
            "first_time": float(np.nanmin(t)) if has_t else np.nan,
            "last_time": float(np.nanmax(t)) if has_t else np.nan,
            "n_queries": n_queries, "peak_score": peak, "threshold": threshold,
            "peak_odds": score_odds(peak), "exposure": exposure,
            "exposure_when": f"after query {n_queries:,}, its last" if n_queries else "",
            "detector": fired_detector(row) if bool(row["flagged"]) else "",
            "reason": plain_reason(str(row.get("reason", "") or "")),
            "action": action[0] if action else "", "action_why": action[1] if action else "",
            "truth": None if truth is None else ("attack" if truth.get(client) else "benign"),
        })
    frame = pd.DataFrame(rows)
    frame["flag_time_text"] = [_time_text(v, time_kind) for v in frame["flag_time"]]
    return frame


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts, with query indexes as int or None (not NaN floats)."""
    out = frame.to_dict("records")
    for row in out:
        for key in ("flag_at", "flag_query", "exposure"):
            value = row.get(key)
            if value is None or pd.isna(value):
                row[key] = None
            elif key != "exposure":
                row[key] = int(value)
    return out


def _figure(fig) -> dict[str, str]:
    """A figure as the page embeds it: its SVG drawing and its data (JSON)."""
    return {"svg": figures.figure_svg(fig), "json": figures.figure_json(fig)}


def _reference_records(profile) -> str:
    """The records exposure is measured on, in words ("" without a profile)."""
    subset = getattr(profile, "exposure_", None) or {}
    n = len(subset.get("points", ()))
    if profile is None or not n:
        return ""
    held_out = str(getattr(profile, "calibration_source_", "")).startswith("calibration")
    kind = "held-out calibration records" if held_out else "training records"
    return f"the profile's {n:,} reference records ({kind}, with the model's own answers)"


def _drilldown(summary: dict, scores, times, time_kind, rows: np.ndarray | None, profile,
               window: int) -> dict:
    """What one client's drill-down shows."""
    view = dict(summary)
    view["open"] = summary["flagged"]
    view["timeline"] = None
    view["features"] = None
    view["feature_rows"] = []
    view["window_text"] = ""
    if scores is not None and len(scores):
        fig = figures.timeline_figure(summary["client_id"], scores, summary["threshold"],
                                      summary["flag_at"], times, time_kind)
        view["timeline"] = _figure(fig)
    if rows is not None and profile is not None and len(rows):
        part = explained_rows(len(rows), summary["flag_at"], scores, window)
        deviation = feature_deviation(profile, rows[part])
        view["features"] = _figure(figures.features_figure(deviation))
        view["feature_rows"] = deviation.head(8).to_dict("records")
        what = "up to and including the flagging query" if summary["flag_at"] is not None \
            else "ending at its highest score"
        view["window_text"] = (f"queries {part.start + 1}–{part.stop} ({part.stop - part.start} "
                               f"queries, {what})")
    return view


def render_report(table: pd.DataFrame, *, timelines: Mapping[str, np.ndarray] | None = None,
                  curves: pd.DataFrame | None = None, profile=None,
                  truth: Mapping[str, bool] | None = None, title: str = "extraction-monitor report",
                  max_timelines: int = MAX_TIMELINES, level: float = 0.01,
                  times: Mapping[str, np.ndarray] | None = None, time_kind: str | None = None,
                  rows: Mapping[str, np.ndarray] | None = None, window: int = WINDOW,
                  source: str = "", exposure_limit: float | None = None) -> str:
    """The report as one HTML string.

    ``table``: verdicts as written by ``extraction-monitor analyze`` (client_id, flagged,
    flag_at, peak_score, threshold, reason, exposure, score_<detector>...). ``timelines``:
    client -> overall score after each query; ``times``: client -> each query's time
    (``time_kind`` ``"datetime"``: ns since the epoch, or ``"numeric"``); ``rows``: client ->
    its query rows (features), for the per-feature z-scores (needs ``profile``). ``curves``:
    :func:`monitor.tuning.threshold_curve` rows with a ``detector`` column (needs ground
    truth). ``truth``: client -> is attack. ``exposure_limit``: the monitor config's, for the
    recommended actions (:func:`recommend`).
    """
    required = {"client_id", "flagged"}
    missing = sorted(required - set(table.columns))
    if missing:
        raise ValueError(f"verdict table lacks column(s) {', '.join(missing)}; "
                         "give a table written by `extraction-monitor analyze` or a log")
    table = order_clients(table)
    timelines, times, rows = timelines or {}, times or {}, rows or {}
    summary = _summary_rows(table, times, time_kind, truth, exposure_limit)
    flagged = summary[summary["flagged"]]
    thresholds = summary["threshold"].dropna()
    threshold = float(thresholds.median()) if len(thresholds) else float("nan")
    summary_fig = None
    if len(flagged):
        summary_fig = _figure(figures.flag_summary_figure(
            flagged, time_kind if times else None))

    drawable = summary if timelines or rows else summary.iloc[:0]
    interesting = (drawable["peak_score"] > 0) | (drawable["truth"] == "attack")
    flagged_rows = drawable[drawable["flagged"]].head(max_timelines)
    unflagged = drawable[~drawable["flagged"] & interesting].head(MAX_UNFLAGGED)
    flagged_views = [_drilldown(r, timelines.get(r["client_id"]), times.get(r["client_id"]),
                                time_kind, rows.get(r["client_id"]), profile, window)
                     for r in _records(flagged_rows)]
    unflagged_views = [_drilldown(r, timelines.get(r["client_id"]), times.get(r["client_id"]),
                                  time_kind, rows.get(r["client_id"]), profile, window)
                       for r in _records(unflagged)]

    is_attack = None
    if truth is not None:
        is_attack = summary["client_id"].map(lambda c: bool(truth.get(c, False)))
    distribution = _figure(figures.score_distribution_figure(
        summary["peak_score"], is_attack, summary["flagged"], threshold)) \
        if np.isfinite(threshold) else None

    auc_rows, curves_fig = [], None
    if curves is not None and "tpr" in curves.columns:
        auc = {name: roc_auc_from_curve(p["fpr"].to_numpy(), p["tpr"].to_numpy())
               for name, p in curves.groupby("detector", sort=False)}
        curves_fig = [_figure(f) for f in figures.curves_figure(curves, auc)]
        auc_rows = [{"detector": k, "roc_auc": v} for k, v in auc.items()]

    n_flagged = len(flagged)
    delays = flagged["flag_query"].dropna()
    exposures = summary["exposure"].dropna()
    records = _reference_records(profile)
    exposure_card = {"id": "kpi-exposure", "label": "highest exposure", "value": "—",
                     "detail": ""}
    if len(exposures):
        top = summary.loc[exposures.idxmax()]
        exposure_card.update(
            value=f"{100 * top['exposure']:.0f}%", client=top["client_id"],
            flagged=bool(top["flagged"]),
            anchor=top["anchor"] if bool(top["flagged"]) and timelines else "",
            detail=f"{top['exposure_when']}" + (f", on {records}" if records else ""))
    kpis = [{"label": "clients", "value": _number(len(summary))},
            {"label": "flagged", "value": _number(n_flagged), "alert": n_flagged > 0},
            {"label": "queries", "value": _number(int(summary["n_queries"].sum()))},
            {"label": "median queries to flag",
             "value": _number(float(delays.median())) if len(delays) else "—"},
            {"label": "threshold (score)", "value": _number(threshold),
             "detail": f"a benign client reaches it {score_odds(threshold)} times"
             if np.isfinite(threshold) else ""},
            exposure_card]
    if truth is not None:
        attacks = summary[summary["truth"] == "attack"]
        benign = summary[summary["truth"] == "benign"]
        kpis.append({"label": "attacks flagged",
                     "value": f"{int(attacks['flagged'].sum())} of {len(attacks)}"})
        kpis.append({"label": "benign flagged",
                     "value": f"{int(benign['flagged'].sum())} of {len(benign)}"})
    kpis = [{"id": "", "alert": False, "detail": "", **k} for k in kpis]
    actions = flagged["action"].value_counts()

    extra_columns = [c for c in table.columns if c not in (
        "client_id", "n_queries", "score", "peak_score", "threshold", "flagged", "flag_at",
        "reason", "exposure", "n_skipped") and not str(c).startswith("score_")]
    detectors = [c for c in table.columns if str(c).startswith("score_")]
    context = {
        "title": title, "source": source, "kpis": kpis, "time_kind": time_kind if times else None,
        "time_column": "", "flagged": _records(flagged), "summary_fig": summary_fig,
        "flagged_views": flagged_views, "unflagged_views": unflagged_views,
        "has_drilldown": bool(timelines or rows), "max_timelines": max_timelines,
        "n_not_drawn": max(0, n_flagged - len(flagged_views)),
        "clients": _records(summary), "has_truth": truth is not None,
        "has_groups": bool(summary["group_id"].astype(bool).any()),
        "table_rows": table.to_dict("records"), "detectors": detectors,
        "extra_columns": extra_columns, "distribution": distribution,
        "threshold": threshold, "profile": profile is not None,
        "calibration_source": str(getattr(profile, "calibration_source_", "") or ""),
        "checks": calibration_checks(profile, level).to_dict("records")
        if profile is not None else [], "level": level,
        "curves_fig": curves_fig, "auc_rows": auc_rows, "window": window,
        "reference_records": records, "actions": {a: int(actions.get(a, 0))
                                                  for a in ("block", "throttle", "review")},
        "exposure_limit": exposure_limit, "default_exposure_limit": DEFAULT_EXPOSURE_LIMIT,
    }
    return _environment().get_template("report.html.j2").render(**context)


def is_verdict_table(path) -> bool:
    """Whether ``path`` holds a verdict table (``peak_score`` and ``flagged``) rather than a log."""
    from monitor.logs import read_table

    columns = set(read_table(path).columns)
    return {"peak_score", "flagged"} <= columns and "x_0" not in columns


def build_report(path, profile, config=None, model=None, title: str | None = None,
                 columns=None, on_progress=None) -> str:
    """The HTML report of a verdict table, or of a log (replayed first: then with per-client
    timelines, feature z-scores, a time axis when the log has timestamps, and ROC / delay
    curves with ground truth columns). ``columns`` is the log's
    :class:`~monitor.logs.LogColumns`; ``on_progress(rows_done, rows_total)`` follows the
    replay."""
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

    name = getattr(path, "name", str(path))
    limit = getattr(config, "exposure_limit", None)
    title = title or f"extraction-monitor report: {name}"
    if is_verdict_table(path):
        table = read_table(path)
        table["flagged"] = table["flagged"].map(
            lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
        if "client_id" in table.columns:
            table["client_id"] = table["client_id"].astype(str)
        return render_report(table, profile=profile, title=title,
                             source=f"verdict table {name}", exposure_limit=limit)
    log = read_log(path, profile.schema_, len(profile.classes_), extra=TRUTH_COLUMNS,
                   columns=columns)
    replay = replay_log(log, Monitor(profile, config=config, model=model), keep_scores=True,
                        on_progress=on_progress)
    scores = replay.scores
    table = verdict_table(replay.verdicts.values(), log.skipped_per_client)
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
    rows = {client: log.X[part] for client, part in log.client_slices()}
    source = f"query log {name} ({log.n_rows:,} queries"
    source += f", time column {log.time_column!r})" if log.time is not None else ")"
    return render_report(table, timelines=scores, curves=curves, profile=profile,
                         truth=truth, title=title, times=log.client_times(),
                         time_kind=log.time_kind, rows=rows, source=source,
                         exposure_limit=limit)


__all__ = ["MAX_TIMELINES", "build_report", "calibration_checks", "fired_detector",
           "is_verdict_table", "odds", "order_clients", "plain_reason", "recommend",
           "render_report", "score_odds"]
