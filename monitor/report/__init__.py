"""The HTML report of a monitor's verdicts: one self-contained file an analyst reads top-down.

:func:`build_report` reads a verdict table or replays a query log
(:func:`monitor.replay.replay_log`, verdict rows from :func:`monitor.tables.verdict_table`)
and :func:`render_report` renders the page from the Jinja2 template in ``templates/`` with
static inline SVG figures (:mod:`monitor.report.figures`: no script library, nothing loaded
from the network, the page opens offline and weighs tens to hundreds of KiB).
:mod:`monitor.report.explain` computes the per-feature z-scores that say why a client's
queries looked unusual. Query numbers in the report start at 1 (``flag_at`` + 1).
"""

from monitor.report.render import (
    MAX_TIMELINES,
    build_report,
    calibration_checks,
    fired_detector,
    is_verdict_table,
    odds,
    order_clients,
    plain_reason,
    recommend,
    render_report,
    score_odds,
)

__all__ = ["MAX_TIMELINES", "build_report", "calibration_checks", "fired_detector",
           "is_verdict_table", "odds", "order_clients", "plain_reason", "recommend",
           "render_report", "score_odds"]
