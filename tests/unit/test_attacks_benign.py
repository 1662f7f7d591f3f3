"""The hard benign behaviours: tail jitter, what-if analysis, prototype user, full sweep.

Each must come from public records only (plus its stated jitter or grid values), be
seeded, and keep its documented lengths.
"""

import numpy as np
import pytest

from attacks.benign import (
    BENIGN_BEHAVIOURS,
    HARD_BENIGN_KINDS,
    benign_streams,
    full_sweep,
    isolation,
    prototype_user,
    tail_jitter,
    what_if,
)
from victims import load_victim

NEW_KINDS = ("benign-tail-jitter", "benign-what-if", "benign-prototype", "benign-full-sweep")
VICTIM_NAMES = ("wine-tree", "digits-mlp", "iris-knn", "diabetes-ridge")


def _std(v):
    return v.X_public.std(axis=0)


def _private_only(v):
    public = {r.tobytes() for r in v.X_public}
    return {r.tobytes() for r in np.vstack([v.X_train, v.X_cal])} - public


@pytest.mark.parametrize("kind", NEW_KINDS)
@pytest.mark.parametrize("name", VICTIM_NAMES)
def test_new_kinds_are_registered_seeded_and_never_send_private_rows(kind, name):
    v = load_victim(name)
    make = BENIGN_BEHAVIOURS[kind]
    a = make(v, 300, np.random.default_rng(5), client_id="c")
    b = make(v, 300, np.random.default_rng(5), client_id="c")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.ts, b.ts)
    assert a.kind == kind and not a.is_attack and a.X.shape[1] == v.n_features
    assert np.all(np.diff(a.ts) >= 0)
    assert not {r.tobytes() for r in a.X} & _private_only(v)
    assert not np.array_equal(a.X, make(v, 300, np.random.default_rng(6)).X)


@pytest.mark.parametrize("name", VICTIM_NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_tail_jitter_bases_are_in_the_tail_and_jitter_is_small(name, seed):
    v = load_victim(name)
    s = tail_jitter(v, 300, np.random.default_rng(seed))
    bases = np.array(s.meta["bases"])
    assert 1 <= len(bases) <= 5 and 100 <= s.n_queries <= 300
    stat = isolation(v.X_public)
    rank = np.argsort(np.argsort(-stat, kind="stable"), kind="stable")  # 0 = most isolated
    in_tail = stat[bases] >= np.quantile(stat, 0.99)
    assert np.all(in_tail | (rank[bases] < len(bases))), (stat[bases], np.quantile(stat, 0.99))
    assert set(np.unique(s.meta["base"])) <= set(bases.tolist())
    assert 0.005 <= s.meta["scale"] <= 0.03
    sd = _std(v)
    dev = np.abs(s.X - v.X_public[s.meta["base"]])
    assert np.all(dev <= 6 * s.meta["scale"] * sd + 1e-12)
    varying = sd > 0
    z = (s.X - v.X_public[s.meta["base"]])[:, varying] / sd[varying]
    assert 0.5 * s.meta["scale"] < z.std() < 1.5 * s.meta["scale"]


def test_tail_jitter_length_range_and_cap():
    v = load_victim("cancer-logreg")
    lengths = [tail_jitter(v, 1500, np.random.default_rng(s)).n_queries for s in range(30)]
    assert min(lengths) >= 100 and max(lengths) <= 1500 and max(lengths) > 1000
    assert all(tail_jitter(v, 20, np.random.default_rng(s)).n_queries == 100 for s in range(3))
    assert tail_jitter(v, 3000, np.random.default_rng(0)).n_queries <= 1500


def test_isolation_is_the_mean_distance_to_five_nearest_others():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1]
    Z = X / X.std(axis=0)
    D = np.linalg.norm(Z[:, None] - Z[None], axis=2)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(isolation(X), np.sort(D, axis=1)[:, :5].mean(axis=1))


