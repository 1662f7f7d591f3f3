"""The detection benchmark: `extraction-monitor bench --quick` end to end, and its summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from attacks.bench import (
    BENIGN_BAR,
    CONFIGS,
    BenchSpec,
    acceptance,
    detection_table,
    load_result,
    summary_markdown,
    threshold_at_fpr,
)
from monitor.cli import main

REQUIRED_COLUMNS = ["victim", "client_id", "kind", "behaviour", "config", "n_queries", "flagged",
                    "flag_at", "queries_to_flag", "peak_score", "fidelity_at_flag",
                    "fidelity_final"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--quiet", "--seed", "0", "--out", str(out)]) == 0
    return out, pd.read_csv(out / "per_client.csv")


@pytest.mark.slow
def test_quick_run_writes_every_output(quick_run):
    out, table = quick_run
    for name in ("per_client.csv", "adaptive.csv", "timelines.csv", "spec.json", "summary.md",
                 "roc.png", "timelines.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert set(table.config) == set(CONFIGS)
    assert {"benign", "uniform", "jbda"} <= set(table.kind)
    # every stream went once through every configuration
    assert (table.groupby(["victim", "client_id"]).config.nunique() == len(CONFIGS)).all()
    summary = (out / "summary.md").read_text()
    for heading in ("Detection rate", "Benign false-positive rate", "Acceptance",
                    "Adaptive attackers"):
        assert heading in summary


def test_combined_monitor_keeps_benign_clients_quiet(quick_run):
    _, table = quick_run
    benign = table[(table.kind == "benign") & (table.config == "combined")]
    assert len(benign) >= 50
    # the monitor promises P(flag) <= alpha per benign client; allow the 99.9% binomial quantile
    allowed = binom.ppf(0.999, len(benign), CONFIGS["combined"].alpha)
    assert benign.flagged.sum() <= allowed
    assert benign.fidelity_at_flag.isna().all()


def test_uniform_attacker_is_flagged_early(quick_run):
    _, table = quick_run
    uniform = table[(table.kind == "uniform") & (table.config == "combined")]
    assert len(uniform) == 2  # both quick victims
    assert uniform.flagged.all()
    assert (uniform.queries_to_flag <= 0.5 * uniform.n_queries).all()
    assert (uniform.queries_to_flag == uniform.flag_at + 1).all()
    assert uniform.fidelity_at_flag.between(0, 1).all()
    det = detection_table(table)
    at_fpr = det[(det.attack == "uniform") & (det.config == "combined")]
    assert at_fpr["detection_at_fpr0.01"].iloc[0] >= 0.5


def test_adaptive_table_has_every_ratio_and_sybil_count(quick_run):
    out, _ = quick_run
    adaptive = pd.read_csv(out / "adaptive.csv")
    spec = load_result(out).spec
    mix = adaptive[adaptive.strategy == "mix"]
    assert sorted(mix.mix_ratio.unique()) == sorted(spec.mix_ratios)
    assert sorted(adaptive[adaptive.strategy == "sybil"].sybils.unique()) == sorted(spec.sybil_ks)
    # with no camouflage the adaptive stream is the plain attack: detected like it
    assert mix[mix.mix_ratio == 0].detected.all()


def test_summary_can_be_rebuilt_from_the_files(quick_run):
    out, table = quick_run
    result = load_result(out)
    assert result.per_client.shape == table.shape
    assert result.timelines and len(result.timelines[0]["row_scores"]) > 0
    assert "## Acceptance" in summary_markdown(result)


def test_threshold_at_fpr_allows_the_target_fraction():
    peaks = np.arange(200, dtype=float)
    t = threshold_at_fpr(peaks, 0.01)
    assert (peaks >= t).mean() <= 0.01
    assert (peaks >= np.nextafter(t, -np.inf) - 1).mean() > 0.01


def _row(kind, flagged, q, fid_flag, fid_final, floor=0.5, **extra):
    return {"victim": "v", "seed": 0, "client_id": f"{kind}-{q}", "kind": kind,
            "behaviour": kind, "config": "combined", "n_queries": 300, "flagged": flagged,
            "flag_at": q - 1 if flagged else np.nan, "queries_to_flag": q if flagged else np.nan,
            "peak_score": 3.0 if flagged else 0.5, "threshold": 2.0,
            "fidelity_at_flag": fid_flag, "fidelity_final": fid_final, "fidelity_floor": floor,
            **extra}


def test_acceptance_passes_and_fails_for_the_right_reasons():
    table = pd.DataFrame([
        _row("early", True, 20, 0.6, 0.95),
        _row("late", True, 250, 0.93, 0.95),
        _row("missed", False, 0, np.nan, 0.95),
        _row("useless", True, 20, 0.5, 0.5),
        *[_row("benign", False, 0, np.nan, np.nan) for _ in range(99)],
        _row("benign", True, 40, np.nan, np.nan),
    ])
    verdicts = dict(zip(acceptance(table).criterion.str.split(":").str[0],
                        acceptance(table).result, strict=True))
    assert verdicts["early"] == "pass"
    assert verdicts["late"] == "FAIL"
    assert verdicts["missed"] == "FAIL"
    assert verdicts["useless"].startswith("n/a")
    assert verdicts[f"benign clients flagged <= {BENIGN_BAR:.0%}"] == "pass"  # 1 of 100


def test_bad_configuration_and_unknown_attack_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown configuration"):
        BenchSpec(configs=("nope",))
    with pytest.raises(ValueError, match="mix_ratios"):
        BenchSpec(mix_ratios=(1.0,))
    assert main(["bench", "--quick", "--attacks", "uniform,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown attack(s) nope" in err and len(err.splitlines()) == 1
