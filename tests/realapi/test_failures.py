"""What the real API server does wrong, and what the sidecar does about it.

A watch that resumes from a compacted ``resourceVersion`` (410 Gone), the API server
restarted under running sidecars, the API server frozen (connections accepted, nothing
answered), and the kill-budget Lease taken over by another holder so that the holder's
renewal is a stale update (409 Conflict).  In each: the sidecar recovers by itself, and no
replica is killed because of the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from daemon_harness import LIQUIBASE_LINE
from realapi_cluster import (
    LEASE,
    Namespace,
    Sidecar,
    livez_by_pod,
    peers_seen,
    sidecar_report,
    stamp,
    start_cluster,
    wait_until,
)
from realapiserver import RealApiServer

pytestmark = pytest.mark.timeout(240)
FREEZE_SECONDS = 20.0  # longer than the sidecar's 10 s request timeout


@pytest.fixture
def pods_watched_from_etcd(real_api: RealApiServer) -> Iterator[RealApiServer]:
    """The server without a watch cache for pods: a watch from a version older than the
    etcd compaction is refused (410) whatever bookmarks the client got before."""
    real_api.extra_args = ("--watch-cache-sizes=pods#0",)
    real_api.restart()
    try:
        yield real_api
    finally:
        real_api.extra_args = ()
        real_api.restart()


def test_watch_from_a_compacted_version_gets_410_and_the_sidecar_relists(
    pods_watched_from_etcd: RealApiServer,
    make_namespace: Callable[..., Namespace],
    sidecars: list[Sidecar],
) -> None:
    real_api = pods_watched_from_etcd
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    wait_until("peers", lambda: peers_seen(first) == {"keycloak-1": True})
    for index in range(20):  # history the sidecar's watches have no reason to see
        namespace.admin.create(
            namespace.path("configmaps"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"churn-{index}"}},
        )
    revision = real_api.compact()
    assert revision > 0
    real_api.restart()  # the watches end; resuming from their version is too old now
    wait_until(
        "the watch got 410 Gone",
        lambda: (
            first.metric(
                "keycloak_sidecar_kube_api_errors_total", operation="pods_watch", code="gone"
            )
            >= 1
        ),
        within_seconds=60,
    )
    assert any(r.get("msg") == "Pod watch restarts with a fresh list" for r in first.log_records())
    kubelets["keycloak-1"].set_ready(False)
    wait_until(
        "the fresh list and watch follow the peer",
        lambda: peers_seen(first) == {"keycloak-1": False},
        within_seconds=60,
    )
    assert livez_by_pod(sidecars) == {"keycloak-0": 200, "keycloak-1": 200}


def test_api_server_restart_mid_run_kills_nothing(
    real_api: RealApiServer, make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    kubelets = start_cluster(namespace, sidecars, 3)
    wait_until("peers", lambda: all(len(peers_seen(s)) == 2 for s in sidecars))
    real_api.stop()
    seen_down = []
    for _ in range(40):  # the API is gone for a while: ~2 s of samples
        seen_down.append(livez_by_pod(sidecars))
        time.sleep(0.05)
    real_api.start()
    assert all(set(sample.values()) == {200} for sample in seen_down), seen_down
    kubelets["keycloak-2"].set_ready(False)
    wait_until(
        "watches re-established after the restart",
        lambda: all(peers_seen(s).get("keycloak-2") is False for s in sidecars[:2]),
        within_seconds=90,
    )
    assert livez_by_pod(sidecars) == {"keycloak-0": 200, "keycloak-1": 200, "keycloak-2": 200}
    assert all(s.alive() for s in sidecars), sidecar_report(sidecars)


def test_frozen_api_server_defers_the_kill_and_then_lets_it_happen(
    real_api: RealApiServer, make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    """Unreachable (frozen) for a while: no replica dies for it; afterwards the budget works."""
    namespace = make_namespace()
    start_cluster(namespace, sidecars, 2)
    first = sidecars[0]
    wait_until("peers", lambda: peers_seen(first) == {"keycloak-1": True})
    real_api.pause()
    try:
        first.write_log(LIQUIBASE_LINE)  # a restart is wanted but the Lease cannot be had
        samples = []
        deadline = time.monotonic() + FREEZE_SECONDS
        while time.monotonic() < deadline:
            samples.append(livez_by_pod(sidecars))
            time.sleep(0.2)
    finally:
        real_api.resume()
    assert all(set(sample.values()) == {200} for sample in samples), samples
    wait_until(
        "the Lease API timed out meanwhile",
        lambda: (
            first.metric(
                "keycloak_sidecar_kube_api_errors_total", operation="leases_get", code="timeout"
            )
            >= 1
            or first.metric(
                "keycloak_sidecar_kube_api_errors_total", operation="leases_get", code="unreachable"
            )
            >= 1
        ),
        within_seconds=30,
    )
    wait_until(
        "after the freeze the slot is taken", lambda: first.livez() == 503, within_seconds=60
    )
    assert sidecars[1].livez() == 200
    lease = namespace.lease(LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "keycloak-0"


def test_lease_taken_over_by_a_stale_update_409_gives_the_slot_up(
    make_namespace: Callable[..., Namespace], sidecars: list[Sidecar]
) -> None:
    namespace = make_namespace()
    start_cluster(namespace, sidecars, 1, "--kill-lease-duration=6s")
    sidecar = sidecars[0]
    sidecar.write_log(LIQUIBASE_LINE)
    wait_until("slot taken", lambda: sidecar.livez() == 503)
    lease = namespace.lease(LEASE)
    assert lease is not None
    # Another holder writes the Lease: the sidecar's next renewal carries a stale version.
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace.name}/leases/{LEASE}"
    lease["spec"].update(
        holderIdentity="intruder",
        leaseDurationSeconds=4,
        renewTime=stamp_micro(),
        acquireTime=stamp_micro(),
    )
    namespace.admin.call("PUT", path, lease)
    wait_until(
        "the sidecar saw the 409 and gave the slot up",
        lambda: any(
            r.get("msg") == "Kill-budget slot lost to another replica"
            for r in sidecar.log_records()
        ),
        within_seconds=30,
    )
    assert namespace.lease(LEASE)["spec"]["holderIdentity"] == "intruder"  # type: ignore[index]
    wait_until("no slot, no kill", lambda: sidecar.livez() == 200)
    code, body = sidecar.readyz()
    assert code == 503
    assert "kill_deferred" in str(body)
    # the intruder stops renewing: its Lease expires and the sidecar takes the slot again
    wait_until(
        "slot taken back after the intruder's Lease expired",
        lambda: sidecar.livez() == 503,
        within_seconds=30,
    )
    assert namespace.lease(LEASE)["spec"]["holderIdentity"] == "keycloak-0"  # type: ignore[index]


def stamp_micro() -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds)."""
    return stamp().replace("Z", ".000000Z")
