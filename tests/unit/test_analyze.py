"""Offline analysis: verdicts from a log equal a live replay, attackers are flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor import Monitor, MonitorConfig
from monitor.analyze import analyze_log, choose_outputs, summary_line
from monitor.logs import read_log

N_BENIGN, BENIGN_ROWS, ATTACK_ROWS = 5, 60, 150


def make_log(victim, seed: int = 0) -> pd.DataFrame:
    """Benign clients asking public rows, one client asking uniform rows in the feature box;
    rows interleaved in time (shuffled seq), with the probabilities and labels returned."""
    rng = np.random.default_rng(seed)
    parts, ids = [], []
    for c in range(N_BENIGN):
        rows = rng.choice(len(victim.X_public), size=BENIGN_ROWS, replace=False)
        parts.append(victim.X_public[rows])
        ids += [f"benign-{c}"] * BENIGN_ROWS
    parts.append(rng.uniform(victim.lower, victim.upper, size=(ATTACK_ROWS, victim.n_features)))
    ids += ["attacker"] * ATTACK_ROWS
    X = np.vstack(parts)
    frame = pd.DataFrame(X, columns=[f"x_{j}" for j in range(victim.n_features)])
    proba = victim.answer(X)
    frame.insert(0, "client_id", ids)
    frame.insert(1, "seq", rng.permutation(len(frame)))
    frame["p_0"], frame["p_1"] = proba[:, 0], proba[:, 1]
    frame["pred"] = victim.classes[proba.argmax(axis=1)]
    return frame.sort_values("seq").reset_index(drop=True)


def replay_row_by_row(frame: pd.DataFrame, monitor: Monitor, outputs: str | None) -> dict:
    """The reference: each client's rows, in seq order, one ``observe`` call per query."""
    verdicts = {}
    features = [c for c in frame.columns if c.startswith("x_")]
    for client, rows in frame.sort_values("seq").groupby("client_id", sort=True):
        X = rows[features].to_numpy()
        out = None if outputs is None else rows[outputs].to_numpy()
        for i in range(len(X)):
            verdicts[client] = monitor.observe(
                client, X[i], None if out is None else out[i:i + 1])
    return verdicts


@pytest.mark.parametrize(("with_model", "suffix"), [(False, ".parquet"), (True, ".csv")])
def test_attacker_flagged_and_benign_clients_not(tmp_path, victim, profile, with_model, suffix):
    frame = make_log(victim)
    path = tmp_path / f"log{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    monitor = Monitor(profile, model=victim.model if with_model else None)
    table = analyze_log(log, monitor).set_index("client_id")
    assert table.loc["attacker", "flagged"]
    assert table.loc["attacker", "flag_at"] < 60
    assert table.loc["attacker", "peak_score"] >= table.loc["attacker", "threshold"]
    benign = table.drop(index="attacker")
    assert len(benign) == N_BENIGN and not benign["flagged"].any()
    assert (benign["peak_score"] < table.loc["attacker", "peak_score"]).all()
    assert table["n_queries"].to_dict() == {**{f"benign-{c}": BENIGN_ROWS
                                               for c in range(N_BENIGN)}, "attacker": ATTACK_ROWS}
    assert {f"score_{d}" for d in monitor.config.detectors} <= set(table.columns)
    assert (table["n_skipped"] == 0).all()


@pytest.mark.parametrize(("with_model", "outputs"), [(False, ["p_0", "p_1"]), (True, None)])
def test_verdicts_equal_row_by_row_observe(tmp_path, victim, profile, with_model, outputs):
    frame = make_log(victim, seed=1)
    path = tmp_path / "log.jsonl"
    frame.to_json(path, orient="records", lines=True)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    model = victim.model if with_model else None
    table = analyze_log(log, Monitor(profile, model=model), batch_rows=37)
    reference = replay_row_by_row(frame, Monitor(profile, model=model), outputs)
    assert sorted(reference) == table["client_id"].tolist()
    for row in table.itertuples(index=False):
        want = reference[row.client_id]
        assert row.n_queries == want.n_queries
        assert row.flagged == want.flagged
        assert (pd.isna(row.flag_at) and want.flag_at is None) or row.flag_at == want.flag_at
        assert row.reason == want.reason
        assert row.score == pytest.approx(want.score, abs=1e-9)
        assert row.peak_score == pytest.approx(want.peak_score, abs=1e-9)
        for name, detail in want.detectors.items():
            assert getattr(row, f"score_{name}") == pytest.approx(detail["score"], abs=1e-9)


def test_batch_size_does_not_change_the_table(victim, profile, tmp_path):
    path = tmp_path / "log.csv"
    make_log(victim, seed=2).to_csv(path, index=False)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    whole = analyze_log(log, Monitor(profile))
    progress = []
    small = analyze_log(log, Monitor(profile), batch_rows=11,
                        on_progress=lambda done, total: progress.append((done, total)))
    pd.testing.assert_frame_equal(whole, small)
    assert progress[-1] == (log.n_rows, log.n_rows)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_skipped_rows_are_reported_per_client(victim, profile, tmp_path):
    frame = make_log(victim, seed=3)
    benign0 = frame.index[frame.client_id == "benign-0"]
    frame.loc[benign0[:4], "x_3"] = np.nan
    frame.loc[frame.index[frame.client_id == "attacker"][:2], "p_1"] = np.inf
    ghost = frame.iloc[:3].copy()
    ghost["client_id"], ghost["x_0"] = "ghost", np.inf
    frame = pd.concat([frame, ghost], ignore_index=True)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    assert log.n_skipped_nonfinite == 9
    table = analyze_log(log, Monitor(profile)).set_index("client_id")
    assert table.loc["benign-0", "n_skipped"] == 4
    assert table.loc["benign-0", "n_queries"] == BENIGN_ROWS - 4
    assert table.loc["attacker", "n_skipped"] == 2 and table.loc["attacker", "flagged"]
    assert table.loc["ghost", "n_queries"] == 0 and table.loc["ghost", "n_skipped"] == 3
    assert not table.loc["ghost", "flagged"] and "all rows skipped" in table.loc["ghost", "reason"]
    line = summary_line(table.reset_index(), log.n_skipped_nonfinite)
    assert line.startswith(f"analyzed {log.n_rows} queries from {N_BENIGN + 2} clients: "
                           "1 flagged (attacker)")
    assert line.endswith("; 9 rows skipped (NaN/inf or missing values)")


def test_output_choice_rule_and_labels_only_log(victim, profile, tmp_path):
    frame = make_log(victim, seed=4)
    path = tmp_path / "labels.csv"
    frame.drop(columns=["p_0", "p_1"]).to_csv(path, index=False)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    assert choose_outputs(log, has_model=False)[0] == "labels"
    assert choose_outputs(log, has_model=True) == ("none", None)
    config = MonitorConfig(prada=True)
    table = analyze_log(log, Monitor(profile, config=config)).set_index("client_id")
    assert table.loc["attacker", "flagged"] and not table.drop(index="attacker")["flagged"].any()
    assert "prada_flagged" in table.columns and table["prada_flag_at"].dtype == "Int64"
    full = read_log(_write_csv(frame, tmp_path / "full.csv"), profile.feature_names_, 2)
    assert choose_outputs(full, has_model=True)[0] == "proba"


def _write_csv(frame: pd.DataFrame, path):
    frame.to_csv(path, index=False)
    return path
