"""The report's interactive figures, built with Plotly and embedded as JSON.

Each function returns a ``plotly.graph_objects.Figure``; :func:`figure_json` turns it into the
JSON the page hands to ``Plotly.newPlot`` (Plotly's JavaScript is inlined once per page by
:func:`plotly_js`, so the report opens offline). Queries are numbered from 1 on every axis
(query number = the verdict table's 0-based ``flag_at`` + 1).

>>> import numpy as np
>>> fig = timeline_figure("c", np.array([0.0, 1.0, 3.0]), threshold=2.0, flag_at=2)
>>> [t.name for t in fig.data], fig.layout.shapes[0].y0
(['score', 'flagged at query 3'], 2.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLAG_COLOUR = "#c0392b"
SCORE_COLOUR = "#1f77b4"
BENIGN_COLOUR = "#7f8c8d"
LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def _go():
    import plotly.graph_objects as go

    return go


def _layout(fig, height: int, **extra) -> None:
    fig.update_layout(template="plotly_white", height=height, font=_FONT,
                      margin={"l": 60, "r": 20, "t": 40, "b": 45}, **extra)


def plotly_js() -> str:
    """Plotly's JavaScript bundle, to inline once in the page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_json(fig) -> str:
    """The figure as JSON safe to put inside a ``<script>`` element."""
    import plotly.io as pio

    return pio.to_json(fig, validate=False, pretty=False).replace("</", "<\\/")


def as_datetimes(ns) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch (UTC) as date-times."""
    return pd.to_datetime(np.asarray(ns, dtype=np.float64).astype("int64"), utc=True)


def timeline_figure(client: str, scores: np.ndarray, threshold: float, flag_at: int | None,
                    times: np.ndarray | None = None, time_kind: str | None = None):
    """One client's overall score after each query, the threshold, and the flagging query.

    The x axis is the query number (from 1), or the query's time when ``times`` are given.
    """
    go = _go()
    scores = np.asarray(scores, dtype=np.float64)
    number = np.arange(1, len(scores) + 1)
    use_time = times is not None and len(times) == len(scores)
    x = (as_datetimes(times) if time_kind == "datetime" else np.asarray(times)) if use_time \
        else number
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x, y=scores, mode="lines", name="score", line={"color": SCORE_COLOUR, "width": 1.6},
        customdata=number, hovertemplate="query %{customdata}<br>score %{y:.3g}<extra></extra>"))
    fig.add_hline(y=threshold, line={"color": FLAG_COLOUR, "dash": "dash", "width": 1},
                  annotation_text=f"threshold {threshold:.3g}", annotation_position="top left")
    if flag_at is not None and 0 <= flag_at < len(scores):
        fig.add_trace(go.Scatter(
            x=[x[flag_at]], y=[scores[flag_at]], mode="markers",
            name=f"flagged at query {flag_at + 1}",
            marker={"color": FLAG_COLOUR, "size": 11, "symbol": "x"},
            hovertemplate=f"flagged at query {flag_at + 1}<br>score %{{y:.3g}}<extra></extra>"))
    _layout(fig, 260, showlegend=True, legend=LEGEND,
            xaxis_title="time" if use_time else "query number (from 1)", yaxis_title="score",
            yaxis_rangemode="tozero")
    return fig


def features_figure(deviation: pd.DataFrame, top: int = 12):
    """Horizontal bars of the most unusual features' RMS z (reference rows: 1)."""
    go = _go()
    part = deviation.head(top).iloc[::-1]
    colours = [FLAG_COLOUR if m > 0 else SCORE_COLOUR for m in part["mean_z"]]
    fig = go.Figure(go.Bar(
        x=part["rms_z"], y=part["feature"].astype(str), orientation="h",
        marker={"color": colours},
        customdata=np.c_[part["mean_z"], 100 * part["outside"]],
        hovertemplate="%{y}<br>RMS z %{x:.2f}<br>mean z %{customdata[0]:+.2f}"
                      "<br>%{customdata[1]:.0f}% outside the reference range<extra></extra>"))
    fig.add_vline(x=1.0, line={"color": BENIGN_COLOUR, "dash": "dot", "width": 1},
                  annotation_text="reference", annotation_position="top")
    _layout(fig, 60 + 22 * len(part), xaxis_title="RMS z-score of the window (reference = 1)",
            yaxis={"automargin": True}, showlegend=False)
    return fig


