"""The Dask engine on a real LocalCluster (2 worker processes): verdicts equal the pandas
engine's and the in-memory path's."""

from __future__ import annotations

import pandas as pd
import pytest
from distributed import Client
from test_partition import scale_log, write

from monitor import Monitor, MonitorConfig, Profile
from monitor.analyze import analyze_log
from monitor.cli import main
from monitor.engines import analyze_partitioned
from monitor.engines.dask_engine import analyze_partitioned_dask, local_cluster
from monitor.logs import read_log
from monitor.model_io import save_model
from monitor.partition import partition_log


@pytest.fixture(scope="module")
def files(tmp_path_factory, victim):
    root = tmp_path_factory.mktemp("dask")
    profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                  X_cal=victim.X_cal, y_cal=victim.y_cal,
                                  feature_names=victim.feature_names)
    profile.save(root / "profile")
    save_model(victim.model, root / "model.skops")
    write(scale_log(victim, seed=4), root / "log.parquet")
    partition_log(root / "log.parquet", root / "parts", n_partitions=6, read_rows=200)
    return root


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(n_workers=2, threads_per_worker=1)
    with Client(cluster) as client:
        yield client
    cluster.close()


def test_dask_verdicts_equal_pandas_engine(files, client):
    assert len(client.scheduler_info()["workers"]) == 2
    profile = Profile.load(files / "profile")
    pandas_result = analyze_partitioned(files / "parts", profile)
    dask_result = analyze_partitioned_dask(files / "parts", files / "profile", client=client)
    pd.testing.assert_frame_equal(dask_result.table, pandas_result.table)
    assert dask_result.table["flagged"].sum() >= 5  # the six attackers, not an empty table
    assert dask_result.n_partitions == 6 and dask_result.n_workers == 2
    assert dask_result.n_skipped == pandas_result.n_skipped == 3
    log = read_log(files / "log.parquet", profile.feature_names_, len(profile.classes_))
    pd.testing.assert_frame_equal(dask_result.table, analyze_log(log, Monitor(profile)))


def test_dask_with_model_and_config_equal_in_memory(files, client, victim):
    profile = Profile.load(files / "profile")
    config = MonitorConfig(detectors=("density", "boundary", "chain"), windows=(30,))
    result = analyze_partitioned_dask(files / "log.parquet", files / "profile", config,
                                      model_path=files / "model.skops", client=client,
                                      n_partitions=3)
    log = read_log(files / "log.parquet", profile.feature_names_, len(profile.classes_))
    expected = analyze_log(log, Monitor(profile, config, model=victim.model))
    pd.testing.assert_frame_equal(result.table, expected)


def test_cli_dask_engine_with_scheduler_address(files, client, capsys, tmp_path):
    common = ["--profile", str(files / "profile")]
    assert main(["analyze", str(files / "parts"), *common, "--engine", "dask", "--scheduler",
                 client.scheduler.address, "--out", str(tmp_path / "dask.csv")]) == 0
    out = capsys.readouterr().out
    assert "dask engine on 2 workers: 6 partitions" in out and "peak RSS" in out
    assert main(["analyze", str(files / "log.parquet"), *common,
                 "--out", str(tmp_path / "memory.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask.csv"),
                                  pd.read_csv(tmp_path / "memory.csv"))
