"""Default state stores are per deployment (issue 26: a new proxy listed the clients of
another deployment, because every serve/proxy without --state shared one SQLite file).

Two real `extraction-monitor proxy` processes, each with its own profile folder and no
--state or [store] uri, in front of one upstream over real HTTP: each lists only its own
clients, a restarted proxy finds its clients again, and `admin lookup --profile` reads the
right deployment's store."""

from __future__ import annotations

import json

import pytest
from serving_helpers import running, serve_process
from upstreams import lenient_upstream

from monitor import Profile
from monitor.cli import main
from monitor.environment import deployment_state_uri, profile_deployment
from monitor.serving import ClientIdentifier
from victims import load_victim

SALT = "deployments-test-salt"
TOKEN = "deployments-test-token"


@pytest.fixture(scope="module")
def victim():
    return load_victim("cancer-logreg")


@pytest.fixture(scope="module")
def profiles(victim, tmp_path_factory):
    root = tmp_path_factory.mktemp("deployments")
    profile = Profile().fit(victim.model, victim.X_train, victim.y_train)
    return profile.save(root / "a"), profile.save(root / "b")


def _clients(admin) -> set[str]:
    return {c["client_id"] for c in admin.get("/monitor/clients").json()["clients"]}


def _query(admin, victim, key: str, n: int = 3) -> None:
    for row in victim.X_public[:n]:
        r = admin.post("/predict", json={"instances": [row.tolist()]},
                       headers={"X-API-Key": key})
        assert r.status_code == 200, r.text


def test_two_proxies_with_default_stores_do_not_share_clients(victim, profiles, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    a, b = profiles
    ident = ClientIdentifier(SALT)
    with running(lenient_upstream(victim)) as upstream:
        def proxy(profile):
            return serve_process(["proxy", "--upstream", upstream, "--profile", str(profile)],
                                 TOKEN, SALT)

        with proxy(a) as first, proxy(b) as second:
            _query(first, victim, "alice")
            _query(second, victim, "bob")
            assert _clients(first) == {ident.hash_key("alice")}
            assert _clients(second) == {ident.hash_key("bob")}
        with proxy(a) as again:  # the same deployment finds its own store again
            assert _clients(again) == {ident.hash_key("alice")}
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}
    uri_a = deployment_state_uri(profile_deployment(a), data)
    assert uri_a.startswith("sqlite://") and "/deployments/" in uri_a
    assert len(list((tmp_path / "data" / "extraction-monitor" / "deployments").glob("*.db"))) == 2
    monkeypatch.setenv("EXTRACTION_MONITOR_SALT", SALT)  # as the proxies had it
    for profile, key, known in ((a, "alice", True), (b, "alice", False), (b, "bob", True)):
        assert main(["admin", "lookup", key, "--profile", str(profile)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["client_id"] == ident.hash_key(key) and out["known"] is known, (profile, key)


def test_an_explicit_store_always_wins(victim, profiles, tmp_path, monkeypatch):
    """[store] uri names one store for both deployments: then they share it, as told."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = f'[store]\nuri = "sqlite://{tmp_path}/shared.db"\n'
    with running(lenient_upstream(victim)) as upstream:
        with serve_process(["proxy", "--upstream", upstream, "--profile", str(profiles[0])],
                           TOKEN, SALT, config=config, workdir=tmp_path) as first:
            _query(first, victim, "carol", n=1)
        with serve_process(["proxy", "--upstream", upstream, "--profile", str(profiles[1])],
                           TOKEN, SALT, config=config, workdir=tmp_path) as second:
            assert _clients(second) == {ClientIdentifier(SALT).hash_key("carol")}
    assert not (tmp_path / "data" / "extraction-monitor" / "deployments").exists()


def test_admin_lookup_without_a_deployment_says_what_to_give(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["admin", "lookup", "k"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--profile DIR" in err and "--state" in err
    assert main(["admin", "lookup", "k", "--profile", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
