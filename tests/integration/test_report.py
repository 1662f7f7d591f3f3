"""The HTML report: self-contained (nothing loaded from the network) and small (static SVG
figures, no inlined plotting library), summary first with flagged clients, one indexing of
flagged-at-query in table and plots, a time axis from timestamps, per-feature z-scores that
name the feature an attacker pushed, plain words (odds, not nats), when and on what exposure
is measured and whose it is, a recommended action per flagged client, deterministic, and
rendered by real headless Chromium with no console errors and no network request."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attacks.benign import benign_streams
from attacks.registry import run_attack
from attacks.traffic import to_log, write_log
from monitor import Monitor, Profile
from monitor.cli import main
from monitor.detectors import REGISTRY
from monitor.logs import read_log
from monitor.replay import replay_log
from monitor.report import (
    calibration_checks,
    order_clients,
    plain_reason,
    recommend,
    render_report,
)
from monitor.report.explain import explained_rows, feature_deviation
from victims import load_victim

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Tables (by id), figure JSON (by script id), <details> states, and anything that could
    load a resource (src/href attributes, <link>, <img>, <iframe>)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: dict[str, dict] = {}
        self.details: dict[str, bool] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "src" in attrs or tag in ("link", "img", "iframe", "object", "embed"):
            self.loads.append(f"{tag} {attrs}")
        if tag == "a" and not str(attrs.get("href", "#")).startswith("#"):
            self.loads.append(f"a {attrs}")
        if tag == "details":
            self.details[attrs.get("id", "")] = "open" in attrs
        if tag == "script" and attrs.get("type") == "application/json":
            self._script, self._text = attrs["id"], []
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.figures[self._script] = json.loads("".join(self._text).replace("<\\/", "</"))
            self._script = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._script is not None:
            self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _rows(page: _Page, table: str) -> list[dict[str, str]]:
    header, *body = page.tables[table]
    return [dict(zip(header, row, strict=True)) for row in body]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    v = load_victim("wine-tree")
    Profile(seed=0).fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal).save(
        tmp / "profile")
    attacks = [run_attack(name, v, budget=150, seed=0).stream
               for name in ("uniform", "boundary-walk", "jbda", "mixup")]
    # a thief that stopped after 5 queries: some evidence, not flagged (drilled into, collapsed)
    short = run_attack("uniform", v, budget=5, seed=1).stream
    attacks.append(dataclasses.replace(short, client_id="short-uniform"))
    benign = benign_streams(v, seed=3, n=60)
    frame = to_log(attacks + benign, v)
    write_log(frame, tmp / "log.csv")
    # the same traffic in a custom shape with date-time stamps
    custom = frame.rename(columns={"client_id": "user", **{f"p_{j}": f"prob_{j}"
                                                          for j in range(3)}})
    custom["timestamp"] = (pd.Timestamp("2024-05-01T09:00:00Z")
                           + pd.to_timedelta(frame["seq"] * 7 + frame.index % 5, unit="s")
                           ).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    custom = custom.drop(columns=["seq", "ts"])
    custom.to_json(tmp / "custom.json", orient="records")  # one JSON array
    assert main(["report", str(tmp / "log.csv"), "--profile", str(tmp / "profile"),
                 "--out", str(tmp / "report.html")]) == 0
    return tmp


def _verdicts(setup) -> pd.DataFrame:
    verdicts = setup / "verdicts.csv"
    if not verdicts.exists():
        assert main(["analyze", str(setup / "log.csv"), "--profile", str(setup / "profile"),
                     "--out", str(verdicts)]) == 0
    return pd.read_csv(verdicts, dtype={"client_id": str}).set_index("client_id")


def test_report_is_self_contained_and_summary_first(setup):
    text = (setup / "report.html").read_text()
    page = _parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.loads == [], f"the page would load resources: {page.loads}"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\b)", text)
    assert "<svg" in text and "Plotly" not in text
    assert text.index('id="summary"') < text.index('id="drilldown"') < text.index(
        'id="clients"') < text.index('id="calibration"')
    flagged = _rows(page, "flagged")
    verdicts = _verdicts(setup)
    assert {r["client"] for r in flagged} == set(verdicts.index[verdicts["flagged"]])
    assert all(r["detector"] in REGISTRY for r in flagged), [r["detector"] for r in flagged]
    assert all(r["exposure"].endswith("%") for r in flagged)


def test_flagged_at_query_is_one_based_in_table_and_plots(setup):
    """The table, the drill-down facts, the plot marker and the verdict table agree:
    query N = flag_at + 1, and the score first reaches the threshold at query N."""
    page = _parse((setup / "report.html").read_text())
    verdicts = _verdicts(setup)
    profile = Profile.load(setup / "profile")
    log = read_log(setup / "log.csv", profile.feature_names_, 3)
    scores = replay_log(log, Monitor(profile), keep_scores=True).scores
    for row in _rows(page, "flagged"):
        client = row["client"]
        n = int(row["flagged at query"])
        assert n == verdicts.loc[client, "flag_at"] + 1
        s, t = scores[client], verdicts.loc[client, "threshold"]
        assert s[n - 1] >= t and (n == 1 or np.maximum.accumulate(s)[n - 2] < t)
        anchor = "client-" + re.sub(r"[^A-Za-z0-9_-]", "_", client)
        figure = page.figures[f"tl-{anchor}"]
        marker = next(tr for tr in figure["data"] if tr["name"].startswith("flagged at"))
        assert marker["name"] == f"flagged at query {n}"
        assert marker["y"][0] == pytest.approx(s[n - 1])
        assert page.details[anchor] is True  # flagged clients are open
    all_rows = _rows(page, "client-table")
    assert len(all_rows) == len(verdicts)
    for row in all_rows:
        want = verdicts.loc[row["client"], "flag_at"]
        assert row["flagged at query"] == ("" if pd.isna(want) else str(int(want) + 1))


def test_benign_clients_are_collapsed(setup):
    page = _parse((setup / "report.html").read_text())
    verdicts = _verdicts(setup)
    assert page.details["all-clients"] is False
    closed = [k for k, is_open in page.details.items() if k.startswith("client-") and not is_open]
    assert closed, "the highest-scoring unflagged clients are drilled into, collapsed"
    for anchor in closed:
        client = next(c for c in verdicts.index
                      if "client-" + re.sub(r"[^A-Za-z0-9_-]", "_", c) == anchor)
        assert not verdicts.loc[client, "flagged"]


def test_report_is_deterministic(setup):
    again = setup / "again.html"
    assert main(["report", str(setup / "log.csv"), "--profile", str(setup / "profile"),
                 "--out", str(again)]) == 0
    assert again.read_bytes() == (setup / "report.html").read_bytes()


def test_custom_columns_put_flags_on_a_time_axis(setup):
    out = setup / "custom.html"
    assert main(["report", str(setup / "custom.json"), "--profile", str(setup / "profile"),
                 "--client-column", "user", "--time-column", "timestamp",
                 "--proba-columns", "prob_*", "--out", str(out)]) == 0
    page = _parse(out.read_text())
    flagged = _rows(page, "flagged")
    assert flagged and all(r["flagged at time"].startswith("2024-05-01 09:") for r in flagged)
    summary = page.figures["fig-summary"]
    marks = next(tr for tr in summary["data"] if tr.get("name") == "flagged")
    assert all(str(x).startswith("2024-05-01") for x in marks["x"])
    assert summary["layout"]["xaxis"]["title"]["text"] == "time"
    same = _rows(_parse((setup / "report.html").read_text()), "flagged")
    assert [r["flagged at query"] for r in flagged] == [r["flagged at query"] for r in same]


def test_report_from_verdict_table(setup):
    out = setup / "from_table.html"
    _verdicts(setup)
    assert main(["report", str(setup / "verdicts.csv"), "--profile", str(setup / "profile"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    page = _parse(text)
    assert page.loads == [] and "drilldown" not in page.details
    table = _verdicts(setup)
    for reason in table.loc[table["flagged"], "reason"]:
        assert plain_reason(reason).replace("'", "&#39;") in text
    assert len(_rows(page, "calibration-checks")) >= 2


def test_feature_deviation_names_the_pushed_feature(setup):
    """A client whose queries are real records except one feature pushed far out: that
    feature tops the explanation; real records explain to RMS z near 1."""
    v = load_victim("wine-tree")
    profile = Profile.load(setup / "profile")
    rows = v.X_public[:50].copy()
    plain = feature_deviation(profile, rows)
    assert plain["rms_z"].max() < 2.5
    rows[:, 4] = v.X_public[:, 4].max() * 3
    pushed = feature_deviation(profile, rows)
    assert pushed.loc[0, "feature"] == profile.feature_names_[4]
    assert pushed.loc[0, "rms_z"] > 5 and pushed.loc[0, "outside"] == 1.0
    assert explained_rows(200, 120, None) == slice(71, 121)


def test_order_clients_puts_flagged_first_by_peak():
    table = pd.DataFrame({"client_id": ["a", "b", "c", "d"], "flagged": [False, True, False, True],
                          "flag_at": pd.array([None, 40, None, 5], dtype="Int64"),
                          "peak_score": [1.0, 3.0, 0.5, 9.0]})
    assert order_clients(table)["client_id"].tolist() == ["d", "b", "a", "c"]


def test_template_escapes_client_text():
    table = pd.DataFrame({"client_id": ["<script>alert(1)</script>"], "n_queries": [3],
                          "peak_score": [5.0], "threshold": [2.0], "flagged": [True],
                          "flag_at": [1], "reason": ["<b>x</b>"]})
    text = render_report(table)
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


def test_calibration_checks_are_close_to_the_level(setup):
    checks = calibration_checks(Profile.load(setup / "profile"), level=0.05)
    assert set(checks["statistic"]) >= {"density", "boundary"}
    density = checks.set_index("statistic").loc["density"]
    assert density["distinct"] > 0.9 * density["n"]  # continuous statistic: few ties
    assert abs(density["fraction_p_le_level"] - 0.05) < 0.01
    assert (checks["fraction_p_le_level"] <= 0.05 + 1e-12).all()


def test_bad_input_is_one_clear_line(setup, tmp_path, capsys):
    table = tmp_path / "bad.csv"
    pd.DataFrame({"who": ["a"], "peak_score": [1.0], "flagged": [True]}).to_csv(table,
                                                                              index=False)
    code = main(["report", str(table), "--profile", str(setup / "profile"),
                 "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "lacks column(s) client_id" in err and len(err.splitlines()) == 1
    code = main(["report", str(table), "--profile", str(setup / "profile"),
                 "--out", str(tmp_path / "r.pdf")])
    assert code == 2 and "name it .html" in capsys.readouterr().err
    code = main(["report", str(setup / "custom.json"), "--profile", str(setup / "profile"),
                 "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "(nearest: 'user')" in err and "--client-column" in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def screenshot(report: Path, out: Path, width: int = 1300) -> dict:
    """Open ``report`` in headless Chromium (fresh profile), wait for the plots, save a
    full-page screenshot to ``out``; return the console messages, page errors, requests and
    the number of drawn plots."""
    from playwright.sync_api import sync_playwright

    seen: dict = {"console": [], "errors": [], "requests": [], "blocked": []}
    with tempfile.TemporaryDirectory(prefix="em-chromium-") as profile_dir, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile_dir, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": 900})
        try:
            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    seen["blocked"].append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            seen["drawn"] = page.evaluate(  # visible plots whose SVG has a size on screen
                "Array.from(document.querySelectorAll('div.plot > svg.main-svg')).filter("
                "s => !s.closest('details:not([open])') && s.getBoundingClientRect().width > 200 &&"
                " s.getBoundingClientRect().height > 50).length")
            seen["visible_plots"] = page.evaluate(
                "Array.from(document.querySelectorAll('div.plot')).filter("
                "d => !d.closest('details:not([open])')).length")
            seen["text"] = page.evaluate("document.body.innerText")
            seen["exposure_card"] = page.evaluate(
                "document.getElementById('kpi-exposure').innerText")
            seen["actions"] = page.evaluate(
                "Array.from(document.querySelectorAll('#flagged td.recommendation')).map("
                "td => td.innerText)")
            page.screenshot(path=str(out), full_page=True)
        finally:
            context.close()
    return seen


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (CI installs it: .ci/run)")
def test_report_renders_in_headless_chromium(setup, tmp_path):
    pytest.importorskip("playwright", reason="playwright is a dev dependency")
    shot = tmp_path / "report.png"
    seen = screenshot(setup / "report.html", shot)
    print(f"screenshot: {shot}")
    assert seen["errors"] == [] and seen["console"] == [], seen
    assert seen["blocked"] == [], f"network requests: {seen['blocked']}"
    assert seen["requests"] == [(setup / "report.html").as_uri()]
    assert seen["drawn"] == seen["visible_plots"] >= 5  # summary, 2 x (timeline, features)...
    assert "nats" not in seen["text"] and "1 in 10" in seen["text"]
    verdicts = _verdicts(setup)
    top = verdicts["exposure"].idxmax()
    assert f"client {top}" in seen["exposure_card"], seen["exposure_card"]
    assert f"after query {verdicts.loc[top, 'n_queries']}" in seen["exposure_card"]
    assert len(seen["actions"]) == int(verdicts["flagged"].sum())
    assert all(a.split()[0] in ("block", "throttle", "review") for a in seen["actions"])
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 50_000
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 2000 and np.std(pixels) > 0.05, "screenshot is blank"


def test_group_and_exposure_columns_from_analyze_group_column():
    """Verdict rows with group columns (analyze --group-column) and an empty exposure: the
    summary shows the group, the missing exposure as a dash, and query N = flag_at + 1."""
    table = pd.DataFrame({
        "client_id": ["s1", "s2", "u"], "n_queries": [40, 40, 90], "score": [3.0, 1.0, 0.0],
        "peak_score": [3.0, 2.5, 0.0], "threshold": [2.0] * 3, "flagged": [True, True, False],
        "flag_at": pd.array([30, 12, None], dtype="Int64"), "reason": ["r1", "r2", "n"],
        "exposure": [0.4, np.nan, None], "group_id": ["acct-9", "acct-9", "acct-1"],
        "group_flagged": [True, True, False], "score_density": [3.0, 2.5, 0.0]})
    page = _parse(render_report(table))
    rows = {r["client"]: r for r in _rows(page, "flagged")}
    assert rows["s1"]["group"] == "acct-9" and rows["s1"]["flagged at query"] == "31"
    assert rows["s2"]["exposure"] == "—" and rows["s1"]["exposure"] == "40%"
    assert rows["s2"]["flagged at query"] == "13" and rows["s1"]["detector"] == "density"
    assert "group_flagged" in page.tables["client-table"][0]


MAX_REPORT_BYTES = 400_000
"""The fixture's report weighed 4.9 MB with Plotly's bundle inlined; with SVG figures about
165 KB (13 clients, 5 drill-downs, ROC curves)."""


def test_report_is_small_and_loads_nothing(setup):
    text = (setup / "report.html").read_text()
    size = (setup / "report.html").stat().st_size
    assert size < MAX_REPORT_BYTES, f"report is {size:,} bytes"
    page = _parse(text)
    assert page.loads == []
    assert not re.search(r"\b(fetch|XMLHttpRequest|import\s*\(|@import|url\()", text)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)[1]
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert len(page.figures) >= 5 and text.count("<svg") == len(page.figures)


def test_report_speaks_plain_words_not_nats(setup):
    """The core's reasons say "(33 nats of evidence; 31 flag)"; the report says odds."""
    text = (setup / "report.html").read_text()
    verdicts = _verdicts(setup)
    assert any("nats" in r for r in verdicts["reason"])  # the core's wording, unchanged
    assert "nats" not in text
    page = _parse(text)
    for row in _rows(page, "flagged"):
        assert "strength of evidence" in row["reason"] and "1 in 10" in row["reason"], row
        assert row["reason"] == plain_reason(verdicts.loc[row["client"], "reason"])
    assert "a benign client reaches it about 1 in 100 times" in text  # threshold 2


