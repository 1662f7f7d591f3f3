"""Features as the model sees them: a DataFrame pipeline with named, categorical and missing
features, profiled, observed online with DataFrames and analysed offline from a named log."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from monitor import InvalidInput, Monitor, MonitorConfig, Profile
from monitor.analyze import analyze_log
from monitor.detectors import Batch, DensityDetector
from monitor.logs import read_log

NUMERIC = ["age", "income", "score", "tenure"]
COLORS = ["red", "green", "blue", "black", "white"]


def _table(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Four numeric columns (income ~10% missing) and a categorical one; a label that
    depends on both kinds."""
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n).round(),
        "income": rng.lognormal(10, 0.5, n),
        "color": rng.choice(COLORS, size=n, p=[0.35, 0.25, 0.2, 0.12, 0.08]),
        "score": rng.normal(0, 1, n),
        "tenure": rng.gamma(2.0, 3.0, n),
    })
    y = ((frame["age"] > 40) ^ frame["color"].isin(["red", "white"])
         ^ (frame["score"] > 0.5)).astype(int).to_numpy()
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    return frame, y


@pytest.fixture(scope="module")
def victim():
    """A HistGradientBoosting pipeline whose ColumnTransformer picks the categorical column by
    name, fitted on a DataFrame with missing values; its splits and its profile."""
    rng = np.random.default_rng(7)
    frame, y = _table(1600, rng)
    train, cal, public = frame.iloc[:700], frame.iloc[700:1000], frame.iloc[1000:]
    model = make_pipeline(
        ColumnTransformer([("color", OneHotEncoder(handle_unknown="ignore"), ["color"])],
                          remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=60, random_state=0))
    model.fit(train, y[:700])
    profile = Profile(seed=0).fit(model, train, y[:700], X_cal=cal, y_cal=y[700:1000])
    box = frame[NUMERIC].agg(["min", "max"])
    return {"model": model, "train": train, "public": public.reset_index(drop=True),
            "profile": profile, "box": box}


def _uniform_attacker(victim, n: int, seed: int) -> pd.DataFrame:
    """Random values per numeric column (in the training box) and random categories, unseen
    ones included, in a column order of its own."""
    rng = np.random.default_rng(seed)
    box = victim["box"]
    rows = {c: rng.uniform(box.loc["min", c], box.loc["max", c], n) for c in NUMERIC}
    rows["color"] = rng.choice(COLORS + ["purple", "teal", "?"], size=n)
    return pd.DataFrame(rows)[["score", "color", "tenure", "income", "age"]]


def _benign(victim, client: int, n: int = 80) -> pd.DataFrame:
    return victim["public"].sample(n, random_state=client).reset_index(drop=True)


def test_the_profile_records_features_as_the_model_sees_them(victim):
    profile = victim["profile"]
    schema = profile.schema_
    assert schema.names == ["age", "income", "color", "score", "tenure"]
    assert schema.kinds == ["numeric", "numeric", "categorical", "numeric", "numeric"]
    assert schema.frame and schema.categories["color"][0] == "red"
    # HGB takes NaN in numeric columns; the one-hot encoder was never shown a missing color,
    # but it ignores values it never saw, a null among them (issue 26): the model takes it
    assert schema.allow_nan == [True, True, True, True, True]
    assert schema.missing_seen == [False, True, False, False, False]
    assert "income (missing)" in profile.encoded_names_ and "color=blue" in profile.encoded_names_
    assert profile.encoded_names_[-1] == "<novel>" and profile.space_.novelty > 0


def test_uniform_attacker_is_flagged_and_benign_clients_with_missing_values_are_not(victim):
    profile, model = victim["profile"], victim["model"]
    mon = Monitor(profile, model=model)
    with_nan = 0
    for c in range(8):
        rows = _benign(victim, c)
        with_nan += int(rows["income"].isna().sum())
        verdict = mon.observe(f"benign-{c}", rows)
        assert not verdict.flagged, (c, verdict.reason)
    assert with_nan > 30  # the benign clients did send rows with missing values
    attack = _uniform_attacker(victim, 150, seed=1)
    verdict = mon.observe("mallory", attack)
    assert verdict.flagged and verdict.flag_at < 40, verdict.reason
    assert verdict.detectors["boundary"]["evidence"]  # margins from the model


def test_unseen_categories_and_unexpected_missing_values_raise_the_density_statistic(victim):
    profile = victim["profile"]
    rows = _benign(victim, 0, 40)
    rows = rows[rows["income"].notna()].reset_index(drop=True)
    unseen = rows.assign(color="purple")
    no_age = rows.assign(age=np.nan)  # accepted by the model, never missing in training
    detector = DensityDetector(profile)

    def stats(frame):
        X = profile.rows(frame).X
        return detector.statistic(Batch(X=X, Z=profile.transform(X), proba=None))

    base = stats(rows)
    assert (stats(unseen) > base).all() and (stats(no_age) > base).all()
    assert stats(unseen).min() > np.quantile(profile.calibration_["density"]["statistic"], 0.9)


