"""The Role of k8s/rbac against the real API server's RBAC authorizer.

With the Role as rendered (``k8s/overlays/readiness-gate``: the base rules plus
``pods/status``), every Kubernetes feature of the sidecar works: the peer watch, the kill
budget across three sidecars, Events (created, and aggregated by a patch), the
readiness-gate condition next to the kubelet's own conditions.  With any one rule taken
out, the matching feature degrades as documented (``k8s/rbac/README.md``): the failing
call is counted as ``kube_api_errors_total{code="forbidden"}`` and logged, nothing is
killed because of it, the endpoints answer, and the other features keep working.  The
audit log shows that the sidecar uses every verb the Role grants, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from daemon_harness import LIQUIBASE_LINE, STARTED_LINE
from realapi_cluster import (
    LEASE,
    SA_NAME,
    Namespace,
    Rendered,
    Sidecar,
    livez_by_pod,
    peers_seen,
    sidecar_report,
    start_cluster,
    wait_until,
    without_rule,
)
from realapiserver import RealApiServer

Json = dict[str, Any]
GATE = "keycloak.org/cluster-member"
KUBELET_CONDITIONS = {
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
}


def conditions(namespace: Namespace, pod: str) -> dict[str, Json]:
    return {c["type"]: c for c in namespace.pod(pod)["status"].get("conditions", [])}


def events_for(namespace: Namespace, pod: str) -> dict[str, Json]:
    """reason -> Event on the pod (the sidecar keeps one Event per reason and message)."""
    return {e["reason"]: e for e in namespace.events() if e["involvedObject"]["name"] == pod}


def restarted_events(namespace: Namespace) -> int:
    return sum(1 for e in namespace.events() if e["reason"] == "KeycloakRestarted")


def failing_logged(sidecar: Sidecar, operation: str) -> bool:
    return any(
        r.get("msg") == "Kubernetes API call failing"
        and r.get("operation") == operation
        and r.get("code") == "forbidden"
        for r in sidecar.log_records()
    )


# ------------------------------------------------------------------ the Role as shipped


def test_peer_watch_sees_peers_and_follows_their_changes(
    make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 3)
    first = sidecars[0]
    expected = {"keycloak-1": True, "keycloak-2": True}
    wait_until("keycloak-0 lists its two ready peers", lambda: peers_seen(first) == expected)
    kubelets["keycloak-2"].set_ready(False)
    wait_until(
        "keycloak-0 sees keycloak-2 turn NotReady through its watch",
        lambda: peers_seen(first) == {"keycloak-1": True, "keycloak-2": False},
    )
    # kubectl delete: a pod bound to a node only gets a deletionTimestamp ...
    namespace.admin.call("DELETE", namespace.path("pods/keycloak-2"))
    wait_until(
        "keycloak-0 sees keycloak-2 terminating",
        lambda: any(p["name"] == "keycloak-2" and p["terminating"] for p in first.kube()["peers"]),
    )
    # ... until its kubelet confirms with a delete of grace period 0
    kubelets["keycloak-2"].delete()
    wait_until("keycloak-2 gone for keycloak-0", lambda: peers_seen(first) == {"keycloak-1": True})
    assert all(s.api_errors("forbidden") == {} for s in sidecars), sidecar_report(sidecars)


def test_readiness_gate_condition_is_patched_next_to_the_kubelets(
    make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    first.write_log(STARTED_LINE, _view_line(("keycloak-0", "keycloak-1")))
    gate = wait_until(
        "keycloak-0's gate condition says ClusterMember",
        lambda: (
            (c := conditions(namespace, "keycloak-0").get(GATE))
            and c["reason"] == "ClusterMember"
            and c
        ),
    )
    assert gate["status"] == "True"
    assert set(conditions(namespace, "keycloak-0")) >= KUBELET_CONDITIONS
    kubelets["keycloak-0"].set_ready(False)  # the kubelet's next write keeps the gate
    after = conditions(namespace, "keycloak-0")
    assert after[GATE]["status"] == "True", after[GATE]
    assert after["Ready"]["status"] == "False"
    first.write_log(_view_line(("keycloak-0",), view_id=3))
    wait_until(
        "the gate turns False when the peer leaves the view",
        lambda: conditions(namespace, "keycloak-0")[GATE]["status"] == "False",
    )
    assert set(conditions(namespace, "keycloak-0")) >= KUBELET_CONDITIONS


def test_kill_budget_lets_one_of_three_go_at_a_time(
    make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 3)
    for sidecar in sidecars:
        sidecar.write_log(LIQUIBASE_LINE)
    restarted: list[str] = []
    for _ in range(3):
        failing = wait_until(
            "one more replica fails liveness",
            lambda: [
                p for p, c in livez_by_pod(sidecars).items() if c == 503 and p not in restarted
            ],
        )
        assert len(failing) == 1, (livez_by_pod(sidecars), sidecar_report(sidecars))
        holder = failing[0]
        lease = namespace.lease(LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == holder
        waiting = [s for s in sidecars if s.pod not in restarted and s.pod != holder]
        for sidecar in waiting:
            code, body = sidecar.readyz()
            assert sidecar.livez() == 200
            assert code == 503
            assert "kill_deferred" in str(body), body
        kubelets[holder].restart()  # the kubelet restarts the Keycloak container
        restarted.append(holder)
        wait_until(f"{holder} re-armed", lambda: livez_by_pod(sidecars)[holder] == 200)
    assert sorted(restarted) == ["keycloak-0", "keycloak-1", "keycloak-2"]
    assert all(s.api_errors("forbidden") == {} for s in sidecars)


def test_events_are_created_and_an_identical_repeat_is_aggregated(
    make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 1)
    sidecar = sidecars[0]
    sidecar.write_log(LIQUIBASE_LINE)
    wait_until(
        "startup failure Event",
        lambda: "KeycloakLivenessFailing" in events_for(namespace, "keycloak-0"),
    )
    kubelets["keycloak-0"].restart()
    wait_until("restart Event", lambda: "KeycloakRestarted" in events_for(namespace, "keycloak-0"))
    sidecar.write_log(LIQUIBASE_LINE)  # the same failure again after the restart
    found = wait_until(
        "the repeat patched the first Event's count",
        lambda: (
            (e := events_for(namespace, "keycloak-0")["KeycloakStartupFailed"]).get("count") == 2
            and e
        ),
    )
    pod = namespace.pod("keycloak-0")
    assert found["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert found["type"] == "Warning"
    assert found["source"]["component"] == "keycloak-sidecar"
    assert found["lastTimestamp"] >= found["firstTimestamp"]
    startup_failed = [e for e in namespace.events() if e["reason"] == "KeycloakStartupFailed"]
    assert len(startup_failed) == 1, startup_failed


# ------------------------------------------------------------------ one rule taken out


def test_without_pods_access_membership_is_unknown_and_nothing_is_killed(
    make_namespace: Callable[..., Namespace], rendered: Rendered, sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace(without_rule(rendered.role, "", "pods"))
    start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    first.write_log(STARTED_LINE, _view_line(("keycloak-0",)))  # alone in its view
    wait_until("the pod list is refused", lambda: first.api_errors("forbidden").get("pods_list"))
    assert failing_logged(first, "pods_list"), first.output()[-3000:]
    kube = first.kube()
    assert kube["api_ok"] is False
    assert kube["api_error"] == "forbidden"
    assert kube["peers"] == []
    assert livez_by_pod(sidecars) == {"keycloak-0": 200, "keycloak-1": 200}
    assert first.readyz()[0] == 200  # unknown membership never blocks readiness
    # the Lease and Events keep working: a fatal line still restarts, with an Event
    sidecars[1].write_log(LIQUIBASE_LINE)
    wait_until("log evidence still kills", lambda: sidecars[1].livez() == 503)
    lease = namespace.lease(LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "keycloak-1"
    wait_until(
        "Event without the uid",
        lambda: "KeycloakStartupFailed" in events_for(namespace, "keycloak-1"),
    )
    assert GATE not in conditions(namespace, "keycloak-0")  # the gate needs the own pod


def test_without_events_access_only_the_events_are_missing(
    make_namespace: Callable[..., Namespace], rendered: Rendered, sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace(without_rule(rendered.role, "", "events"))
    start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    first.write_log(LIQUIBASE_LINE)
    wait_until("the kill budget still works", lambda: first.livez() == 503)
    wait_until("Event creation refused", lambda: first.api_errors("forbidden").get("events_create"))
    assert failing_logged(first, "events_create"), first.output()[-3000:]
    assert set(first.api_errors("forbidden")) == {"events_create"}
    assert namespace.events() == []
    lease = namespace.lease(LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "keycloak-0"
    assert sidecars[1].livez() == 200
    wait_until("peers still seen", lambda: peers_seen(sidecars[1]) == {"keycloak-0": True})
    wait_until("gate still set", lambda: GATE in conditions(namespace, "keycloak-1"))


def test_without_leases_access_the_budget_stops_blocking_after_a_lease_duration(
    make_namespace: Callable[..., Namespace], rendered: Rendered, sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace(without_rule(rendered.role, "coordination.k8s.io", "leases"))
    start_cluster(namespace, sidecars, 2, "--kill-lease-duration=4s")
    first = sidecars[0]
    assert first.livez() == 200
    first.write_log(LIQUIBASE_LINE)
    wait_until("the Lease is refused", lambda: first.api_errors("forbidden").get("leases_get"))
    assert failing_logged(first, "leases_get"), first.output()[-3000:]
    # log evidence alone decides once the Lease API has failed for a lease duration
    wait_until("log evidence decides", lambda: first.livez() == 503, within_seconds=30)
    assert sidecars[1].livez() == 200
    assert namespace.lease(LEASE) is None
    wait_until(
        "Events still created",
        lambda: "KeycloakLivenessFailing" in events_for(namespace, "keycloak-0"),
    )
    wait_until("peers still seen", lambda: peers_seen(sidecars[1]) == {"keycloak-0": True})
    assert GATE in conditions(namespace, "keycloak-1")


def test_without_pods_status_access_only_the_gate_is_missing(
    make_namespace: Callable[..., Namespace], rendered: Rendered, sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace(without_rule(rendered.role, "", "pods/status"))
    start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    first.write_log(STARTED_LINE)
    wait_until(
        "the condition patch is refused",
        lambda: first.api_errors("forbidden").get("pods_status_patch"),
    )
    assert failing_logged(first, "pods_status_patch"), first.output()[-3000:]
    assert set(first.api_errors("forbidden")) == {"pods_status_patch"}
    assert GATE not in conditions(namespace, "keycloak-0")
    assert set(conditions(namespace, "keycloak-0")) >= KUBELET_CONDITIONS
    wait_until(
        "ready (started, membership unknown without a view)", lambda: first.readyz()[0] == 200
    )
    assert first.livez() == 200
    wait_until("peers still seen", lambda: peers_seen(first) == {"keycloak-1": True})
    first.write_log(LIQUIBASE_LINE)
    wait_until("the kill budget still works", lambda: first.livez() == 503)
    wait_until(
        "Events still created",
        lambda: "KeycloakStartupFailed" in events_for(namespace, "keycloak-0"),
    )


# ------------------------------------------------------------------ the Role grants no more


def _granted(role: Json) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _used(server: RealApiServer, namespace: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) the ServiceAccount was allowed to do."""
    user = f"system:serviceaccount:{namespace}:{SA_NAME}"
    used = set()
    for event in server.audit_events():
        ref = event.get("objectRef") or {}
        if event.get("user", {}).get("username") != user or ref.get("namespace") != namespace:
            continue
        if event.get("responseStatus", {}).get("code") == 403:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return used