def test_exposure_says_when_where_and_whose(setup):
    """The exposure card names the client with the highest exposure and says it is measured
    after that client's last query, on the profile's reference records; drill-downs too."""
    text = (setup / "report.html").read_text()
    verdicts = _verdicts(setup)
    profile = Profile.load(setup / "profile")
    n_points = len(profile.exposure_["points"])
    top = verdicts["exposure"].idxmax()
    card = re.search(r'<div class="kpi" id="kpi-exposure">(.*?)</div>\s*</div>', text, re.S)[1]
    card = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", card)).split())
    assert card.startswith(f"{100 * verdicts.loc[top, 'exposure']:.0f}% highest exposure")
    assert f"client {top} (not flagged)" in card or f"client {top} after" in card
    assert f"after query {verdicts.loc[top, 'n_queries']}, its last" in card
    assert f"on the profile's {n_points} reference records (held-out calibration" in card
    assert "measured after each client's last query" in text
    for client in verdicts.index[verdicts["flagged"]]:
        n = verdicts.loc[client, "n_queries"]
        assert f"% </b> after query {n}, its last" in text.replace("%</b>", "% </b>")


def test_each_flagged_client_gets_a_recommended_action(setup):
    page = _parse((setup / "report.html").read_text())
    verdicts = _verdicts(setup)
    rows = _rows(page, "flagged")
    assert rows
    for row in rows:
        v = verdicts.loc[row["client"]]
        want = recommend(True, v["peak_score"], v["score"], v["threshold"], v["exposure"])
        assert row["recommended action"] == f"{want[0]} {want[1]}"