@pytest.mark.parametrize("name", VICTIM_NAMES)
@pytest.mark.parametrize("seed", range(3))
def test_what_if_changes_one_feature_of_a_record_over_its_public_range(name, seed):
    v = load_victim(name)
    s = what_if(v, 300, np.random.default_rng(seed))
    base, feature = s.meta["base"], s.meta["feature"]
    assert 1 <= len(s.meta["records"]) <= 3 and set(base) <= set(s.meta["records"])
    diff = s.X != v.X_public[base]
    assert np.all(diff.sum(axis=1) <= 1)
    assert np.all(diff[np.arange(s.n_queries), feature] == diff.any(axis=1))
    lo, hi = v.X_public.min(axis=0), v.X_public.max(axis=0)
    vals = s.X[np.arange(s.n_queries), feature]
    assert np.all((vals >= lo[feature] - 1e-12) & (vals <= hi[feature] + 1e-12))
    one_pass = s.n_queries // s.meta["passes"]
    assert 1 <= s.meta["passes"] <= 3 and s.n_queries <= max(300, one_pass)
    np.testing.assert_array_equal(s.X[:one_pass], s.X[one_pass * (s.meta["passes"] - 1):])
    # per (record, feature) block: 10-30 values from the feature's min to its max
    blocks = np.flatnonzero(np.r_[True, (np.diff(base[:one_pass]) != 0)
                                  | (np.diff(feature[:one_pass]) != 0), True])
    for r in s.meta["records"]:
        assert 1 <= len(set(feature[:one_pass][base[:one_pass] == r])) <= 2
    for a, b in zip(blocks[:-1], blocks[1:], strict=True):
        f = feature[a]
        assert 10 <= b - a <= 30
        assert vals[a] == lo[f] and vals[b - 1] == pytest.approx(hi[f])


@pytest.mark.parametrize("name", VICTIM_NAMES)
def test_prototype_user_repeats_the_twenty_nearest_records(name):
    v = load_victim(name)
    s = prototype_user(v, 300, np.random.default_rng(2))
    assert s.n_queries == 300
    Z = v.X_public / np.where(_std(v) > 0, _std(v), 1.0)
    d = ((Z - Z[s.meta["prototype"]]) ** 2).sum(axis=1)
    neighbours = np.array(s.meta["neighbours"])
    assert len(neighbours) == 20 and s.meta["prototype"] in neighbours
    assert d[neighbours].max() <= np.sort(d)[19]
    owner = s.meta["base"]
    for p in range(300 // 20):  # every pass sends each of the 20 once, in a random order
        assert sorted(owner[20 * p:20 * (p + 1)]) == sorted(neighbours)
    assert not np.array_equal(owner[:20], owner[20:40])
    assert 0.005 <= s.meta["scale"] <= 0.02
    assert np.all(np.abs(s.X - v.X_public[owner]) <= 6 * s.meta["scale"] * _std(v) + 1e-12)


@pytest.mark.parametrize("name", VICTIM_NAMES)
def test_full_sweep_sweeps_every_varying_feature_of_one_record(name):
    v = load_victim(name)
    s = full_sweep(v, 300, np.random.default_rng(3))
    record, g = v.X_public[s.meta["record"]], s.meta["n_grid"]
    lo, hi = v.X_public.min(axis=0), v.X_public.max(axis=0)
    varying = np.flatnonzero(hi > lo)
    assert 10 <= g <= 20 and s.n_queries == len(varying) * g
    assert s.n_queries <= max(300, 10 * len(varying))
    diff = s.X != record
    assert np.all(diff.sum(axis=1) <= 1)
    feature = s.meta["feature"]
    assert sorted(set(feature)) == varying.tolist()
    vals = s.X[np.arange(s.n_queries), feature]
    np.testing.assert_allclose(vals.reshape(len(varying), g),
                               np.linspace(lo[varying], hi[varying], g, axis=1))


def test_benign_streams_include_the_new_kinds_when_hard_and_keep_the_old_streams():
    v = load_victim("wine-tree")
    assert set(HARD_BENIGN_KINDS) == set(NEW_KINDS) <= set(BENIGN_BEHAVIOURS)
    default = benign_streams(v, seed=1, n=120)
    assert not {s.kind for s in default} & set(NEW_KINDS)
    streams = benign_streams(v, seed=1, n=120, hard=True)
    kinds = [s.kind for s in streams]
    assert kinds[-len(NEW_KINDS):] == list(NEW_KINDS)  # appended: older streams unchanged
    for a, b in zip(default, streams, strict=False):
        assert a.client_id == b.client_id
        np.testing.assert_array_equal(a.X, b.X)
    tail = streams[kinds.index("benign-tail-jitter")]
    assert 100 <= tail.n_queries <= 600  # 5 n, capped at 1500
    rng = np.random.default_rng(1)
    first = BENIGN_BEHAVIOURS["benign-random"](v, 120, rng, client_id="x")
    np.testing.assert_array_equal(first.X, streams[0].X)


def test_benign_streams_on_a_regression_victim():
    v = load_victim("diabetes-ridge")
    streams = {s.kind: s for s in benign_streams(v, seed=0, n=100, hard=True)}
    one = streams["benign-one-class"]
    quartile = np.digitize(v.y_public, np.quantile(v.y_public, [0.25, 0.5, 0.75]))
    rows = {r.tobytes(): q for r, q in zip(v.X_public, quartile, strict=True)}
    assert len({rows[r.tobytes()] for r in one.X}) == 1  # one target quartile
    assert len({r.tobytes() for r in one.X}) > 20  # not one record repeated
