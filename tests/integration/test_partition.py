"""Partitioning a log by client, and out-of-core analysis equal to the in-memory path."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from monitor import Monitor, MonitorConfig
from monitor.analyze import analyze_log
from monitor.cli import main
from monitor.engines import analyze_partitioned
from monitor.logs import LogError, read_log
from monitor.partition import (
    MANIFEST,
    client_partitions,
    partition_files,
    partition_log,
    suggest_partitions,
)

N_CLIENTS, ROWS_PER_CLIENT = 24, 40


def scale_log(victim, seed: int = 0) -> pd.DataFrame:
    """Benign clients asking public rows, every fourth client asking uniform rows in the
    feature box; rows interleaved in time, some seq ties, NaN rows and rows without a client."""
    rng = np.random.default_rng(seed)
    parts, ids = [], []
    for c in range(N_CLIENTS):
        if c % 4 == 3:
            rows = rng.uniform(victim.lower, victim.upper, (ROWS_PER_CLIENT, victim.n_features))
            ids += [f"attacker-{c}"] * ROWS_PER_CLIENT
        else:
            rows = victim.X_public[rng.choice(len(victim.X_public), ROWS_PER_CLIENT)]
            ids += [f"benign-{c}"] * ROWS_PER_CLIENT
        parts.append(rows)
    X = np.vstack(parts)
    frame = pd.DataFrame(X, columns=[f"x_{j}" for j in range(victim.n_features)])
    proba = victim.answer(X)
    frame.insert(0, "client_id", pd.Series(ids, dtype=object))
    frame.insert(1, "seq", rng.integers(0, len(frame) // 2, len(frame)))  # ties on purpose
    frame["p_0"], frame["p_1"] = proba[:, 0], proba[:, 1]
    frame["pred"] = victim.classes[proba.argmax(axis=1)]
    frame["user_agent"] = "curl"
    frame.loc[[5, 77], "x_3"] = np.nan
    frame.loc[[11], "client_id"] = None
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_partition_keeps_every_client_whole_and_in_order(tmp_path, victim, suffix):
    frame = scale_log(victim)
    path = tmp_path / f"log{suffix}"
    write(frame, path)
    if suffix == ".jsonl":  # JSON text keeps 10 significant digits: compare with what it holds
        frame = pd.read_json(path, lines=True, dtype=False)
    # tiny reads and buffers: many chunks and many flushes per partition file
    result = partition_log(path, tmp_path / "parts", n_partitions=5, read_rows=97,
                           buffer_rows=150)
    assert result.n_rows == len(frame) == sum(result.rows_per_file)
    assert result.files == partition_files(tmp_path / "parts")
    seen: dict[str, str] = {}
    for f in result.files:
        part = pd.read_parquet(f)
        for client, rows in part.groupby(part["client_id"].fillna(""), sort=False):
            assert client not in seen, f"client {client} split over {seen[client]}, {f.name}"
            seen[client] = f.name
            source = frame[frame["client_id"].fillna("") == client]
            np.testing.assert_array_equal(rows["x_0"].to_numpy(), source["x_0"].to_numpy())
            np.testing.assert_array_equal(rows["seq"].to_numpy(float),
                                          source["seq"].to_numpy(float))
    assert len(seen) == frame["client_id"].nunique() + 1  # + the rows without a client
    manifest = json.loads((tmp_path / "parts" / MANIFEST).read_text())
    assert manifest["n_partitions"] == 5 and manifest["n_rows"] == len(frame)
    assert [m["rows"] for m in manifest["files"]] == result.rows_per_file


def test_partition_of_a_client_is_a_stable_blake2b_hash():
    ids = np.array(["alice", "bob", "", None, 42], dtype=object)
    expected = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") % 7
                for t in ("alice", "bob", "", "", "42")]
    assert client_partitions(ids, 7).tolist() == expected
    spread = np.bincount(client_partitions(np.array([f"c{i}" for i in range(7000)]), 7))
    assert spread.min() > 800  # ~1000 each: the hash spreads clients evenly


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_out_of_core_verdicts_equal_in_memory(tmp_path, victim, profile, suffix):
    frame = scale_log(victim, seed=1)
    path = tmp_path / f"log{suffix}"
    write(frame, path)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    expected = analyze_log(log, Monitor(profile))
    assert expected["flagged"].sum() >= N_CLIENTS // 4 - 1  # the attackers are caught
    result = analyze_partitioned(path, profile, n_partitions=4)
    pd.testing.assert_frame_equal(result.table, expected)
    assert result.n_partitions == 4 and result.n_skipped == log.n_skipped_nonfinite == 3
    assert result.n_queries == log.n_rows and result.peak_rss_bytes > 0

    # a folder written once, analyzed with the chain detector on: still identical
    partition_log(path, tmp_path / "parts", n_partitions=3, read_rows=64)
    config = MonitorConfig(detectors=("density", "boundary", "chain"))
    result = analyze_partitioned(tmp_path / "parts", profile, config)
    pd.testing.assert_frame_equal(result.table, analyze_log(log, Monitor(profile, config)))


def test_out_of_core_with_model_and_labels_only(tmp_path, victim, profile):
    frame = scale_log(victim, seed=2).drop(columns=["p_0", "p_1"])
    path = tmp_path / "log.csv"
    write(frame, path)
    log = read_log(path, profile.feature_names_, len(profile.classes_))
    expected = analyze_log(log, Monitor(profile, model=victim.model))
    result = analyze_partitioned(path, profile, model=victim.model, n_partitions=2)
    pd.testing.assert_frame_equal(result.table, expected)


def test_partition_errors_say_what_to_fix(tmp_path, victim):
    frame = scale_log(victim)
    write(frame, tmp_path / "log.csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(LogError, match="not empty"):
        partition_log(tmp_path / "log.csv", tmp_path / "full")
    write(frame.drop(columns=["client_id"]), tmp_path / "anon.parquet")
    with pytest.raises(LogError, match="no 'client_id' column"):
        partition_log(tmp_path / "anon.parquet", tmp_path / "p1")
    write(frame.drop(columns=["client_id"]), tmp_path / "anon.csv")
    with pytest.raises(LogError, match="no 'client_id' column"):
        partition_log(tmp_path / "anon.csv", tmp_path / "p2")
    with pytest.raises(LogError, match="unknown file type"):
        partition_log(tmp_path / "log.xlsx", tmp_path / "p3")
    with pytest.raises(LogError, match="no part-"):
        partition_files(tmp_path / "full")
    assert suggest_partitions(tmp_path / "log.csv") == 1


def test_cli_partition_then_analyze_folder_equals_file(tmp_path, victim, profile, capsys):
    frame = scale_log(victim, seed=3)
    write(frame, tmp_path / "log.csv")
    profile.save(tmp_path / "profile")
    assert main(["partition", str(tmp_path / "log.csv"), "--out", str(tmp_path / "parts"),
                 "--partitions", "3"]) == 0
    assert "into 3 files (3 partitions)" in capsys.readouterr().out
    common = ["--profile", str(tmp_path / "profile")]
    assert main(["analyze", str(tmp_path / "log.csv"), *common,
                 "--out", str(tmp_path / "memory.csv")]) == 0
    assert main(["analyze", str(tmp_path / "parts"), *common,
                 "--out", str(tmp_path / "folder.csv")]) == 0
    out = capsys.readouterr().out
    assert "pandas engine: 3 partitions" in out and "peak RSS" in out
    assert main(["analyze", str(tmp_path / "log.csv"), *common, "--out-of-core",
                 "--partitions", "2", "--out", str(tmp_path / "ooc.csv")]) == 0
    memory = pd.read_csv(tmp_path / "memory.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "folder.csv"), memory)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ooc.csv"), memory)

    capsys.readouterr()
    assert main(["partition", str(tmp_path / "log.csv"), "--out", str(tmp_path / "parts")]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    assert main(["analyze", str(tmp_path / "parts"), *common, "--workers", "0",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "--dask-workers must be at least 1" in capsys.readouterr().err


def test_arrow_client_column_hashes_like_the_python_ids():
    import pyarrow as pa

    ids = ["alice", "bob", "", None, "ünï", "alice", None]
    expected = client_partitions(np.array(ids, dtype=object), 7).tolist()
    assert client_partitions(pa.array(ids), 7).tolist() == expected
    assert client_partitions(pa.array(ids, pa.large_string()), 7).tolist() == expected
    chunked = pa.chunked_array([ids[:3], ids[3:]])
    assert client_partitions(chunked, 7).tolist() == expected
    assert client_partitions(pa.array([42, None]), 7).tolist() == \
        client_partitions(pa.array([42, None]).to_numpy(zero_copy_only=False), 7).tolist()
    assert client_partitions(pa.array([], pa.string()), 7).tolist() == []


def test_uncompressed_partitions_hold_the_same_rows(tmp_path, victim):
    frame = scale_log(victim, seed=4)
    write(frame, tmp_path / "log.parquet")
    snappy = partition_log(tmp_path / "log.parquet", tmp_path / "a", n_partitions=3)
    plain = partition_log(tmp_path / "log.parquet", tmp_path / "b", n_partitions=3,
                          compression="none")
    assert [f.name for f in snappy.files] == [f.name for f in plain.files]
    for a, b in zip(snappy.files, plain.files, strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(plain.files[0]).metadata.row_group(0)
    assert {meta.column(j).compression for j in range(meta.num_columns)} == {"UNCOMPRESSED"}


def test_a_log_of_one_partition_is_analyzed_without_copying_it(tmp_path, victim, profile,
                                                               monkeypatch):
    frame = scale_log(victim, seed=5)
    write(frame, tmp_path / "log.parquet")
    expected = analyze_log(read_log(tmp_path / "log.parquet", profile.feature_names_,
                                    len(profile.classes_)), Monitor(profile))
    import monitor.engines.partitioned as engine

    def no_partitioning(*args, **kwargs):
        raise AssertionError("partitioned a one-partition log")

    monkeypatch.setattr(engine, "partition_log", no_partitioning)
    result = analyze_partitioned(tmp_path / "log.parquet", profile)
    pd.testing.assert_frame_equal(result.table, expected)
    assert result.n_partitions == 1 and result.n_skipped == 3
    result = analyze_partitioned(tmp_path / "log.parquet", profile, n_partitions=1)
    pd.testing.assert_frame_equal(result.table, expected)
    monkeypatch.undo()
    result = analyze_partitioned(tmp_path / "log.parquet", profile, n_partitions=2)
    pd.testing.assert_frame_equal(result.table, expected)
    assert result.n_partitions == 2