def flag_summary_figure(flagged: pd.DataFrame, time_kind: str | None):
    """When each flagged client was flagged: on a time axis (its activity span as a grey bar,
    the flag as a red mark) when the log has times, else by query number."""
    go = _go()
    fig = go.Figure()
    clients = flagged["client_id"].astype(str).tolist()
    hover = [f"{c}<br>flagged at query {int(q)}<br>peak score {s:.3g}<br>{r}"
             for c, q, s, r in zip(clients, flagged["flag_query"], flagged["peak_score"],
                                   flagged["reason"].astype(str).str.slice(0, 90), strict=True)]
    if time_kind is not None and flagged["flag_time"].notna().all():
        conv = as_datetimes if time_kind == "datetime" else np.asarray
        first, last, at = (conv(flagged[c].to_numpy(dtype=np.float64))
                           for c in ("first_time", "last_time", "flag_time"))
        for i, client in enumerate(clients):
            fig.add_trace(go.Scatter(x=[first[i], last[i]], y=[client, client], mode="lines",
                                     line={"color": "#d5d8dc", "width": 8}, hoverinfo="skip",
                                     showlegend=i == 0, name="active (first to last query)"))
        fig.add_trace(go.Scatter(x=at, y=clients, mode="markers", name="flagged",
                                 marker={"color": FLAG_COLOUR, "size": 12, "symbol": "x"},
                                 text=hover, hovertemplate="%{text}<extra></extra>"))
        xaxis_title = "time"
    else:
        fig.add_trace(go.Bar(x=flagged["n_queries"], y=clients, orientation="h",
                             marker={"color": "#d5d8dc"}, name="queries sent",
                             hovertemplate="%{y}: %{x} queries<extra></extra>"))
        fig.add_trace(go.Scatter(x=flagged["flag_query"], y=clients, mode="markers",
                                 name="flagged at query", text=hover,
                                 marker={"color": FLAG_COLOUR, "size": 12, "symbol": "x"},
                                 hovertemplate="%{text}<extra></extra>"))
        xaxis_title = "query number (from 1)"
    _layout(fig, 90 + 26 * len(clients), xaxis_title=xaxis_title,
            yaxis={"automargin": True, "autorange": "reversed", "type": "category"},
            legend=LEGEND, barmode="overlay")
    return fig


def score_distribution_figure(peaks: pd.Series, is_attack: pd.Series | None,
                              flagged: pd.Series, threshold: float):
    """Peak scores of benign clients (ground truth when known, else clients not flagged)
    against the threshold; attack / flagged clients beside them."""
    go = _go()
    peaks = pd.to_numeric(peaks, errors="coerce").fillna(0.0)
    if is_attack is not None:
        groups = [("benign clients", ~is_attack, BENIGN_COLOUR),
                  ("attack clients", is_attack, FLAG_COLOUR)]
    else:
        groups = [("not flagged", ~flagged, BENIGN_COLOUR), ("flagged", flagged, FLAG_COLOUR)]
    top = float(max(peaks.max() if len(peaks) else 0.0, threshold)) * 1.05 + 1e-9
    size = top / 40
    fig = go.Figure()
    for name, mask, colour in groups:
        values = peaks[mask.to_numpy(dtype=bool)]
        if len(values):
            fig.add_trace(go.Histogram(x=values, name=f"{name} ({len(values)})", opacity=0.75,
                                       marker={"color": colour},
                                       xbins={"start": 0.0, "end": top, "size": size}))
    fig.add_vline(x=threshold, line={"color": FLAG_COLOUR, "dash": "dash", "width": 1.5},
                  annotation_text=f"threshold {threshold:.3g}", annotation_position="top")
    _layout(fig, 300, barmode="overlay", xaxis_title="peak score of the client",
            yaxis_title="clients", legend=LEGEND)
    return fig


def curves_figure(curves: pd.DataFrame, auc: dict[str, float]):
    """ROC over clients (left) and median queries-to-flag against the threshold (right)."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "ROC over clients (peak score)", "detection delay"))
    for name, part in curves.groupby("detector", sort=False):
        part = part.sort_values("threshold")
        fpr, tpr = part["fpr"].to_numpy(), part["tpr"].to_numpy()
        order = np.lexsort((tpr, fpr))
        fig.add_trace(go.Scatter(x=np.r_[0.0, fpr[order], 1.0], y=np.r_[0.0, tpr[order], 1.0],
                                 mode="lines", name=f"{name} (AUC {auc.get(name, np.nan):.3f})"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=part["threshold"], y=part["median_queries_to_flag"],
                                 mode="lines+markers", name=f"{name} delay", showlegend=False),
                      row=1, col=2)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                             line={"color": "#bbb", "width": 1}), row=1, col=1)
    fig.update_xaxes(title_text="fraction of benign clients flagged", row=1, col=1)
    fig.update_yaxes(title_text="fraction of attacks flagged", row=1, col=1)
    fig.update_xaxes(title_text="threshold", row=1, col=2)
    fig.update_yaxes(title_text="median queries to flag", row=1, col=2)
    _layout(fig, 340, legend={"orientation": "h", "y": -0.25})
    return fig


__all__ = ["curves_figure", "features_figure", "figure_json", "flag_summary_figure",
           "plotly_js", "score_distribution_figure", "timeline_figure"]
