"""Groups offline: ``analyze --group-column`` gives the group verdicts the online monitor
(``Monitor(group_of=...)``) gives when it sees the same queries in the log's order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor import Monitor
from monitor.cli import main
from monitor.grouping import parse_grouping


def _split_attack_log(victim, seed=0) -> pd.DataFrame:
    """Tenant 'acme': 60 sybils sending one uniform query each, interleaved in time with the
    benign tenant 'beta' (8 users, 40 public records each)."""
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(victim.lower, victim.upper, (60, victim.n_features))
    rows = [("acme", f"acme/sybil-{i}", x) for i, x in enumerate(uniform)]
    for k in range(8):
        picks = victim.X_public[rng.integers(0, len(victim.X_public), 40)]
        rows += [("beta", f"beta/user-{k}", x) for x in picks]
    ts = rng.permutation(len(rows)).astype(float)
    frame = pd.DataFrame([x for _, _, x in rows],
                         columns=[f"x_{j}" for j in range(victim.n_features)])
    frame.insert(0, "tenant", [g for g, _, _ in rows])
    frame.insert(0, "client_id", [c for _, c, _ in rows])
    frame.insert(1, "ts", ts)
    proba = victim.predict_proba(frame[[f"x_{j}" for j in range(victim.n_features)]].to_numpy())
    for j in range(proba.shape[1]):
        frame[f"p_{j}"] = proba[:, j]
    return frame.sort_values("ts").reset_index(drop=True)


def test_group_column_equals_the_online_group_verdicts(fitted_victim, tmp_path):
    victim, profile = fitted_victim("cancer-logreg")
    frame = _split_attack_log(victim)
    frame.to_csv(tmp_path / "log.csv", index=False)
    profile.save(tmp_path / "profile")
    assert main(["analyze", str(tmp_path / "log.csv"), "--profile", str(tmp_path / "profile"),
                 "--group-column", "tenant", "--out", str(tmp_path / "clients.csv"),
                 "--group-out", str(tmp_path / "groups.csv")]) == 0
    groups = pd.read_csv(tmp_path / "groups.csv").set_index("group_id")
    clients = pd.read_csv(tmp_path / "clients.csv")

    tenant = dict(zip(frame["client_id"], frame["tenant"], strict=True))
    online = Monitor(profile, group_of=tenant.get)  # one request per row, in time order
    X = frame[[f"x_{j}" for j in range(victim.n_features)]].to_numpy()
    P = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
    for i, cid in enumerate(frame["client_id"]):
        online.observe(cid, X[i:i + 1], P[i:i + 1])
    for group in ("acme", "beta"):
        want = online.group_verdict(group)
        got = groups.loc[group]
        assert bool(got["flagged"]) == want.flagged
        assert (None if pd.isna(got["flag_at"]) else int(got["flag_at"])) == want.flag_at
        assert np.isclose(got["peak_score"], want.peak_score)
    assert bool(groups.loc["acme", "flagged"]) and not bool(groups.loc["beta", "flagged"])
    assert groups.loc["acme", "flag_at"] < 31  # the split attack, 1 query per id
    assert not clients["flagged"].any()  # no single sybil can be flagged
    acme = clients[clients["client_id"].str.startswith("acme/")]
    assert acme["group_flagged"].all() and (acme["group_id"] == "acme").all()


def test_group_column_errors_are_one_line(fitted_victim, tmp_path, capsys):
    victim, profile = fitted_victim("cancer-logreg")
    frame = _split_attack_log(victim)
    frame.loc[0, "tenant"] = "other"
    frame.loc[len(frame)] = frame.loc[0]
    frame.loc[len(frame) - 1, "tenant"] = "acme-2"
    frame.to_csv(tmp_path / "log.csv", index=False)
    profile.save(tmp_path / "profile")
    common = ["analyze", str(tmp_path / "log.csv"), "--profile", str(tmp_path / "profile"),
              "--out", str(tmp_path / "o.csv")]
    assert main([*common, "--group-column", "tenant"]) == 2
    assert "appears in more than one group" in capsys.readouterr().err
    assert main([*common, "--group-column", "account"]) == 2
    assert "no group column 'account'" in capsys.readouterr().err


def _online_groups(profile, frame, X, P, group_of_row):
    """The online monitor fed one request per row in time order, each naming its group as
    ``[serving] group_by`` does (a client keeps its first)."""
    online = Monitor(profile)
    for i, cid in enumerate(frame["client_id"]):
        online.observe(cid, X[i:i + 1], P[i:i + 1], group=group_of_row(i))
    return online


@pytest.mark.parametrize("spec", ["peer:addr", "peer:addr/16", "cohort:40"])
def test_group_by_equals_the_online_group_verdicts(fitted_victim, tmp_path, spec):
    victim, profile = fitted_victim("cancer-logreg")
    frame = _split_attack_log(victim)
    rng = np.random.default_rng(3)  # acme's sybils in 203.0.113.0/24, beta's users elsewhere
    frame["addr"] = [f"203.0.113.{rng.integers(1, 250)}" if t == "acme"
                     else f"198.51.{rng.integers(0, 4)}.{rng.integers(1, 250)}"
                     for t in frame["tenant"]]
    frame.to_csv(tmp_path / "log.csv", index=False)
    profile.save(tmp_path / "profile")
    assert main(["analyze", str(tmp_path / "log.csv"), "--profile", str(tmp_path / "profile"),
                 "--group-by", spec, "--time-column", "ts",
                 "--out", str(tmp_path / "clients.csv"),
                 "--group-out", str(tmp_path / "groups.csv")]) == 0
    groups = pd.read_csv(tmp_path / "groups.csv").set_index("group_id")
    grouping = parse_grouping(spec)
    values = frame["addr"] if grouping.kind == "peer" else frame["ts"]
    X = frame[[f"x_{j}" for j in range(victim.n_features)]].to_numpy()
    P = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
    online = _online_groups(profile, frame, X, P, lambda i: grouping.group(values.iloc[i]))
    assert sorted(online.groups()) == sorted(groups.index.astype(str))
    for group in online.groups():
        want, got = online.group_verdict(group), groups.loc[group]
        assert bool(got["flagged"]) == want.flagged
        assert (None if pd.isna(got["flag_at"]) else int(got["flag_at"])) == want.flag_at
        assert np.isclose(got["peak_score"], want.peak_score)
    if grouping.kind == "peer":  # the sybils' network is flagged, the tenant's are not
        flagged = set(groups.index[groups["flagged"].astype(bool)])
        assert flagged == {"203.0.113.0/24" if spec.endswith("addr") else "203.0.0.0/16"}


def test_group_by_errors_are_one_line(fitted_victim, tmp_path, capsys):
    victim, profile = fitted_victim("cancer-logreg")
    _split_attack_log(victim).to_csv(tmp_path / "log.csv", index=False)
    profile.save(tmp_path / "profile")
    common = ["analyze", str(tmp_path / "log.csv"), "--profile", str(tmp_path / "profile"),
              "--out", str(tmp_path / "o.csv")]
    assert main([*common, "--group-by", "subnet"]) == 2
    assert "write header:NAME, peer" in capsys.readouterr().err
    assert main([*common, "--group-by", "peer"]) == 2
    assert "peer:COLUMN" in capsys.readouterr().err
    assert main([*common, "--group-by", "cohort:0"]) == 2
    assert "positive bucket length" in capsys.readouterr().err
