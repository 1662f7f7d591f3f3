"""The report's figures, drawn as static inline SVG (no JavaScript library, no network).

An earlier report inlined Plotly's 4.8 MB JavaScript bundle (the ``plotly`` package ships no
smaller one) to draw a handful of lines, bars and markers, so every report weighed about
5 MB. These figures are plain SVG instead: a page of them weighs tens of KiB, opens in any
browser offline, prints, and needs no ``'unsafe-eval'`` in the page's content policy. Hovering
a point, bar or mark shows its details (an SVG ``<title>``).

Each function returns a :class:`Figure`; :func:`figure_svg` draws it and :func:`figure_json`
gives its data (trace names, x, y, axis titles, reference lines) in Plotly's JSON shape, which
the page embeds beside the drawing so the numbers can be read or re-plotted. Queries are
numbered from 1 on every axis (query number = the verdict table's 0-based ``flag_at`` + 1).

>>> import numpy as np
>>> fig = timeline_figure("c", np.array([0.0, 1.0, 3.0]), threshold=2.0, flag_at=2)
>>> [t.name for t in fig.traces], fig.hlines[0].at
(['score', 'flagged at query 3'], 2.0)
>>> svg = figure_svg(fig)
>>> svg.startswith("<svg") and "flagged at query 3" in svg and "<script" not in svg
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape

import numpy as np
import pandas as pd

FLAG_COLOUR = "#c0392b"
SCORE_COLOUR = "#1f77b4"
BENIGN_COLOUR = "#7f8c8d"
SPAN_COLOUR = "#d5d8dc"
GRID_COLOUR = "#ebedef"
INK = "#1c2833"
MUTED = "#5d6d7e"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
WIDTH = 640
"""Width of every figure's coordinate system (it scales to its column)."""
_CHAR = 6.6  # average width of one 11px character, for margins


@dataclass
class Trace:
    """One series: ``kind`` ``line``, ``markers``, ``hbar`` (bars from 0 along x, one per y
    category), ``bars`` (vertical bars from ``x[i]`` to ``x2[i]`` of height ``y[i]``) or
    ``span`` (one segment per category from ``x[i]`` to ``x2[i]``)."""

    name: str
    kind: str
    x: list
    y: list
    colour: str = SCORE_COLOUR
    colours: list | None = None
    hover: list[str] | None = None
    x2: list | None = None
    legend: bool = True
    width: float = 1.6
    opacity: float = 1.0


@dataclass
class Line:
    """A reference line across the plot (``at`` on the y axis for an hline, else x)."""

    at: float
    label: str
    colour: str = FLAG_COLOUR
    dash: str = "5,4"


@dataclass
class Figure:
    traces: list[Trace] = field(default_factory=list)
    hlines: list[Line] = field(default_factory=list)
    vlines: list[Line] = field(default_factory=list)
    height: int = 260
    title: str = ""
    x_title: str = ""
    y_title: str = ""
    x_type: str = "linear"  # linear | date (x in ns since the epoch)
    y_type: str = "linear"  # linear | category (y labels, top to bottom)
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    y_from_zero: bool = True
    width: int = WIDTH


def as_datetimes(ns) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch (UTC) as date-times."""
    return pd.to_datetime(np.asarray(ns, dtype=np.float64).astype("int64"), utc=True)


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (about ``n`` of them).

    >>> nice_ticks(0, 7.3), nice_ticks(0.2, 0.21, 3)
    ([0.0, 2.0, 4.0, 6.0, 8.0], [0.2, 0.205, 0.21])
    """
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(n, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks, k = [], 0
    while True:
        value = first + k * step
        ticks.append(round(value, 12))
        if value >= high - 1e-9 * step:
            return ticks
        k += 1


_TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400,
               365 * 86400]


def time_ticks(low_ns: float, high_ns: float, n: int = 5) -> tuple[list[float], list[str]]:
    """Tick positions (ns) and labels of a UTC time axis over ``[low_ns, high_ns]``.

    >>> t0 = pd.Timestamp("2024-05-01T09:00:00Z").value
    >>> time_ticks(t0, t0 + 20 * 60 * 1e9)[1]
    ['09:00', '09:05', '09:10', '09:15', '09:20']
    """
    low, high = low_ns / 1e9, max(high_ns / 1e9, low_ns / 1e9 + 1)
    step = next((s for s in _TIME_STEPS if (high - low) / s <= n), _TIME_STEPS[-1])
    first = math.ceil(low / step) * step
    count = int(math.floor((high - first) / step + 1e-6)) + 1
    seconds = [first + k * step for k in range(max(count, 0))] or [low]
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%Y-%m-%d"
    labels = [pd.Timestamp(int(s), unit="s", tz="UTC").strftime(fmt) for s in seconds]
    return [s * 1e9 for s in seconds], labels


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _text(x, y, text, *, anchor="start", size=11, colour=MUTED, extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{colour}" '
            f'text-anchor="{anchor}"{extra}>{escape(str(text))}</text>')


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[:chars - 1] + "…"