def test_role_grants_exactly_what_the_sidecar_uses(
    real_api: RealApiServer,
    rendered: Rendered,
    make_namespace: Callable[..., Namespace],
    sidecars: list[Sidecar],
) -> None:
    """Every feature once (peers, gate, Lease create/update/renew, Event create/patch)."""
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    wait_until("peers", lambda: peers_seen(first) == {"keycloak-1": True})
    wait_until("gate", lambda: GATE in conditions(namespace, "keycloak-0"))
    for round_number in (1, 2):  # round 2 updates the released Lease and patches Events
        first.write_log(LIQUIBASE_LINE)
        wait_until("slot taken", lambda: first.livez() == 503)
        kubelets["keycloak-0"].restart()
        # the Event loop has seen the re-armed verdicts (Events follow what it observes)
        wait_until(
            "re-armed", lambda: first.livez() == 200 and restarted_events(namespace) == round_number
        )
    wait_until(
        "Event aggregated",
        lambda: events_for(namespace, "keycloak-0")["KeycloakStartupFailed"].get("count") == 2,
    )
    for sidecar in sidecars:
        assert sidecar.stop() == 0
    granted, used = _granted(rendered.role), _used(real_api, namespace.name)
    assert used <= granted, f"used but not granted (would be 403): {sorted(used - granted)}"
    assert granted <= used, f"granted but never used: {sorted(granted - used)}"


def _view_line(pods: tuple[str, ...], view_id: int = 2) -> str:
    """A Keycloak 26 ISPN000094 cluster view with these pods as members."""
    members = [f"{pod}-{10000 + index}" for index, pod in enumerate(pods)]
    return (
        "2024-12-07 17:52:30,001 INFO  [org.infinispan.CLUSTER] (non-blocking-thread--p2-t1) "
        f"ISPN000094: Received new cluster view for channel ISPN: [{members[0]}|{view_id}] "
        f"({len(members)}) [{', '.join(members)}]"
    )


pytestmark = pytest.mark.timeout(180)
