"""The offline CLI end to end: `profile` then `analyze` on real files; model loading; errors."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from monitor.cli import build_parser, main
from monitor.model_io import ModelLoadError, load_model, save_model, untrusted_types
from victims import load_victim


@pytest.fixture(scope="module")
def files(tmp_path_factory, victim):
    """Model (skops + joblib), training CSV with labels, calibration Parquet, a query log."""
    root = tmp_path_factory.mktemp("offline")
    save_model(victim.model, root / "model.skops")
    save_model(victim.model, root / "model.joblib")
    train = pd.DataFrame(victim.X_train, columns=victim.feature_names)
    train["y"] = victim.y_train
    train.to_csv(root / "train.csv", index=False)
    cal = pd.DataFrame(victim.X_cal, columns=victim.feature_names)
    cal["y"] = victim.y_cal
    cal.to_parquet(root / "cal.parquet")

    rng = np.random.default_rng(0)
    benign = [victim.X_public[rng.choice(len(victim.X_public), 50, replace=False)]
              for _ in range(3)]
    attack = rng.uniform(victim.lower, victim.upper, size=(120, victim.n_features))
    X = np.vstack([*benign, attack])
    log = pd.DataFrame(X, columns=victim.feature_names)  # named like the training data
    log.insert(0, "client_id", [f"user{i}" for i in range(3) for _ in range(50)]
               + ["scraper"] * 120)
    log.insert(1, "ts", rng.permutation(len(log)).astype(float))
    log["pred"] = victim.answer(X).argmax(axis=1)
    log["user_agent"] = "curl"
    log.loc[[0, 1], victim.feature_names[2]] = np.nan
    log.to_csv(root / "log.csv", index=False)
    return root


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def profile_dir(files):
    out = files / "profile"
    assert main(["profile", "--model", str(files / "model.skops"), "--train",
                 str(files / "train.csv"), "--calibration", str(files / "cal.parquet"),
                 "--out", str(out)]) == 0
    return out


def test_profile_command_writes_a_profile(files, profile_dir, capsys, victim):
    from monitor import Profile

    profile = Profile.load(profile_dir)
    assert profile.feature_names_ == victim.feature_names
    assert profile.calibration_source_.startswith("calibration split")
    code, out, _ = run_cli(capsys, "profile", "--model", files / "model.joblib", "--train",
                           files / "train.csv", "--label-column", "y", "--out",
                           files / "profile-cv")
    assert code == 0 and "cross-fitting" in out and "30 features, 2 classes" in out


@pytest.mark.parametrize("model", [None, "model.joblib", "model.skops"])
def test_analyze_end_to_end(files, profile_dir, capsys, model):
    out_path = files / f"verdicts-{model}.csv"
    extra = ["--model", files / model] if model else []
    code, out, err = run_cli(capsys, "analyze", files / "log.csv", "--profile", profile_dir,
                             "--out", out_path, *extra)
    assert code == 0, err
    table = pd.read_csv(out_path).set_index("client_id")
    assert table.loc["scraper", "flagged"] and not table.drop(index="scraper")["flagged"].any()
    assert table["n_skipped"].sum() == 2
    assert {"n_queries", "score", "peak_score", "flag_at", "reason", "score_density"} <= set(
        table.columns)
    assert out.startswith("analyzed 268 queries from 4 clients: 1 flagged (scraper); "
                          "2 rows skipped")
    assert out.rstrip().endswith(f"verdicts written to {out_path}") and out.count("\n") == 1
    if model is None:  # labels only and no --model: one line says boundary has no evidence
        assert err.count("\n") == 1 and "boundary: no evidence" in err and "--model" in err
    else:
        assert err == ""  # no progress bar: not a TTY and no --progress


def test_analyze_with_config_and_progress(files, profile_dir, capsys):
    config = files / "monitor.toml"
    config.write_text("[monitor]\nalpha = 0.001\nwindows = [40]\n")
    out_path = files / "verdicts.parquet"
    code, out, err = run_cli(capsys, "analyze", files / "log.csv", "--profile", profile_dir,
                             "--out", out_path, "--config", config, "--progress")
    assert code == 0
    assert "268/268 rows" in strip_ansi(err)
    table = pd.read_parquet(out_path)
    assert table["flagged"].sum() == 1
    (files / "bad.toml").write_text("[monitor]\nalpah = 0.1\n")
    code, _, err = run_cli(capsys, "analyze", files / "log.csv", "--profile", profile_dir,
                           "--out", out_path, "--config", files / "bad.toml")
    assert code == 2 and "unknown monitor config key(s): alpah" in err


def _one_line_error(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("extraction-monitor ")
    return err


def test_analyze_errors_are_one_line(files, profile_dir, capsys, victim):
    log = pd.read_csv(files / "log.csv")
    out = files / "v.csv"
    (files / "log.txt").write_text("x")
    err = _one_line_error(capsys, "analyze", files / "log.txt", "--profile", profile_dir,
                          "--out", out)
    assert "unknown file type" in err
    log.drop(columns=["client_id"]).to_csv(files / "noclient.csv", index=False)
    err = _one_line_error(capsys, "analyze", files / "noclient.csv", "--profile", profile_dir,
                          "--out", out)
    assert "no 'client_id' column" in err
    log.drop(columns=victim.feature_names[-3:]).to_csv(files / "short.csv", index=False)
    err = _one_line_error(capsys, "analyze", files / "short.csv", "--profile", profile_dir,
                          "--out", out)
    assert "missing feature columns" in err and victim.feature_names[-3] in err
    err = _one_line_error(capsys, "analyze", files / "log.csv", "--profile", files / "nope",
                          "--out", out)
    assert "not a profile folder" in err
    err = _one_line_error(capsys, "analyze", files / "log.csv", "--profile", profile_dir,
                          "--out", files / "v.xlsx")
    assert "--out v.xlsx: unknown file type" in err


def test_profile_errors_are_one_line(files, capsys, victim):
    train = pd.read_csv(files / "train.csv")
    train.assign(city="Paris").to_csv(files / "train-text.csv", index=False)
    err = _one_line_error(capsys, "profile", "--model", files / "model.joblib", "--train",
                          files / "train-text.csv", "--out", files / "p")
    assert "non-numeric columns city" in err
    err = _one_line_error(capsys, "profile", "--model", files / "model.joblib", "--train",
                          files / "train.csv", "--label-column", "target", "--out", files / "p")
    assert "no label column 'target'" in err
    train.drop(columns=["y"]).iloc[:, :10].to_csv(files / "narrow.csv", index=False)
    err = _one_line_error(capsys, "profile", "--model", files / "model.joblib", "--train",
                          files / "narrow.csv", "--out", files / "p")
    assert "has 10 feature columns but the model expects 30" in err
    (files / "model.bin").write_bytes(b"x")
    err = _one_line_error(capsys, "profile", "--model", files / "model.bin", "--train",
                          files / "train.csv", "--out", files / "p")
    assert "unknown model file type" in err


def test_skops_refuses_untrusted_types_unless_listed(tmp_path, capsys):
    tree = load_victim("wine-tree", seed=0)
    path = save_model(tree.model, tmp_path / "tree.skops")
    pd.DataFrame(tree.X_train, columns=tree.feature_names).assign(y=tree.y_train).to_csv(
        tmp_path / "train.csv", index=False)
    with pytest.raises(ModelLoadError, match="sklearn.tree._tree.Tree; if you trust them"):
        load_model(path)
    trusted = untrusted_types(path)
    assert load_model(path, trusted=trusted).predict(tree.X_public[:3]).shape == (3,)
    err = _one_line_error(capsys, "profile", "--model", path, "--train", tmp_path / "train.csv",
                          "--out", tmp_path / "p")
    assert "--trust" in err
    code, out, _ = run_cli(capsys, "profile", "--model", path, "--trust", trusted[0], "--train",
                           tmp_path / "train.csv", "--out", tmp_path / "p")
    assert code == 0 and "DecisionTreeClassifier" in out


def test_model_io_rejects_non_classifiers(tmp_path):
    path = save_model({"not": "a model"}, tmp_path / "thing.joblib")
    with pytest.raises(ModelLoadError, match="not a fitted classifier with predict_proba"):
        load_model(path)
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "absent.skops")
    (tmp_path / "junk.skops").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="cannot load skops model"):
        load_model(tmp_path / "junk.skops")


def test_help_says_joblib_means_trust():
    for name in ("profile", "analyze"):
        sub = build_parser([name])._subparsers._group_actions[0].choices
        text = " ".join(sub[name].format_help().split())
        assert "Loading a joblib/pickle file means trusting it" in text
        assert "--trust" in text


@pytest.fixture(scope="module")
def own_log(files, victim):
    """The test log in another shape: user, timestamp, prob_*, request_id (CSV and a JSON
    array), and the same queries and answers in the standard shape."""
    log = pd.read_csv(files / "log.csv", dtype={"client_id": str})
    answers = victim.answer(log[victim.feature_names].fillna(0).to_numpy())
    own = log.drop(columns=["pred"]).rename(columns={"client_id": "user"})
    own["timestamp"] = (pd.Timestamp("2024-06-01T12:00:00Z")
                        + pd.to_timedelta(log["ts"], unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%S")
    own = own.drop(columns=["ts"])
    for j in range(answers.shape[1]):
        own[f"prob_{j}"] = answers[:, j]
    own["request_id"] = [f"req-{i:05d}" for i in range(len(own))]
    own.to_csv(files / "own.csv", index=False)
    own.to_json(files / "own.json", orient="records")
    standard = log.drop(columns=["pred"]).assign(**{f"p_{j}": answers[:, j]
                                                    for j in range(answers.shape[1])})
    standard.to_csv(files / "standard.csv", index=False)
    return own


def test_analyze_a_log_in_its_own_shape(files, profile_dir, capsys, victim, own_log):
    """Acceptance (issue 15): columns user, timestamp, prob_* and an extra request_id,
    analyzed without renaming anything; request_id is carried into the verdicts; the result
    equals the standard-shape log's; a JSON array works as well as JSON lines."""
    own = own_log
    mapping = ["--client-column", "user", "--time-column", "timestamp",
               "--proba-columns", "prob_*", "--keep", "request_id"]
    code, out, err = run_cli(capsys, "analyze", files / "own.csv", "--profile", profile_dir,
                             "--out", files / "own-v.csv", *mapping)
    assert code == 0, err
    written = pd.read_csv(files / "own-v.csv", dtype={"user": str, "client_id": str})
    # issue 26: the verdicts keep the log's own client column name (and client_id)
    assert written.columns[0] == "user" and (written["user"] == written["client_id"]).all()
    assert set(written["user"]) == set(own["user"].astype(str))
    got = pd.read_csv(files / "own-v.csv").set_index("client_id")
    code, _, err = run_cli(capsys, "analyze", files / "standard.csv", "--profile", profile_dir,
                           "--out", files / "std-v.csv")
    assert code == 0, err
    want = pd.read_csv(files / "std-v.csv").set_index("client_id")
    assert "user" not in want.columns  # a standard log names no other client column
    pd.testing.assert_frame_equal(got.drop(columns=["request_id", "user"]), want)
    code, _, err = run_cli(capsys, "analyze", files / "own.csv", "--profile", profile_dir,
                           "--out", files / "own-ooc.jsonl", "--out-of-core",
                           *mapping[:-2])  # partition by partition (no --keep there)
    assert code == 0, err
    partitioned = pd.read_json(files / "own-ooc.jsonl", lines=True, dtype={"user": str})
    assert partitioned.columns[0] == "user"
    assert sorted(partitioned["user"]) == sorted(written["user"])
    assert got.loc["scraper", "flagged"]
    # request_id of the flagging query: the scraper's (flag_at + 1)-th query in time order
    rows = own[own["user"] == "scraper"].sort_values("timestamp", kind="stable")
    rows = rows[rows[victim.feature_names].notna().all(axis=1)]
    assert got.loc["scraper", "request_id"] == rows["request_id"].iloc[
        int(got.loc["scraper", "flag_at"])]
    code, _, err = run_cli(capsys, "analyze", files / "own.json", "--profile", profile_dir,
                           "--out", files / "own-json.csv", *mapping)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(files / "own-json.csv").set_index("client_id"),
                                  got)


