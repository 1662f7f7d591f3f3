"""`extraction-monitor demo`: the whole loop over HTTP on 127.0.0.1 (what `make demo` runs)."""

from __future__ import annotations

from monitor.cli import main


def test_demo_flags_attackers_and_no_benign_client(capsys):
    assert main(["demo", "--victim", "cancer-logreg"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 attackers flagged and blocked; 0 of 5 benign clients flagged" in out
