"""Member names -> pods, and the membership-loss assessment (pure tables)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.core.events import ClusterView
from sidecar.core.membership import (
    PEER_MEMORY_MARGIN_SECONDS,
    KubeFacts,
    MembershipAssessment,
    PeerPod,
    assess_membership,
    member_to_pod,
)

CORPUS = Path("/work/shared/corpus/keycloak-log-lines.jsonl")
LONG_POD = "keycloak-" + "x" * 54 + "-abcde"  # 69 characters: the host name is cut to 63


@pytest.mark.parametrize(
    ("member", "pods", "expected"),
    [
        ("keycloak-0", {"keycloak-0", "keycloak-1"}, "keycloak-0"),
        ("keycloak-0-12345", {"keycloak-0", "keycloak-1"}, "keycloak-0"),
        ("keycloak-1-24903", {"keycloak-0", "keycloak-1"}, "keycloak-1"),
        (
            "keycloak-controller-559a8/keycloak",
            {"keycloak-controller-559a8"},
            "keycloak-controller-559a8",
        ),
        (
            "keycloak22-0-32308(site-id=k8s, rack-id=keycloak, machine-id=node2)",
            {"keycloak22-0"},
            "keycloak22-0",
        ),
        ("keycloak-1-28488(machine-id=xxx", {"keycloak-1"}, "keycloak-1"),
        ("fd524605-7bc5-a6a4-ea6f-4604d418cb32", {"keycloak-0"}, None),
        ("keycloak-0 (starting)", {"keycloak-0"}, None),
        ("(starting)", {"keycloak-0"}, None),
        ("5ba9978151c0-9578", {"keycloak-0"}, None),  # a docker host name, not a pod
        ("keycloak-2-7704", {"keycloak-0", "keycloak-1"}, None),
        ("", {"keycloak-0"}, None),
        (LONG_POD[:63] + "-4711", {LONG_POD, "other"}, LONG_POD),
        (
            "keycloak-5f5c799457-4fcbx-56741",
            {"keycloak-5f5c799457-4fcbx"},
            "keycloak-5f5c799457-4fcbx",
        ),
    ],
    ids=[
        "wildfly-plain",
        "quarkus",
        "quarkus-other",
        "wildfly-cluster-suffix",
        "topology-suffix",
        "topology-truncated",
        "uuid",
        "starting-suffix",
        "starting",
        "docker-host",
        "unknown-pod",
        "empty",
        "hostname-cut-63",
        "deployment-pod",
    ],
)
def test_member_to_pod(member: str, pods: set[str], expected: str | None) -> None:
    assert member_to_pod(member, pods) == expected


def _corpus_views() -> list[tuple[str, list[str]]]:
    cases = []
    for raw in CORPUS.read_text(encoding="utf-8").splitlines():
        entry = json.loads(raw)
        if "expected_members" in entry:
            cases.append((entry["id"], entry["expected_members"]))
    return cases


@pytest.mark.skipif(not CORPUS.exists(), reason="shared corpus not present")
@pytest.mark.parametrize(
    ("case_id", "members"),
    _corpus_views(),
    ids=[c[0] for c in _corpus_views()] if CORPUS.exists() else None,
)
def test_corpus_members_map_to_the_pods_they_name(case_id: str, members: list[str]) -> None:
    """Every corpus member maps to the pod named by its base, UUIDs to None."""
    for member in members:
        base = member.split("(")[0].split("/")[0]
        host = base.rsplit("-", 1)[0] if base.rsplit("-", 1)[-1].isdigit() else base
        if len(base) == 36 and base.count("-") == 4:
            assert member_to_pod(member, {"keycloak-0", "keycloak-1"}) is None, case_id
        else:
            assert member_to_pod(member, {host, "unrelated-0"}) == host, case_id


# ------------------------------------------------------------------ assessment

GRACE = 120.0
NOW = 10_000.0


def peer(
    name: str,
    *,
    ready: bool = True,
    running: bool = True,
    terminating: bool = False,
    condition: str = "",
    ready_at: float | None = None,
) -> PeerPod:
    return PeerPod(
        name=name,
        running=running,
        terminating=terminating,
        keycloak_ready=ready,
        ip="10.0.0.9",
        membership_condition=condition,
        ready_at=ready_at,
    )


def facts(*peers: PeerPod, api_ok: bool = True, own: str = "kc-0") -> KubeFacts:
    return KubeFacts(
        api_ok=api_ok,
        api_error="" if api_ok else "forbidden",
        own_pod=own,
        peers=peers,
        kill_slot_held=False,
        budget_enabled=True,
        observed_at=NOW,
    )


def view(*members: str, view_id: int = 3) -> ClusterView:
    return ClusterView(view_id=view_id, coordinator=members[0], members=members, size=len(members))


def assess(
    view_: ClusterView | None,
    facts_: KubeFacts | None,
    *,
    started: bool = True,
    db_down: bool = False,
    since: float | None = None,
) -> MembershipAssessment:
    return assess_membership(
        view=view_,
        facts=facts_,
        started=started,
        db_down=db_down,
        evidence_since=since,
        now=NOW,
        grace_seconds=GRACE,
    )


def test_full_view_is_fine() -> None:
    result = assess(view("kc-0-111", "kc-1-222"), facts(peer("kc-1")))
    assert (result.ok, result.reason, result.unknown, result.expected_members) == (
        True,
        "",
        False,
        2,
    )


def test_singleton_first_view_with_a_ready_peer_is_never_joined_at_once() -> None:
    result = assess(view("kc-0-111", view_id=0), facts(peer("kc-1")))
    assert (result.ok, result.reason, result.since, result.kill_wanted) == (
        False,
        "cluster_never_joined",
        NOW,
        False,
    )


def test_shrunk_view_is_peers_missing() -> None:
    result = assess(view("kc-0-111", view_id=8), facts(peer("kc-1")))
    assert (result.ok, result.reason) == (False, "cluster_peers_missing")


def test_kill_wanted_only_after_continuous_grace() -> None:
    early = assess(view("kc-0", view_id=0), facts(peer("kc-1")), since=NOW - GRACE + 1)
    late = assess(view("kc-0", view_id=0), facts(peer("kc-1")), since=NOW - GRACE)
    assert (early.kill_wanted, late.kill_wanted) == (False, True)
    assert late.since == NOW - GRACE


def test_database_down_never_wants_a_kill_and_restarts_the_grace() -> None:
    result = assess(
        view("kc-0", view_id=0), facts(peer("kc-1")), db_down=True, since=NOW - 10 * GRACE
    )
    assert (result.ok, result.kill_wanted, result.since) == (False, False, NOW)


@pytest.mark.parametrize(
    ("view_", "facts_", "started"),
    [
        (view("kc-0"), None, True),
        (view("kc-0"), facts(peer("kc-1"), api_ok=False), True),
        (None, facts(peer("kc-1")), True),
        (view("fd524605-7bc5-a6a4-ea6f-4604d418cb32"), facts(peer("kc-1")), True),
        (view("kc-0", "35f6bdae-df5c-93e9-ead6-7f14873d346f"), facts(peer("kc-1")), True),
    ],
    ids=[
        "kubernetes-off",
        "api-unusable",
        "no-view-yet",
        "own-member-uuid",
        "missing-peer-may-be-the-uuid",
    ],
)
def test_unknown_is_ok_and_never_a_kill(
    view_: ClusterView | None, facts_: KubeFacts | None, started: bool
) -> None:
    result = assess(view_, facts_, started=started, since=NOW - 10 * GRACE)
    assert (result.ok, result.unknown, result.kill_wanted, result.reason) == (
        True,
        True,
        False,
        "membership_unknown",
    )


def test_uuid_members_do_not_matter_when_every_expected_peer_is_present() -> None:
    result = assess(
        view("kc-0", "35f6bdae-df5c-93e9-ead6-7f14873d346f", "kc-1"), facts(peer("kc-1"))
    )
    assert (result.ok, result.unknown) == (True, False)


def test_not_started_has_no_evidence() -> None:
    result = assess(view("kc-0", view_id=0), facts(peer("kc-1")), started=False)
    assert (result.ok, result.reason, result.since) == (True, "", None)


@pytest.mark.parametrize(
    "peer_",
    [
        peer("kc-1", ready=False),
        peer("kc-1", running=False),
        peer("kc-1", terminating=True),
        peer("kc-1", ready=False, ready_at=NOW - GRACE - PEER_MEMORY_MARGIN_SECONDS - 1),
    ],
    ids=["never-ready", "not-running", "terminating", "ready-long-ago"],
)
def test_peers_that_are_not_expected_do_not_count(peer_: PeerPod) -> None:
    result = assess(view("kc-0", view_id=0), facts(peer_))
    assert (result.ok, result.reason, result.expected_members) == (True, "", 1)


@pytest.mark.parametrize(
    "peer_",
    [peer("kc-1", ready=False, ready_at=NOW - GRACE), peer("kc-1", ready=False, condition="False")],
    ids=["ready-recently", "reports-membership-loss"],
)
def test_not_ready_peer_stays_expected_when_its_not_ready_is_ours(peer_: PeerPod) -> None:
    """The two-replica partition: both turn NotReady; neither forgets the other."""
    result = assess(view("kc-0", view_id=5), facts(peer_), since=NOW - GRACE)
    assert (result.ok, result.reason, result.kill_wanted) == (False, "cluster_peers_missing", True)


def test_majority_side_keeps_ready_when_a_minority_peer_is_cut_off() -> None:
    result = assess(view("kc-0", "kc-1"), facts(peer("kc-1"), peer("kc-2")), since=NOW - 10 * GRACE)
    assert (result.ok, result.kill_wanted, result.expected_members) == (True, False, 3)


def test_minority_side_has_evidence() -> None:
    result = assess(view("kc-0", view_id=4), facts(peer("kc-1"), peer("kc-2")), since=NOW - GRACE)
    assert (result.ok, result.kill_wanted) == (False, True)


def test_every_peer_reporting_the_same_loss_blocks_the_kill() -> None:
    result = assess(
        view("kc-0", view_id=0),
        facts(peer("kc-1", condition="False"), peer("kc-2", condition="False")),
        since=NOW - 10 * GRACE,
    )
    assert (result.ok, result.kill_wanted) == (False, False)
    assert "same loss" in result.detail


def test_a_single_peer_reporting_loss_does_not_block_the_kill() -> None:
    """Two replicas, symmetric partition: the kill budget staggers them instead."""
    result = assess(
        view("kc-0", view_id=0), facts(peer("kc-1", condition="False")), since=NOW - GRACE
    )
    assert result.kill_wanted


def test_detail_names_pods_not_log_text() -> None:
    result = assess(view("kc-0-111(machine-id=secret", view_id=0), facts(peer("kc-1")))
    assert "kc-1" in result.detail
    assert "secret" not in result.detail