def test_log_column_errors_name_the_nearest_column(files, profile_dir, capsys, own_log):
    own = files / "own.csv"
    err = _one_line_error(capsys, "analyze", own, "--profile", profile_dir,
                          "--out", files / "x.csv")
    assert "no 'client_id' column (nearest: 'user')" in err and "--client-column" in err
    err = _one_line_error(capsys, "analyze", own, "--profile", profile_dir, "--out",
                          files / "x.csv", "--client-column", "user", "--time-column", "tstamp")
    assert "no column 'tstamp'" in err and "(nearest: 'timestamp')" in err
    err = _one_line_error(capsys, "analyze", own, "--profile", profile_dir, "--out",
                          files / "x.csv", "--client-column", "user", "--time-column",
                          "timestamp", "--proba-columns", "proba_*")
    assert "no column matches --proba-columns 'proba_*'" in err and "try 'prob_*'" in err
    err = _one_line_error(capsys, "analyze", own, "--profile", profile_dir, "--out",
                          files / "x.csv", "--client-column", "user", "--time-column",
                          "timestamp", "--keep", "request")
    assert "no column 'request'" in err and "(nearest: 'request_id')" in err


def test_analyze_logs_flag_events_as_json_lines(files, profile_dir, capsys):
    import json

    code, out, err = run_cli(capsys, "analyze", files / "log.csv", "--profile", profile_dir,
                             "--out", files / "ev.csv", "--log-level", "info",
                             "--log-format", "json")
    assert code == 0
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["client_id"] for e in events if e["event"] == "client_flagged"] == ["scraper"]
    flagged = next(e for e in events if e["event"] == "client_flagged")
    assert flagged["action"] == "report" and flagged["score"] > flagged["threshold"]
    assert isinstance(flagged["flag_at"], int) and flagged["reason"]


