"""Reading and validating query logs: formats, column mapping, ordering, skipped rows, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.logs import LogError, iter_log_chunks, log_format, read_log, read_table

NAMES = ["alpha", "beta", "gamma"]


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=[f"x_{j}" for j in range(3)])
    frame.insert(0, "client_id", rng.choice(["c", "a", "b"], size=n))
    frame.insert(1, "seq", rng.permutation(n))
    p1 = rng.uniform(size=n)
    frame["p_0"], frame["p_1"] = 1 - p1, p1
    frame["pred"] = (p1 > 0.5).astype(int)
    frame["note"] = "ignored"
    return frame


def _write(frame: pd.DataFrame, path, row_group_size: int | None = None):
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False, row_group_size=row_group_size)
    return path


def _expected_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["client_id", "seq"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".ndjson", ".parquet", ".pq"])
def test_formats_read_sorted_and_complete(tmp_path, suffix):
    frame = _frame()
    log = read_log(_write(frame, tmp_path / f"log{suffix}", 7), NAMES, 2, chunk_rows=9)
    want = _expected_order(frame)
    assert log.client_ids.tolist() == want["client_id"].tolist()
    assert log.order.tolist() == want["seq"].astype(float).tolist()
    np.testing.assert_allclose(log.X, want[["x_0", "x_1", "x_2"]].to_numpy())
    np.testing.assert_allclose(log.proba, want[["p_0", "p_1"]].to_numpy())
    assert log.labels.tolist() == want["pred"].tolist()
    assert log.output_columns == ["p_0", "p_1", "pred"]
    assert log.n_skipped_nonfinite == 0 and log.X.dtype == np.float64
    assert log.clients() == ["a", "b", "c"]
    slices = dict(log.client_slices())
    assert sum(s.stop - s.start for s in slices.values()) == len(frame)
    assert (log.client_ids[slices["b"]] == "b").all()


def test_parquet_is_streamed_in_chunks(tmp_path):
    path = _write(_frame(50), tmp_path / "log.parquet", row_group_size=10)
    chunks = list(iter_log_chunks(path, NAMES, 2, chunk_rows=10))
    assert [c.n_rows for c in chunks] == [10] * 5
    whole = read_log(path, NAMES, 2)
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]).sum(axis=0).round(9),
                                  whole.X.sum(axis=0).round(9))


def test_training_feature_names_and_ties_keep_file_order(tmp_path):
    frame = _frame(12).rename(columns={"x_0": "alpha", "x_1": "beta", "x_2": "gamma"})
    frame["seq"] = 0  # all ties: the file order must be kept within each client
    frame = frame.drop(columns=["p_0", "p_1"])
    log = read_log(_write(frame, tmp_path / "log.csv"), NAMES, 2)
    assert log.feature_columns == NAMES
    assert log.proba is None and log.output_columns == ["pred"]
    for client, rows in log.client_slices():
        np.testing.assert_allclose(log.X[rows], frame.loc[frame.client_id == client, NAMES])


def test_seq_wins_over_ts_and_ts_can_be_datetimes(tmp_path):
    frame = _frame(20)
    frame["ts"] = pd.date_range("2024-01-01", periods=20, freq="min").astype(str)[::-1]
    log = read_log(_write(frame, tmp_path / "both.csv"), NAMES, 2)
    assert log.order_column == "seq"
    assert log.client_ids.tolist() == _expected_order(frame)["client_id"].tolist()
    by_ts = read_log(_write(frame.drop(columns=["seq"]), tmp_path / "ts.jsonl"), NAMES, 2)
    assert by_ts.order_column == "ts"
    want = frame.iloc[::-1].sort_values("client_id", kind="stable")
    np.testing.assert_allclose(by_ts.X, want[["x_0", "x_1", "x_2"]].to_numpy())


def test_nonfinite_and_missing_rows_are_skipped_and_counted(tmp_path):
    frame = _frame(30)
    frame["x_1"] = frame["x_1"].astype(object)
    bad = {3: ("x_0", np.nan), 4: ("x_2", np.inf), 5: ("p_1", -np.inf), 6: ("x_1", "oops"),
           7: ("seq", np.nan)}
    for row, (col, value) in bad.items():
        frame.loc[row, col] = value
    frame.loc[8, "client_id"] = None
    path = _write(frame, tmp_path / "log.csv")
    log = read_log(path, NAMES, 2)
    assert log.n_skipped_nonfinite == 6
    assert log.n_rows == 24
    assert np.isfinite(log.X).all()
    counted = frame.loc[list(bad), "client_id"].value_counts().to_dict()
    assert {k: v for k, v in log.skipped_per_client.items() if k} == counted
    assert log.skipped_per_client[""] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["client_id"]), "no 'client_id' column"),
        (lambda f: f.drop(columns=["seq"]), "add 'seq'"),
        (lambda f: f.drop(columns=["x_2"]), "profile expects 3 (x_0..x_2); add 'x_2'"),
        (lambda f: f.assign(x_3=1.0), "drop the 1 column(s) beyond x_2"),
        (lambda f: f.drop(columns=["p_1"]), "provide exactly p_0..p_1 or none"),
        (lambda f: f.assign(x_0="text"), "column 'x_0' is not numeric"),
        (lambda f: f.drop(columns=["x_0", "x_1", "x_2"]), "missing feature columns 'alpha'"),
    ],
)
def test_structural_errors_say_what_to_fix(tmp_path, change, message):
    path = _write(change(_frame()), tmp_path / "log.csv")
    with pytest.raises(LogError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")) as info:
        read_log(path, NAMES, 2)
    assert "\n" not in str(info.value)


def test_unknown_extension_missing_file_and_garbage(tmp_path):
    with pytest.raises(LogError, match="unknown file type; use one of .csv"):
        read_log(tmp_path / "log.xlsx", NAMES, 2)
    with pytest.raises(LogError, match="no such file"):
        read_log(tmp_path / "absent.csv", NAMES, 2)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(LogError, match="cannot read as parquet"):
        read_log(tmp_path / "bad.parquet", NAMES, 2)
    (tmp_path / "bad.jsonl").write_text('{"client_id": "a", "seq": 1\n')
    with pytest.raises(LogError, match="cannot read as jsonl"):
        read_log(tmp_path / "bad.jsonl", NAMES, 2)
    (tmp_path / "empty.csv").write_text("client_id,seq,x_0,x_1,x_2\n")
    with pytest.raises(LogError, match="no rows"):
        read_log(tmp_path / "empty.csv", NAMES, 2)


def test_log_format_and_read_table(tmp_path):
    assert log_format("a/b.CSV") == "csv"
    assert log_format("b.jsonl.gz") == "jsonl"
    frame = _frame(5)
    frame.to_csv(tmp_path / "t.csv.gz", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv.gz"), pd.read_csv(
        tmp_path / "t.csv.gz"))


@pytest.mark.parametrize("spec, order", [
    ("prob_*", ["prob_benign", "prob_malignant"]),            # glob, file order reversed
    (("prob_malignant", "prob_benign"), ["prob_benign", "prob_malignant"]),  # listed reversed
    (("malignant_p", "benign_p"), ["benign_p", "malignant_p"]),  # label + shared suffix
    (("q1", "q0"), ["q0", "q1"]),                               # class index
])
def test_proba_columns_are_put_in_the_profiles_class_order(tmp_path, spec, order):
    """issue 26: --proba-columns in the wrong order moved exposure 0.88 -> 0.12; given the
    profile's classes, the columns are mapped to classes by name."""
    from monitor.logs import LogColumns

    frame = _frame()
    p0, p1 = frame.pop("p_0"), frame.pop("p_1")
    names = {"prob_malignant": p1, "prob_benign": p0, "malignant_p": p1, "benign_p": p0,
             "q1": p1, "q0": p0}
    wanted = spec if isinstance(spec, tuple) else ("prob_malignant", "prob_benign")
    for name in wanted:  # malignant first in the file
        frame[name] = names[name]
    path = _write(frame, tmp_path / "log.csv")
    columns = LogColumns(proba=spec).for_classes(["benign", "malignant"])
    log = read_log(path, NAMES, 2, columns=columns)
    assert log.output_columns[:2] == order
    want = _expected_order(frame)
    assert np.allclose(log.proba[:, 1], want[order[1]]) and np.allclose(log.proba[:, 0],
                                                                        want[order[0]])


def test_proba_columns_that_name_no_class_are_refused(tmp_path):
    from monitor.logs import LogColumns

    frame = _frame().rename(columns={"p_0": "pa", "p_1": "pb"})
    path = _write(frame, tmp_path / "log.csv")
    with pytest.raises(LogError, match=r"do not name the profile's classes \(benign, "
                                       r"malignant\).*'prob_benign'"):
        read_log(path, NAMES, 2, columns=LogColumns(proba=("pa", "pb")).for_classes(
            ["benign", "malignant"]))
    # without classes to check against (a library caller), the order given is taken
    assert read_log(path, NAMES, 2, columns=LogColumns(proba=("pb", "pa"))).output_columns[:2] == \
        ["pb", "pa"]