def figure_svg(fig: Figure) -> str:
    """The figure as one ``<svg>`` element (all text escaped)."""
    categories: list[str] = []
    if fig.y_type == "category":
        for trace in fig.traces:
            for label in trace.y:
                if str(label) not in categories:
                    categories.append(str(label))
    label_chars = min(max((len(c) for c in categories), default=0), 30)
    left = max(58, 14 + _CHAR * label_chars) if categories else 58
    legend = [t for t in fig.traces if t.legend and t.name]
    top = 14 + (18 if fig.title else 0) + (18 if legend else 0)
    right, bottom = 18, 44
    width, height = fig.width, fig.height
    plot_w, plot_h = width - left - right, height - top - bottom

    xs = [float(v) for t in fig.traces for v in list(t.x) + list(t.x2 or [])
          if v is not None and np.isfinite(float(v))]
    xs += [line.at for line in fig.vlines]
    x_low, x_high = fig.x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if fig.x_type == "date":
        pad = max((x_high - x_low) * 0.03, 1e9)
        x_low, x_high = x_low - pad, x_high + pad
        xticks, xlabels = time_ticks(x_low, x_high)
    else:
        if fig.x_range is None and any(t.kind in ("hbar", "bars") for t in fig.traces):
            x_low = min(x_low, 0.0)
        xticks = nice_ticks(x_low, x_high)
        if fig.x_range is None:
            x_low, x_high = xticks[0], xticks[-1]
        xticks = [t for t in xticks if x_low - 1e-12 <= t <= x_high + 1e-12]
        xlabels = [_fmt(t) for t in xticks]
    x_span = (x_high - x_low) or 1.0

    def sx(v: float) -> float:
        return left + (float(v) - x_low) / x_span * plot_w

    if categories:
        band = plot_h / len(categories)

        def sy_cat(label) -> float:
            return top + (categories.index(str(label)) + 0.5) * band
        sy = None
    else:
        ys = [float(v) for t in fig.traces for v in t.y if v is not None and np.isfinite(float(v))]
        ys += [line.at for line in fig.hlines]
        y_low, y_high = fig.y_range or ((min(ys), max(ys)) if ys else (0.0, 1.0))
        if fig.y_from_zero and fig.y_range is None:
            y_low = min(y_low, 0.0)
        if fig.y_range is None and y_high > y_low:
            y_high += 0.05 * (y_high - y_low)
        yticks = nice_ticks(y_low, y_high, 4)
        if fig.y_range is None:
            y_low, y_high = yticks[0], yticks[-1]
        yticks = [t for t in yticks if y_low - 1e-12 <= t <= y_high + 1e-12]
        y_span = (y_high - y_low) or 1.0

        def sy(v: float) -> float:
            return top + plot_h - (float(v) - y_low) / y_span * plot_h

    out = [f'<svg class="main-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
           f'{height}" width="100%" style="max-width:{int(width * 1.35)}px" role="img" '
           f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">']
    if fig.title:
        out.append(_text(left, 16, fig.title, size=13, colour=INK, extra=' font-weight="600"'))
    # grid and axes
    for tick, label in zip(xticks, xlabels, strict=True):
        x = sx(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                   f'stroke="{GRID_COLOUR}"/>')
        out.append(_text(x, top + plot_h + 15, label, anchor="middle"))
    if categories:
        for label in categories:
            text = _text(left - 6, sy_cat(label) + 4, _clip(label, 30), anchor="end",
                         colour=INK)
            if len(label) > 30:  # the full label on hover
                head, _, tail = text.partition(">")
                text = f"{head}><title>{escape(label)}</title>{tail}"
            out.append(text)
    else:
        for tick in yticks:
            y = sy(tick)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                       f'stroke="{GRID_COLOUR}"/>')
            out.append(_text(left - 6, y + 4, _fmt(tick), anchor="end"))
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="#d5d8dc"/>')
    if fig.x_title:
        out.append(_text(left + plot_w / 2, height - 8, fig.x_title, anchor="middle"))
    if fig.y_title:
        out.append(_text(13, top + plot_h / 2, fig.y_title, anchor="middle",
                         extra=f' transform="rotate(-90 13 {top + plot_h / 2:.1f})"'))
    # traces
    for trace in fig.traces:
        out.append(f'<g class="trace" data-name="{escape(trace.name)}">')
        hover = trace.hover or [""] * len(trace.x)
        colours = trace.colours or [trace.colour] * len(trace.x)
        if trace.kind == "line":
            points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(trace.x, trace.y,
                                                                         strict=True))
            out.append(f'<polyline points="{points}" fill="none" stroke="{trace.colour}" '
                       f'stroke-width="{trace.width}" stroke-linejoin="round"/>')
            if trace.hover:  # invisible hover targets, one per point
                out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="transparent">'
                           f'<title>{escape(h)}</title></circle>'
                           for x, y, h in zip(trace.x, trace.y, hover, strict=True))
        elif trace.kind == "markers":
            for x, y, h in zip(trace.x, trace.y, hover, strict=True):
                cx, cy = sx(x), sy_cat(y) if categories else sy(y)
                out.append(f'<path d="M{cx - 5:.1f},{cy - 5:.1f}l10,10m0,-10l-10,10" '
                           f'stroke="{trace.colour}" stroke-width="2.6"><title>{escape(h)}'
                           f'</title></path>')
        elif trace.kind == "hbar":
            for x, y, c, h in zip(trace.x, trace.y, colours, hover, strict=True):
                x0, x1 = sorted((sx(0.0), sx(x)))
                out.append(f'<rect x="{x0:.1f}" y="{sy_cat(y) - band * 0.36:.1f}" '
                           f'width="{max(x1 - x0, 0.5):.1f}" height="{band * 0.72:.1f}" '
                           f'fill="{c}" opacity="{trace.opacity}"><title>{escape(h)}</title>'
                           f'</rect>')
        elif trace.kind == "span":
            for x, x2, y, h in zip(trace.x, trace.x2, trace.y, hover, strict=True):
                cy = sy_cat(y)
                out.append(f'<line x1="{sx(x):.1f}" y1="{cy:.1f}" x2="{max(sx(x2), sx(x) + 2):.1f}"'
                           f' y2="{cy:.1f}" stroke="{trace.colour}" stroke-width="8" '
                           f'stroke-linecap="round"><title>{escape(h)}</title></line>')
        elif trace.kind == "bars":
            for x, x2, y, h in zip(trace.x, trace.x2, trace.y, hover, strict=True):
                if y <= 0:
                    continue
                out.append(f'<rect x="{sx(x):.1f}" y="{sy(y):.1f}" '
                           f'width="{max(sx(x2) - sx(x) - 0.5, 0.5):.1f}" '
                           f'height="{sy(0) - sy(y):.1f}" fill="{trace.colour}" '
                           f'opacity="{trace.opacity}"><title>{escape(h)}</title></rect>')
        out.append("</g>")
    for line in fig.hlines:
        y = sy(line.at)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                   f'stroke="{line.colour}" stroke-dasharray="{line.dash}"/>')
        out.append(_text(left + 4, y - 4, line.label, colour=line.colour))
    for line in fig.vlines:
        x = sx(line.at)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                   f'stroke="{line.colour}" stroke-dasharray="{line.dash}"/>')
        out.append(_text(x + 4, top + 12, line.label, colour=line.colour))
    # legend
    x = left
    for trace in legend:
        y = top - 12
        if trace.kind == "markers":
            out.append(f'<path d="M{x:.1f},{y - 4:.1f}l8,8m0,-8l-8,8" stroke="{trace.colour}" '
                       'stroke-width="2.4"/>')
        else:
            out.append(f'<rect x="{x:.1f}" y="{y - 4:.1f}" width="14" height="8" '
                       f'fill="{trace.colour}" opacity="{trace.opacity}"/>')
        out.append(_text(x + 18, y + 4, trace.name, colour=INK))
        x += 30 + _CHAR * len(trace.name)
    out.append("</svg>")
    return "".join(out)