def test_profile_label_column_hint_and_calibration_knobs(files, capsys, victim, tmp_path):
    from monitor import Profile

    train = pd.read_csv(files / "train.csv").rename(columns={"y": "target"})
    train.to_csv(tmp_path / "target.csv", index=False)
    pd.read_parquet(files / "cal.parquet").rename(columns={"y": "target"}).to_parquet(
        tmp_path / "cal.parquet")
    err = _one_line_error(capsys, "profile", "--model", files / "model.joblib", "--train",
                          tmp_path / "target.csv", "--out", tmp_path / "p")
    assert "--label-column target" in err and "do not match" not in err
    code, out, err = run_cli(capsys, "profile", "--model", files / "model.joblib", "--train",
                             tmp_path / "target.csv", "--label-column", "target",
                             "--calibration", tmp_path / "cal.parquet", "--folds", "3",
                             "--drift-draws", "4", "--calibration-rows", "60",
                             "--reference-rows", "100", "--out", tmp_path / "p")
    assert code == 0, err
    profile = Profile.load(tmp_path / "p")
    assert (profile.n_folds, profile.drift_draws, profile.max_reference) == (3, 4, 100)
    assert profile.calibration_source_.startswith("calibration split (60 rows)")
    assert "3-fold cross-fitting" in profile.calibration_source_
    assert len(profile.reference_) == 100
    err = _one_line_error(capsys, "profile", "--model", files / "model.joblib", "--train",
                          files / "train.csv", "--folds", "1", "--out", tmp_path / "q")
    assert "--folds must be at least 2" in err


