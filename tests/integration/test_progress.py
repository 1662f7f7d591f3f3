"""Progress bars on every long command, checked on a real pseudo-terminal: profile (fitting and
calibration), analyze, tune, report, partition and bench draw a bar on a terminal, draw
nothing into a pipe, and nothing with --quiet."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attacks.benign import benign_streams
from attacks.registry import run_attack
from attacks.traffic import to_log, write_log
from monitor.model_io import save_model

ROOT = Path(__file__).resolve().parents[2]
BAR = re.compile(r"━")  # rich's bar glyph
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_pty(argv: list[str], timeout: float = 300.0, prompt: bytes | None = None,
               answer: bytes = b"") -> tuple[int, str]:
    """Run ``extraction-monitor ARGV`` with stdin, stdout and stderr on a pseudo-terminal;
    type ``answer`` when ``prompt`` appears; return its exit status and everything it wrote
    (escape sequences removed)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm-256color",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", *argv], stdin=follower,
                            stdout=follower, stderr=follower, env=env, cwd=ROOT,
                            close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
                if prompt is not None and prompt in b"".join(chunks):
                    os.write(leader, answer)
                    prompt = None
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def run_piped(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "monitor.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def files(tmp_path_factory, victim):
    root = tmp_path_factory.mktemp("progress")
    save_model(victim.model, root / "model.skops")
    pd.DataFrame(victim.X_train, columns=victim.feature_names).assign(y=victim.y_train).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame(victim.X_cal, columns=victim.feature_names).assign(y=victim.y_cal).to_csv(
        root / "cal.csv", index=False)
    attacks = [run_attack("uniform", victim, budget=150, seed=0).stream]
    benign = [s for seed in (1, 2) for s in benign_streams(victim, seed=seed, n=40)]
    write_log(to_log(attacks + benign, victim), root / "log.csv")
    return root


def _profile(files) -> Path:
    out = files / "profile"
    if not (out / "profile.json").exists():
        code, text = run_on_pty(["profile", "--model", str(files / "model.skops"), "--train",
                                 str(files / "train.csv"), "--calibration",
                                 str(files / "cal.csv"), "--drift-draws", "10",
                                 "--out", str(out)])
        assert code == 0, text
    return out


def test_profile_shows_progress_on_a_terminal(files):
    out = files / "profile-tty"
    code, text = run_on_pty(["profile", "--model", str(files / "model.skops"), "--train",
                             str(files / "train.csv"), "--calibration", str(files / "cal.csv"),
                             "--drift-draws", "10", "--out", str(out)])
    assert code == 0, text
    assert "fitting the profile" in text and BAR.search(text), text
    # issue 26: the bar's total is the calls fitting makes (it read 128/33 model calls):
    # a logistic regression (refuses NaN: no probe calls) with a calibration split and 5
    # folds: 1 + 5 * 2 calibration and fold calls, 10 drift draws x 6 splits, margins on the
    # 6 splits rounded and truncated to each of the 3 grids that wipe a cancer column out,
    # 1 exposure call
    total = 1 + 5 * 2 + 10 * 6 + 3 * 2 * 6 + 1
    counts = [(int(done), int(of)) for done, of in re.findall(r"\b(\d+)/(\d+) model calls",
                                                               text)]
    assert counts and {of for _, of in counts} == {total}, text
    assert all(done <= of for done, of in counts), text


@pytest.mark.slow
@pytest.mark.parametrize("command", ["analyze", "tune", "report", "partition"])
def test_long_commands_show_progress_on_a_terminal_only(files, command):
    profile = _profile(files)
    log = str(files / "log.csv")
    argv = {
        "analyze": ["analyze", log, "--profile", str(profile), "--out",
                    str(files / "v.csv")],
        "tune": ["tune", "--profile", str(profile), "--benign", log, "--target-fpr", "0.2",
                 "--allow-weaker", "--accept-higher", "--out", str(files / "t.toml")],
        "report": ["report", log, "--profile", str(profile), "--out", str(files / "r.html")],
        "partition": ["partition", log, "--out", str(files / f"parts-{time.time_ns()}")],
    }[command]
    code, text = run_on_pty(argv)
    assert code == 0, text
    assert BAR.search(text), f"{command}: no progress bar on a terminal:\n{text}"
    if command == "analyze":
        n = len(pd.read_csv(log))
        assert re.search(rf"\b{n}/{n} rows\b", text), text
    if command == "partition":
        argv[-1] += "-again"
    piped = run_piped(argv)
    assert piped.returncode == 0, piped.stderr
    assert not BAR.search(piped.stderr), f"{command}: a bar in a pipe: {piped.stderr}"
    if command == "partition":
        argv[-1] += "-quiet"
    code, text = run_on_pty([*argv, "--quiet"])
    assert code == 0 and not BAR.search(text), text


@pytest.mark.slow
def test_bench_shows_progress_on_a_terminal(tmp_path):
    argv = ["bench", "--quick", "--victims", "cancer-logreg", "--attacks", "uniform",
            "--budget", "60", "--benign-seeds", "1", "--jobs", "1", "--out", str(tmp_path)]
    code, text = run_on_pty(argv, timeout=400)
    assert code == 0, text
    assert "benchmark" in text and BAR.search(text), text
    assert re.search(r"\b(\d+)/\1\b", text), text  # the bar reaches n/n


def test_progress_object_counts_without_a_terminal():
    from monitor.progress import Progress

    with Progress("x", total=3, enabled=False) as bar:
        for _ in range(3):
            bar.advance()
    assert bar.done == 3 and not bar.enabled
    assert np.isclose(bar.done / bar.total, 1.0)


def test_python_m_cli_errors_are_one_line_and_workers_alias_warns(tmp_path):
    """`python -m monitor.cli` reports a CommandError as one line (not a traceback), and the
    deprecated analyze --workers still works but says to use --dask-workers."""
    done = run_piped(["analyze", str(tmp_path / "log.csv"), "--profile", str(tmp_path),
                      "--out", str(tmp_path / "v.csv"), "--workers", "3"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert "--workers is deprecated here; use --dask-workers" in lines[0]
    assert lines[1].startswith("extraction-monitor analyze: error: cannot load profile")


@pytest.mark.slow
def test_tune_asks_before_writing_a_higher_threshold(files, victim):
    """On a terminal, tune asks before writing a threshold above the default: 'n' writes
    nothing (exit 2), 'y' writes it."""
    profile = _profile(files)
    streams = [s for seed in range(300, 308) for s in benign_streams(victim, seed=seed, n=60)]
    noisy = to_log([run_attack("uniform", victim, budget=120, seed=9).stream], victim)
    noisy["client_id"] = "benign-batch-scorer"
    frame = pd.concat([to_log(streams, victim), noisy], ignore_index=True)
    write_log(frame.drop(columns=[c for c in frame if c.startswith("truth_")]),
              files / "noisy.csv")
    out = files / "asked.toml"
    argv = ["tune", "--profile", str(profile), "--benign", str(files / "noisy.csv"),
            "--no-detectors", "--target-fpr", "0.05", "--out", str(out)]
    code, text = run_on_pty(argv, prompt=b"[y/N]", answer=b"n\n")
    assert code == 2 and not out.exists(), text
    assert "above the default" in text and "benign-batch-scorer" in text
    code, text = run_on_pty(argv, prompt=b"[y/N]", answer=b"y\n")
    assert code == 0 and out.exists(), text
