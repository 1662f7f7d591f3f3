"""The HTML report: self-contained, flagged clients first, deterministic, and (when Chromium
is installed) rendered by a headless browser to a non-empty screenshot."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from attacks.benign import benign_streams
from attacks.registry import run_attack
from attacks.traffic import to_log, write_log
from monitor import Profile
from monitor.cli import main
from monitor.report import calibration_checks, order_clients
from victims import load_victim

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects <img> sources, the clients table's rows and any external references."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link") or (tag == "img" and not
                                          attrs.get("src", "").startswith("data:")):
            self.external.append(tag)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    v = load_victim("wine-tree")
    Profile(seed=0).fit(v.model, v.X_train, v.y_train, X_cal=v.X_cal, y_cal=v.y_cal).save(
        tmp / "profile")
    attacks = [run_attack(name, v, budget=150, seed=0).stream
               for name in ("uniform", "boundary-walk", "jbda")]
    benign = benign_streams(v, seed=3, n=60)
    write_log(to_log(attacks + benign, v), tmp / "log.csv")
    return tmp


def _check_page(text: str, expect_timelines: bool) -> _Page:
    page = _parse(text)
    assert text.startswith("<!DOCTYPE html>") and not page.external
    assert page.images and all(s.startswith("data:image/png;base64,") for s in page.images)
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    rows = page.tables["clients"]
    header, body = rows[0], rows[1:]
    flagged = [r[header.index("flagged")] == "True" for r in body]
    assert any(flagged) and not all(flagged)
    assert flagged == sorted(flagged, reverse=True), "flagged clients must come first"
    fired = [r[header.index("fired")] for r, f in zip(body, flagged, strict=True) if f]
    assert all(name in ("density", "boundary", "chain") for name in fired)
    assert len(page.tables["calibration"]) > 1
    n_timelines = sum(s.startswith("data:") for s in page.images) - 1  # minus calibration
    assert (n_timelines > 0) == expect_timelines
    return page


def test_report_from_log_has_timelines_roc_and_is_deterministic(setup, capsys):
    out, again = setup / "report.html", setup / "again.html"
    for path in (out, again):
        assert main(["report", str(setup / "log.csv"), "--profile", str(setup / "profile"),
                     "--out", str(path)]) == 0
    text = out.read_text()
    page = _check_page(text, expect_timelines=True)
    assert out.read_bytes() == again.read_bytes()
    assert "ROC and detection delay" in text and "roc_auc" in text
    header, *body = page.tables["clients"]
    truth = {r[header.index("client_id")]: r[header.index("truth")] for r in body}
    assert truth["attack-uniform-0"] == "attack" and truth["benign-random-3"] == "benign"
    assert "score timeline of attack-uniform-0" in text


def test_report_from_verdict_table(setup):
    verdicts, out = setup / "verdicts.csv", setup / "from_table.html"
    assert main(["analyze", str(setup / "log.csv"), "--profile", str(setup / "profile"),
                 "--out", str(verdicts)]) == 0
    assert main(["report", str(verdicts), "--profile", str(setup / "profile"),
                 "--out", str(out)]) == 0
    text = out.read_text()
    _check_page(text, expect_timelines=False)
    table = pd.read_csv(verdicts)
    for reason in table.loc[table["flagged"], "reason"]:
        assert reason.replace("'", "&#x27;") in text


def test_order_clients_puts_flagged_first_by_peak():
    table = pd.DataFrame({"client_id": ["a", "b", "c", "d"], "flagged": [False, True, False, True],
                          "flag_at": pd.array([None, 40, None, 5], dtype="Int64"),
                          "peak_score": [1.0, 3.0, 0.5, 9.0]})
    assert order_clients(table)["client_id"].tolist() == ["d", "b", "a", "c"]


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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: the HTML is validated structurally")
def test_report_renders_in_headless_chromium(setup, tmp_path):
    report = setup / "report.html"
    if not report.exists():
        assert main(["report", str(setup / "log.csv"), "--profile", str(setup / "profile"),
                     "--out", str(report)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
                    "--window-size=1200,2000", f"--screenshot={shot}", report.as_uri()],
                   check=True, timeout=120, capture_output=True)
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    from matplotlib.image import imread

    pixels = imread(shot)
    assert np.std(pixels) > 0.01, "screenshot is blank"
