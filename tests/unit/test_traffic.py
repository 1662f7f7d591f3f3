"""Query-log export and the adaptive attacker transformations."""

import numpy as np
import pandas as pd
import pytest

from attacks.adaptive import (
    mix_with_cover,
    mix_with_public,
    slow_down,
    split_one_per_id,
    split_sybils,
)
from attacks.benign import benign_streams
from attacks.registry import run_attack
from attacks.streams import with_times
from attacks.traffic import read_log, to_log, write_log
from victims import load_victim


@pytest.fixture(scope="module")
def streams_and_victim():
    v = load_victim("wine-tree", "proba")
    attack = with_times(run_attack("uniform", v, budget=60, seed=0).stream,
                        np.random.default_rng(0))
    return benign_streams(v, seed=0, n=40) + [attack], v


def test_to_log_columns_and_ground_truth(streams_and_victim):
    streams, v = streams_and_victim
    df = to_log(streams, v)
    d, k = v.n_features, len(v.classes)
    expected = (["client_id", "seq", "ts"] + [f"x_{j}" for j in range(d)]
                + [f"p_{j}" for j in range(k)] + ["pred", "truth_kind", "truth_is_attack"])
    assert list(df.columns) == expected
    assert len(df) == sum(s.n_queries for s in streams)
    for s in streams:
        rows = df[df.client_id == s.client_id].sort_values("seq")
        assert list(rows.seq) == list(range(s.n_queries))
        np.testing.assert_array_equal(rows[[f"x_{j}" for j in range(d)]].to_numpy(), s.X)
        assert set(rows.truth_is_attack) == {s.is_attack}
    np.testing.assert_array_equal(df.pred, v.model.predict(df[[f"x_{j}" for j in range(d)]].to_numpy()))


def test_label_only_log_has_pred_only():
    v = load_victim("cancer-logreg", "label")
    df = to_log(benign_streams(v, n=10)[:1], v)
    assert "pred" in df and not any(c.startswith("p_") for c in df.columns)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_log_round_trips(streams_and_victim, tmp_path, suffix):
    streams, v = streams_and_victim
    df = to_log(streams, v)
    back = read_log(write_log(df, tmp_path / f"log{suffix}"))
    pd.testing.assert_frame_equal(back, df, check_dtype=False, rtol=1e-12)


def test_write_log_rejects_unknown_extension(streams_and_victim, tmp_path):
    streams, v = streams_and_victim
    with pytest.raises(ValueError, match="unknown log type"):
        write_log(to_log(streams, v), tmp_path / "log.xlsx")


def test_adaptive_attackers(streams_and_victim):
    streams, v = streams_and_victim
    attack = streams[-1]
    rng = np.random.default_rng(0)
    mixed = mix_with_public(attack, v, ratio=1.0, rng=rng)
    assert mixed.n_queries == 2 * attack.n_queries and mixed.is_attack
    np.testing.assert_array_equal(mixed.X[~mixed.meta["is_cover"]], attack.X)
    sybils = split_sybils(attack, 3, rng)
    assert len({s.client_id for s in sybils}) == 3
    assert sum(s.n_queries for s in sybils) == attack.n_queries
    slow = slow_down(attack, rng, mean_gap=600.0)
    assert slow.ts[-1] > 100 * attack.timestamps()[-1]


@pytest.mark.parametrize("fraction", [0.1, 0.2])
def test_attack_mixed_into_cover_traffic(streams_and_victim, fraction):
    streams, v = streams_and_victim
    attack = streams[-1]
    mixed = mix_with_cover(attack, v, fraction, np.random.default_rng(1))
    is_cover = mixed.meta["is_cover"]
    assert mixed.is_attack and mixed.meta["attack_fraction"] == fraction
    assert (~is_cover).mean() == pytest.approx(fraction, abs=0.01)
    np.testing.assert_array_equal(mixed.X[~is_cover], attack.X)
    public = {r.tobytes() for r in v.X_public}
    assert all(r.tobytes() in public for r in mixed.X[is_cover])
    with pytest.raises(ValueError, match="attack_fraction"):
        mix_with_cover(attack, v, 0.0, np.random.default_rng(1))


def test_split_one_query_per_id(streams_and_victim):
    streams, v = streams_and_victim
    attack = streams[-1]
    parts = split_one_per_id(attack, np.random.default_rng(2), group="acct-7")
    assert len(parts) == attack.n_queries and all(p.n_queries == 1 for p in parts)
    assert len({p.client_id for p in parts}) == attack.n_queries
    assert not any(attack.client_id in p.client_id for p in parts)
    assert {p.meta["group"] for p in parts} == {"acct-7"} and all(p.is_attack for p in parts)
    np.testing.assert_array_equal(np.vstack([p.X for p in parts]), attack.X)
    np.testing.assert_array_equal(np.concatenate([p.ts for p in parts]), attack.timestamps())
    again = split_one_per_id(attack, np.random.default_rng(2), group="acct-7")
    assert [p.client_id for p in again] == [p.client_id for p in parts]
    df = to_log(parts[:5] + streams[:1], v)  # each id is its own client in a query log
    assert df.client_id.nunique() == 6