def test_configured_exposure_limit_drives_the_action(setup, tmp_path):
    """With [monitor] exposure_limit = 0.99 no flagged client's copy reaches it: the actions
    come from the evidence alone, and the note names the configured limit."""
    config = tmp_path / "monitor.toml"
    config.write_text("[monitor]\nexposure_limit = 0.99\n")
    out = tmp_path / "limit.html"
    _verdicts(setup)
    assert main(["report", str(setup / "verdicts.csv"), "--profile", str(setup / "profile"),
                 "--config", str(config), "--out", str(out)]) == 0
    text = out.read_text()
    assert "the configured exposure limit of 99%" in text
    verdicts = _verdicts(setup)
    for row in _rows(_parse(text), "flagged"):
        v = verdicts.loc[row["client"]]
        assert "past its exposure limit" not in row["recommended action"]
        want = recommend(True, v["peak_score"], v["score"], v["threshold"], v["exposure"], 0.99)
        assert row["recommended action"] == f"{want[0]} {want[1]}"


def test_recommend_thresholds():
    assert recommend(True, 2.1, 2.1, 2.0, 0.6, 0.5)[0] == "block"    # exposure past the limit
    assert recommend(True, 4.0, 0.0, 2.0, 0.1, 0.5)[0] == "block"    # 100x past the threshold
    assert recommend(True, 2.1, 2.1, 2.0, 0.1, 0.5)[0] == "throttle"  # still over
    assert recommend(True, 2.1, 1.0, 2.0, 0.1, 0.5)[0] == "review"    # fell back
    assert recommend(False, 9.0, 9.0, 2.0, 1.0) is None
