"""Grouping strategies (monitor/grouping.py), the group a client keeps, and the request's group
as serving resolves it."""

from __future__ import annotations

import numpy as np
import pytest

from monitor import Monitor
from monitor.errors import InvalidInput
from monitor.grouping import (
    MAX_GROUP_CHARS,
    CohortGrouping,
    GroupingError,
    HeaderGrouping,
    PeerGrouping,
    parse_grouping,
)
from monitor.serving.identity import ClientIdentifier, GroupResolver, IdentityError
from monitor.settings import ServingConfig, SettingsError
from monitor.state import ClientState
from monitor.state_record import merge_records


@pytest.mark.parametrize(("spec", "want"), [
    ("header:X-Tenant", HeaderGrouping("X-Tenant")),
    ("peer", PeerGrouping()),
    ("peer:/16", PeerGrouping(16, 48)),
    ("peer:/16/56", PeerGrouping(16, 56)),
    ("peer:client_ip/20", PeerGrouping(20, 48, "client_ip")),
    ("cohort:300", CohortGrouping(300.0)),
])
def test_specs_parse(spec, want):
    assert parse_grouping(spec) == want


@pytest.mark.parametrize(("spec", "says"), [
    ("header", "write header:NAME"), ("peer:/33", "/0-/32"), ("peer:/24/x", "peer:/24/48"),
    ("cohort:-5", "positive"), ("cohort", "cohort:SECONDS"), ("ip", "unknown grouping"),
])
def test_bad_specs_say_what_to_write(spec, says):
    with pytest.raises(GroupingError, match=says) as info:
        parse_grouping(spec)
    assert "\n" not in str(info.value)


def test_serving_refuses_offline_only_specs():
    for spec, says in [("peer:addr", "offline"), ("header:tenant id", "HTTP header name")]:
        with pytest.raises(SettingsError, match=says):
            ServingConfig(group_by=spec)


def test_ipv4_mapped_ipv6_peers_group_with_ipv4():
    peer = PeerGrouping()
    assert peer.group("::ffff:192.0.2.9") == peer.group("192.0.2.200") == "192.0.2.0/24"
    assert peer.group("2001:db8:1:2::5") == "2001:db8:1::/48"


def test_a_peer_group_trusts_forwarded_for_only_from_trusted_proxies():
    scope = {"headers": [(b"x-forwarded-for", b"203.0.113.9")], "client": ("10.0.0.1", 1)}
    untrusted = GroupResolver(parse_grouping("peer"), ClientIdentifier("s"))
    trusted = GroupResolver(parse_grouping("peer"),
                            ClientIdentifier("s", trusted_proxies=["10.0.0.0/8"]))
    ident = ClientIdentifier("s")
    assert untrusted(scope) == ident._hash("net", "10.0.0.0/24")
    assert trusted(scope) == ident._hash("net", "203.0.113.0/24")


def test_a_tenant_header_sent_twice_is_ambiguous():
    resolve = GroupResolver(parse_grouping("header:x-tenant"), ClientIdentifier("s"))
    with pytest.raises(IdentityError, match="2 times"):
        resolve({"headers": [(b"x-tenant", b"a"), (b"X-Tenant", b"b")]})
    assert resolve({"headers": [(b"X-Tenant", b"acme")]}).startswith("tenant-")


def test_a_client_keeps_its_first_group_through_its_record(profile, victim):
    monitor = Monitor(profile, model=victim.model)
    monitor.observe("c", victim.X_public[:4], group="cohort-1")
    verdict = monitor.observe("c", victim.X_public[4:8], group="cohort-2")
    assert verdict.group["group_id"] == "cohort-1" and verdict.group["n_queries"] == 8
    state = ClientState.from_record(monitor.state("c").to_record().blob)
    assert state.group == "cohort-1"
    assert monitor.groups() == ["cohort-1"]
    with pytest.raises(InvalidInput, match="at most"):
        monitor.observe("d", victim.X_public[:1], group="g" * (MAX_GROUP_CHARS + 1))
    assert "d" not in monitor.clients()


def test_an_outage_merge_keeps_the_group():
    base = ClientState(n_queries=2).to_record().blob
    theirs = ClientState(n_queries=3).to_record().blob
    mine = ClientState(n_queries=4, group="acme").to_record().blob
    merged = ClientState.from_record(merge_records(theirs, base, mine).blob)
    assert merged.group == "acme" and merged.n_queries == 5


def test_a_group_gets_only_its_members_per_query_evidence(profile, victim):
    """Uniform queries split over two members: each member's order-dependent detectors see
    its own stream; the group's get no evidence, its per-query ones the members' p-values."""
    Q = np.random.default_rng(0).uniform(victim.lower, victim.upper, (80, victim.n_features))
    monitor = Monitor(profile, model=victim.model)
    for i in range(0, 80, 2):
        monitor.observe("a", Q[i:i + 1], group="g")
        monitor.observe("b", Q[i + 1:i + 2], group="g")
    group, member = monitor.group_verdict("g"), monitor.verdict("a")
    order_dependent = [d.name for d in monitor._per_unit]
    assert max(member.detectors[name]["score"] for name in order_dependent) > 0
    assert all(group.detectors[name]["score"] == 0 for name in order_dependent)
    assert group.flagged and group.detectors["density"]["score"] > 0