def test_column_order_never_matters_and_records_equal_frames(victim):
    profile, model = victim["profile"], victim["model"]
    rows = pd.concat([_benign(victim, 3, 40), _uniform_attacker(victim, 60, seed=2)],
                     ignore_index=True)
    right = Monitor(profile, model=model).observe("c", rows[profile.feature_names_])
    shuffled = Monitor(profile, model=model).observe("c", rows[rows.columns[::-1]])
    records = Monitor(profile, model=model).observe(
        "c", rows.sample(frac=1.0, axis=1, random_state=0).to_dict("records"))
    unnamed = Monitor(profile, model=model).observe(  # no column names: the profile's order
        "c", pd.DataFrame(rows[profile.feature_names_].to_numpy(dtype=object)))
    for other in (shuffled, records, unnamed):
        np.testing.assert_array_equal(right.row_scores, other.row_scores)
        assert (right.flagged, right.flag_at, right.reason) == (other.flagged, other.flag_at,
                                                                other.reason)


def test_batch_equals_row_by_row_with_frames(victim):
    profile, model = victim["profile"], victim["model"]
    config = MonitorConfig(detectors=("density", "local_density", "boundary", "chain"))
    rows = pd.concat([_benign(victim, 4, 50), _uniform_attacker(victim, 50, seed=3)],
                     ignore_index=True)
    rows = pd.concat([rows, rows.iloc[:10]], ignore_index=True)  # retries
    batch = Monitor(profile, config, model=model).observe("c", rows)
    one = Monitor(profile, config, model=model)
    scores = np.concatenate([one.observe("c", rows.iloc[[i]]).row_scores
                             for i in range(len(rows))])
    np.testing.assert_allclose(batch.row_scores, scores, rtol=0, atol=1e-9)
    assert batch.n_distinct == len(rows) - 10


def test_bad_rows_get_one_line_errors_naming_the_column_and_change_nothing(victim):
    profile, model = victim["profile"], victim["model"]
    mon = Monitor(profile, model=model)
    mon.observe("c", _benign(victim, 5, 5))
    good = _benign(victim, 6, 3)
    cases = [
        (good.drop(columns=["tenure"]), "lack column 'tenure'"),
        (good.assign(tenur=1.0).drop(columns=["tenure"]), "(nearest: 'tenur')"),
        (good.assign(extra=1.0), "unknown column 'extra'"),
        (good.assign(age=["old", 3.0, 4.0]), "column 'age' must hold numbers, got 'old'"),
        (good.assign(score=[np.inf, 0.0, 1.0]), "column 'score' has an infinite value"),
    ]
    for rows, message in cases:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")) \
                as caught:
            mon.observe("c", rows)
        assert "\n" not in str(caught.value)
    assert mon.verdict("c").n_queries == 5
    mon.observe("c", good.assign(color=[None, "red", "red"]))  # the model takes a null color
    assert mon.verdict("c").n_queries == 8


def test_offline_analysis_of_a_named_log_equals_the_online_verdicts(victim, tmp_path):
    profile, model = victim["profile"], victim["model"]
    parts = []
    for c in range(4):
        parts.append(_benign(victim, 10 + c, 60).assign(user=f"benign-{c}"))
    parts.append(_uniform_attacker(victim, 120, seed=4).assign(user="mallory"))
    log = pd.concat(parts, ignore_index=True)
    log["seq"] = np.random.default_rng(0).permutation(len(log))
    log = log.sort_values("seq").reset_index(drop=True)
    proba = model.predict_proba(log[profile.feature_names_])
    log["prob_no"], log["prob_yes"] = proba[:, 0], proba[:, 1]
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)

    from monitor.logs import LogColumns

    read = read_log(path, profile.schema_, 2,
                    columns=LogColumns(client="user", proba="prob_*"))
    assert read.n_skipped_nonfinite == 0  # missing incomes are kept: the model takes them
    table = analyze_log(read, Monitor(profile)).set_index("client_id")
    assert table.loc["mallory", "flagged"] and not table.drop(index="mallory")["flagged"].any()

    online = Monitor(profile)
    for client, rows in log.groupby("user"):
        rows = rows.sort_values("seq")
        verdict = online.observe(client, rows[profile.feature_names_[::-1]],
                                 rows[["prob_no", "prob_yes"]].to_numpy())
        assert verdict.peak_score == pytest.approx(table.loc[client, "peak_score"], abs=1e-9)
        assert verdict.flagged == table.loc[client, "flagged"]

    with_model = analyze_log(read_log(path, profile.schema_, 2,
                                      columns=LogColumns(client="user")),
                             Monitor(profile, model=model)).set_index("client_id")
    assert with_model["flagged"].equals(table["flagged"])