def test_a_dataframe_pipeline_is_called_with_its_feature_names(tmp_path, capsys, victim):
    """A pipeline fitted on a DataFrame gives no feature-name warning in profile or analyze
    (it is called with DataFrames), and a pipeline selecting columns by name works."""
    import warnings

    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = [str(n) for n in victim.feature_names]
    frame = pd.DataFrame(victim.X_train, columns=names)
    pipe = make_pipeline(ColumnTransformer([("scale", StandardScaler(), names[:10])]),
                         LogisticRegression(max_iter=500)).fit(frame, victim.y_train)
    save_model(pipe, tmp_path / "pipe.joblib")
    frame.assign(y=victim.y_train).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(victim.X_cal, columns=names).assign(y=victim.y_cal).to_csv(
        tmp_path / "cal.csv", index=False)
    log = pd.DataFrame(victim.X_public[:60], columns=names)
    log.insert(0, "client_id", "u")
    log.insert(1, "seq", range(60))
    log.to_csv(tmp_path / "log.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(capsys, "profile", "--model", tmp_path / "pipe.joblib",
                               "--train", tmp_path / "train.csv", "--calibration",
                               tmp_path / "cal.csv", "--drift-draws", "5", "--out",
                               tmp_path / "profile")
        assert code == 0, err
        code, _, err = run_cli(capsys, "analyze", tmp_path / "log.csv", "--profile",
                               tmp_path / "profile", "--model", tmp_path / "pipe.joblib",
                               "--out", tmp_path / "v.csv")
        assert code == 0, err
    named = [str(w.message) for w in caught if "feature names" in str(w.message)]
    assert named == [], named[:2]
    assert "Pipeline" in (tmp_path / "profile" / "profile.json").read_text()


def test_proba_columns_are_checked_against_the_profiles_classes(files, profile_dir, capsys,
                                                                own_log):
    """issue 26: `--proba-columns prob_1,prob_0` (classes listed out of order) used to score
    class 1's probabilities as class 0's (exposure 0.88 -> 0.12); now the columns are mapped
    to the profile's classes by name and the verdicts equal the right order's. Names that
    map to no class are a one-line error."""
    mapping = ["--client-column", "user", "--time-column", "timestamp"]
    code, _, err = run_cli(capsys, "analyze", files / "own.csv", "--profile", profile_dir,
                           "--out", files / "reversed-v.csv", *mapping,
                           "--proba-columns", "prob_1,prob_0")
    assert code == 0, err
    code, _, err = run_cli(capsys, "analyze", files / "own.csv", "--profile", profile_dir,
                           "--out", files / "ordered-v.csv", *mapping,
                           "--proba-columns", "prob_0,prob_1")
    assert code == 0, err
    reversed_, ordered = (pd.read_csv(files / f"{n}-v.csv") for n in ("reversed", "ordered"))
    assert "exposure" in ordered.columns
    pd.testing.assert_frame_equal(reversed_, ordered)
    renamed = own_log.rename(columns={"prob_0": "left", "prob_1": "right"})
    renamed.to_csv(files / "renamed.csv", index=False)
    err = _one_line_error(capsys, "analyze", files / "renamed.csv", "--profile", profile_dir,
                          "--out", files / "x.csv", *mapping, "--proba-columns", "left,right")
    assert "do not name the profile's classes (0, 1)" in err and "'prob_0'" in err