def _plain(values) -> list:
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out.append(v)
    return out


def figure_json(fig: Figure) -> str:
    """The figure's data in Plotly's JSON shape (``data``: name, type, x, y per trace;
    ``layout``: axis titles, reference lines), safe inside a ``<script>`` element (``<``, ``>``
    and ``&`` as JSON escapes). Time axes hold ISO 8601 UTC date-times.

    >>> json.loads(figure_json(Figure(traces=[Trace("</script>", "line", [1], [2.0])])))["data"]
    [{'name': '</script>', 'type': 'line', 'x': [1], 'y': [2.0]}]
    >>> "<" in figure_json(Figure(traces=[Trace("</script>", "line", [1], [2.0])]))
    False
    """
    def xs(values):
        if fig.x_type == "date":
            return [t.isoformat() for t in as_datetimes(values)]
        return _plain(values)

    data = []
    for t in fig.traces:
        entry = {"name": t.name, "type": t.kind, "x": xs(t.x), "y": _plain(t.y)}
        if t.x2 is not None:
            entry["x2"] = xs(t.x2)
        data.append(entry)
    shapes = ([{"type": "hline", "y0": line.at, "label": line.label} for line in fig.hlines]
              + [{"type": "vline", "x0": line.at, "label": line.label} for line in fig.vlines])
    layout = {"title": {"text": fig.title}, "xaxis": {"title": {"text": fig.x_title},
                                                      "type": fig.x_type},
              "yaxis": {"title": {"text": fig.y_title}, "type": fig.y_type}, "shapes": shapes}
    text = json.dumps({"data": data, "layout": layout}, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def timeline_figure(client: str, scores: np.ndarray, threshold: float, flag_at: int | None,
                    times: np.ndarray | None = None, time_kind: str | None = None) -> Figure:
    """One client's overall score after each query, the threshold, and the flagging query.

    The x axis is the query number (from 1), or the query's time when ``times`` are given.
    """
    scores = np.asarray(scores, dtype=np.float64)
    number = np.arange(1, len(scores) + 1)
    use_time = times is not None and len(times) == len(scores)
    x = np.asarray(times, dtype=np.float64) if use_time else number
    fig = Figure(height=260, x_title="time" if use_time else "query number (from 1)",
                 y_title="score", x_type="date" if use_time and time_kind == "datetime"
                 else "linear")
    fig.traces.append(Trace("score", "line", x.tolist(), scores.tolist(),
                            hover=[f"query {n}: score {s:.3g}" for n, s in zip(number, scores,
                                                                               strict=True)]))
    fig.hlines.append(Line(float(threshold), f"threshold {threshold:.3g}"))
    if flag_at is not None and 0 <= flag_at < len(scores):
        name = f"flagged at query {flag_at + 1}"
        fig.traces.append(Trace(name, "markers", [x[flag_at].item()], [float(scores[flag_at])],
                                colour=FLAG_COLOUR,
                                hover=[f"{name}: score {scores[flag_at]:.3g}"]))
    return fig


def features_figure(deviation: pd.DataFrame, top: int = 12) -> Figure:
    """Horizontal bars of the most unusual features' RMS z (reference rows: 1)."""
    part = deviation.head(top)
    fig = Figure(height=70 + 22 * len(part), x_title="RMS z-score of the window (reference = 1)",
                 y_type="category", width=440)
    fig.traces.append(Trace(
        "RMS z", "hbar", part["rms_z"].tolist(), part["feature"].astype(str).tolist(),
        colours=[FLAG_COLOUR if m > 0 else SCORE_COLOUR for m in part["mean_z"]], legend=False,
        hover=[f"{f}: RMS z {r:.2f}, mean z {m:+.2f}, {100 * o:.0f}% outside the reference range"
               for f, r, m, o in zip(part["feature"], part["rms_z"], part["mean_z"],
                                     part["outside"], strict=True)]))
    fig.vlines.append(Line(1.0, "reference", colour=BENIGN_COLOUR, dash="2,3"))
    return fig


def flag_summary_figure(flagged: pd.DataFrame, time_kind: str | None) -> Figure:
    """When each flagged client was flagged: on a time axis (its activity span as a grey bar,
    the flag as a red mark) when the log has times, else by query number."""
    clients = flagged["client_id"].astype(str).tolist()
    hover = [f"{c}: flagged at query {int(q)}, peak score {s:.3g}. {r}"
             for c, q, s, r in zip(clients, flagged["flag_query"], flagged["peak_score"],
                                   flagged["reason"].astype(str).str.slice(0, 160), strict=True)]
    fig = Figure(height=90 + 26 * len(clients), y_type="category", y_from_zero=False)
    if time_kind is not None and flagged["flag_time"].notna().all():
        first, last, at = (flagged[c].to_numpy(dtype=np.float64).tolist()
                           for c in ("first_time", "last_time", "flag_time"))
        fig.x_type = "date" if time_kind == "datetime" else "linear"
        fig.traces.append(Trace("active (first to last query)", "span", first, clients,
                                x2=last, colour=SPAN_COLOUR,
                                hover=[f"{c}: active" for c in clients]))
        fig.traces.append(Trace("flagged", "markers", at, clients, colour=FLAG_COLOUR,
                                hover=hover))
        fig.x_title = "time"
    else:
        fig.traces.append(Trace("queries sent", "hbar", flagged["n_queries"].tolist(), clients,
                                colour=SPAN_COLOUR,
                                hover=[f"{c}: {n} queries" for c, n in zip(
                                    clients, flagged["n_queries"], strict=True)]))
        fig.traces.append(Trace("flagged at query", "markers", flagged["flag_query"].tolist(),
                                clients, colour=FLAG_COLOUR, hover=hover))
        fig.x_title = "query number (from 1)"
    return fig


def score_distribution_figure(peaks: pd.Series, is_attack: pd.Series | None,
                              flagged: pd.Series, threshold: float) -> Figure:
    """Peak scores of benign clients (ground truth when known, else clients not flagged)
    against the threshold; attack / flagged clients beside them."""
    peaks = pd.to_numeric(peaks, errors="coerce").fillna(0.0)
    if is_attack is not None:
        groups = [("benign clients", ~is_attack, BENIGN_COLOUR),
                  ("attack clients", is_attack, FLAG_COLOUR)]
    else:
        groups = [("not flagged", ~flagged, BENIGN_COLOUR), ("flagged", flagged, FLAG_COLOUR)]
    top = float(max(peaks.max() if len(peaks) else 0.0, threshold)) * 1.05 + 1e-9
    edges = np.linspace(0.0, top, 41)
    fig = Figure(height=300, x_title="peak score of the client", y_title="clients",
                 x_range=(0.0, top))
    for name, mask, colour in groups:
        values = peaks[mask.to_numpy(dtype=bool)].to_numpy()
        if len(values):
            counts, _ = np.histogram(values, bins=edges)
            label = f"{name} ({len(values)})"
            fig.traces.append(Trace(
                label, "bars", edges[:-1].tolist(), counts.tolist(), x2=edges[1:].tolist(),
                colour=colour, opacity=0.75,
                hover=[f"{label}: {c} with peak score {a:.3g}–{b:.3g}"
                       for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True)]))
    fig.vlines.append(Line(float(threshold), f"threshold {threshold:.3g}"))
    return fig