def test_a_saved_profile_keeps_its_schema(victim, tmp_path):
    profile, model = victim["profile"], victim["model"]
    profile.save(tmp_path / "p")
    loaded = Profile.load(tmp_path / "p")
    assert loaded.schema_ == profile.schema_ and loaded.space_.novelty == profile.space_.novelty
    rows = pd.concat([_benign(victim, 20, 30), _uniform_attacker(victim, 40, seed=5)])
    a = Monitor(profile, model=model).observe("c", rows)
    b = Monitor(loaded, model=model).observe("c", rows)
    np.testing.assert_array_equal(a.row_scores, b.row_scores)


def test_missing_values_are_refused_when_the_model_takes_none(tmp_path):
    rng = np.random.default_rng(0)
    frame, y = _table(400, rng)
    frame = frame.drop(columns=["color"]).fillna(frame["income"].median())
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    profile = Profile(seed=0, drift_draws=5).fit(model, frame, y)
    assert not any(profile.schema_.allow_nan) and profile.space_.plain
    with pytest.raises(InvalidInput, match="column 'income' has a missing value but the model "
                                           "does not accept missing values there"):
        Monitor(profile).observe("c", frame.iloc[:2].assign(income=np.nan))
    with pytest.raises(InvalidInput, match=r"contain NaN or infinite values \(column 'tenure'\)"):
        Monitor(profile).observe("c", np.where(np.arange(4) == 3, np.nan, 1.0))
    bad = frame.copy()
    bad.loc[0, "age"] = np.nan
    with pytest.raises(InvalidInput, match="training data: column 'age' has a missing value"):
        Profile(seed=0, drift_draws=5).fit(model, bad, y)


def test_an_old_format_profile_still_loads(victim, tmp_path):
    """Format 3 (before schemas): numeric features, a probability classifier."""
    from victims import load_victim

    v = load_victim("cancer-logreg")
    profile = Profile(seed=0, drift_draws=5).fit(v.model, v.X_train, v.y_train,
                                                 X_cal=v.X_cal, y_cal=v.y_cal)
    profile.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "profile.json").read_text())
    for key in ("schema", "task", "outputs", "novelty"):
        del meta[key]
    meta["format_version"] = 3
    (tmp_path / "p" / "profile.json").write_text(json.dumps(meta))
    loaded = Profile.load(tmp_path / "p")
    assert loaded.task_ == "classification" and loaded.schema_.kinds == ["numeric"] * 30
    X = np.vstack([v.X_public[:40], np.random.default_rng(0).uniform(v.lower, v.upper,
                                                                    (40, 30))])
    a = Monitor(profile, model=v.model).observe("c", X)
    b = Monitor(loaded, model=v.model).observe("c", X)
    np.testing.assert_array_equal(a.row_scores, b.row_scores)


def test_the_cli_profiles_and_analyzes_a_dataframe_pipeline(victim, tmp_path, capsys):
    """profile (text column, missing values, a label column) and analyze (named log columns)
    from files, as an operator runs them."""
    from monitor.cli import main
    from monitor.model_io import save_model

    rng = np.random.default_rng(11)
    frame, y = _table(900, rng)
    train = frame.iloc[:600].assign(label=y[:600])
    train[train.columns[::-1]].to_csv(tmp_path / "train.csv", index=False)  # any order
    model = make_pipeline(
        ColumnTransformer([("color", OneHotEncoder(handle_unknown="ignore"), ["color"])],
                          remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=40, random_state=0)).fit(
            frame.iloc[:600], y[:600])
    save_model(model, tmp_path / "model.joblib")
    assert main(["profile", "--model", str(tmp_path / "model.joblib"), "--train",
                 str(tmp_path / "train.csv"), "--label-column", "label", "--drift-draws", "10",
                 "--out", str(tmp_path / "p")]) == 0
    out, _ = capsys.readouterr()
    assert "5 features, 2 classes, 600 training rows" in out  # rows with missing incomes kept

    public = frame.iloc[600:].reset_index(drop=True)
    parts = [public.iloc[60 * c:60 * (c + 1)].assign(user=f"benign-{c}") for c in range(4)]
    parts.append(_uniform_attacker(victim, 100, seed=6).assign(user="mallory"))
    log = pd.concat(parts, ignore_index=True).assign(seq=lambda f: np.arange(len(f)))
    log["answer"] = model.predict(log[frame.columns])
    log.to_json(tmp_path / "log.json", orient="records")
    common = ["analyze", str(tmp_path / "log.json"), "--profile", str(tmp_path / "p"),
              "--client-column", "user", "--label-column", "answer"]
    assert main([*common, "--out", str(tmp_path / "labels.csv")]) == 0
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "boundary: no evidence" in err  # labels, no --model
    assert main([*common, "--model", str(tmp_path / "model.joblib"),
                 "--out", str(tmp_path / "model.csv")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "1 flagged (mallory)" in out and "skipped" not in out
    for name in ("labels.csv", "model.csv"):
        table = pd.read_csv(tmp_path / name).set_index("client_id")
        assert table.loc["mallory", "flagged"] and not table.drop(index="mallory")["flagged"].any()