def curves_figure(curves: pd.DataFrame, auc: dict[str, float]) -> tuple[Figure, Figure]:
    """ROC over clients, and median queries-to-flag against the threshold (two figures)."""
    roc = Figure(height=320, title="ROC over clients (peak score)",
                 x_title="fraction of benign clients flagged",
                 y_title="fraction of attacks flagged", x_range=(0.0, 1.0), y_range=(0.0, 1.0),
                 width=420)
    delay = Figure(height=320, title="detection delay", x_title="threshold",
                   y_title="median queries to flag", width=420)
    for i, (name, part) in enumerate(curves.groupby("detector", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        part = part.sort_values("threshold")
        fpr, tpr = part["fpr"].to_numpy(), part["tpr"].to_numpy()
        order = np.lexsort((tpr, fpr))
        roc.traces.append(Trace(f"{name} (AUC {auc.get(name, np.nan):.3f})", "line",
                                np.r_[0.0, fpr[order], 1.0].tolist(),
                                np.r_[0.0, tpr[order], 1.0].tolist(), colour=colour))
        kept = part["median_queries_to_flag"].notna().to_numpy()
        delay.traces.append(Trace(f"{name} delay", "line", part["threshold"][kept].tolist(),
                                  part["median_queries_to_flag"][kept].tolist(), colour=colour,
                                  legend=False,
                                  hover=[f"threshold {t:.3g}: median {q:.0f} queries to flag"
                                         for t, q in zip(part["threshold"][kept],
                                                         part["median_queries_to_flag"][kept],
                                                         strict=True)]))
    roc.traces.append(Trace("chance", "line", [0.0, 1.0], [0.0, 1.0], colour="#bbbbbb",
                            width=1.0, legend=False))
    return roc, delay


__all__ = ["Figure", "Line", "Trace", "as_datetimes", "curves_figure", "features_figure",
           "figure_json", "figure_svg", "flag_summary_figure", "nice_ticks",
           "score_distribution_figure", "time_ticks", "timeline_figure"]
