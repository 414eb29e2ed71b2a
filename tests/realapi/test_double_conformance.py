"""The API double (``tests/kubeapi.py``) answers like the real kube-apiserver.

Each case sends the same requests to both (one namespace of the real server; a double
serving that namespace) and compares what came back: the status code, and where the
answer's content is the point (a patched pod's conditions), that content.  Where they
disagreed, the double was changed to match the real server.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from kubeapi import KubeApiDouble
from realapi_cluster import SA_NAME, Namespace

Json = dict[str, Any]
STAMP = "2026-01-02T03:04:05Z"
MICRO = "2026-01-02T03:04:05.000000Z"


@dataclass
class Target:
    """One API server (real or double) seen through the same small async client."""

    name: str
    url: str
    namespace: str
    session: aiohttp.ClientSession
    headers: dict[str, str]
    add_pod: Callable[[str], Awaitable[None]]
    compact: Callable[[], object]
    #: the sidecar's own account (the Role as shipped) instead of the admin
    sidecar_headers: dict[str, str]

    async def send(
        self,
        method: str,
        tail: str,
        body: object = None,
        content_type: str = "application/json",
        *,
        as_sidecar: bool = False,
    ) -> tuple[int, Json]:
        group = "/apis/coordination.k8s.io/v1" if tail.startswith("leases") else "/api/v1"
        url = f"{self.url}{group}/namespaces/{self.namespace}/{tail}"
        who = self.sidecar_headers if as_sidecar else self.headers
        headers = {**who, "Content-Type": content_type}
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, url, data=data, headers=headers) as answer:
            text = await answer.text()
            return answer.status, json.loads(text) if text.startswith("{") else {}


def event(namespace: str, **changes: Any) -> Json:
    """A core/v1 Event as the sidecar sends it, with ``changes`` applied (None = removed)."""
    body: Json = {
        "metadata": {"generateName": "keycloak-0.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": "keycloak-0",
            "namespace": namespace,
        },
        "reason": "KeycloakStartupFailed",
        "message": "Keycloak startup failed",
        "type": "Warning",
        "count": 1,
        "firstTimestamp": STAMP,
        "lastTimestamp": STAMP,
        "source": {"component": "keycloak-sidecar"},
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def lease(name: str, holder: str, resource_version: str | None = None) -> Json:
    metadata: Json = {"name": name}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30, "renewTime": MICRO},
    }


# ------------------------------------------------------------------ the cases


async def event_as_the_sidecar_sends_it(t: Target) -> object:
    return (await t.send("POST", "events", event(t.namespace)))[0]


async def event_with_only_the_legacy_essentials(t: Target) -> object:
    """No reason, type, timestamps or source: the core/v1 API accepts it."""
    body = event(
        t.namespace,
        reason=None,
        type=None,
        firstTimestamp=None,
        lastTimestamp=None,
        source=None,
        count=None,
        message=None,
    )
    return (await t.send("POST", "events", body))[0]


async def event_with_a_long_message_and_no_event_time(t: Target) -> object:
    return (await t.send("POST", "events", event(t.namespace, message="x" * 2000)))[0]


async def event_about_another_namespace(t: Target) -> object:
    involved = {"kind": "Pod", "name": "keycloak-0", "namespace": "elsewhere"}
    return (await t.send("POST", "events", event(t.namespace, involvedObject=involved)))[0]


async def event_without_the_involved_namespace(t: Target) -> object:
    involved = {"kind": "Pod", "name": "keycloak-0"}
    return (await t.send("POST", "events", event(t.namespace, involvedObject=involved)))[0]


async def event_without_a_name(t: Target) -> object:
    return (await t.send("POST", "events", event(t.namespace, metadata={})))[0]


async def event_with_event_time_but_no_reporting_fields(t: Target) -> object:
    body = event(t.namespace, eventTime=MICRO, reportingComponent=None)
    return (await t.send("POST", "events", body))[0]


async def lease_created_twice(t: Target) -> object:
    first = (await t.send("POST", "leases", lease("slot-a", "keycloak-0")))[0]
    second = (await t.send("POST", "leases", lease("slot-a", "keycloak-1")))[0]
    return first, second


async def lease_replaced_with_a_stale_version(t: Target) -> object:
    _, created = await t.send("POST", "leases", lease("slot-b", "keycloak-0"))
    version = created["metadata"]["resourceVersion"]
    first = (await t.send("PUT", "leases/slot-b", lease("slot-b", "keycloak-1", version)))[0]
    stale = (await t.send("PUT", "leases/slot-b", lease("slot-b", "keycloak-2", version)))[0]
    return first, stale


async def lease_replaced_without_a_version(t: Target) -> object:
    await t.send("POST", "leases", lease("slot-c", "keycloak-0"))
    return (await t.send("PUT", "leases/slot-c", lease("slot-c", "keycloak-1")))[0]


async def _patched_conditions(t: Target, pod: str, content_type: str) -> object:
    await t.add_pod(pod)
    gate = {"type": "keycloak.org/cluster-member", "status": "True", "reason": "ClusterMember"}
    status, answer = await t.send(
        "PATCH", f"pods/{pod}/status", {"status": {"conditions": [gate]}}, content_type
    )
    types = sorted(c["type"] for c in answer.get("status", {}).get("conditions", []))
    return status, types


async def pod_condition_by_strategic_merge(t: Target) -> object:
    return await _patched_conditions(t, "keycloak-8", "application/strategic-merge-patch+json")


async def pod_condition_by_json_merge_patch(t: Target) -> object:
    """A JSON merge patch replaces the whole list: the kubelet's Ready condition is gone."""
    return await _patched_conditions(t, "keycloak-9", "application/merge-patch+json")


async def pods_listed_at_a_compacted_version(t: Target) -> object:
    """A list at an old version (not ``Exact``) is "not older than": today's list, no 410."""
    _, listing = await t.send("GET", "pods")
    old = listing["metadata"]["resourceVersion"]
    await t.add_pod("keycloak-7")
    t.compact()
    status, answer = await t.send("GET", f"pods?resourceVersion={old}")
    return status, [pod["metadata"]["name"] for pod in answer.get("items", [])]


async def pod_read_by_name_as_the_sidecar(t: Target) -> object:
    """The Role grants no ``get`` on pods: a pod read by name is refused, existing or not."""
    await t.add_pod("keycloak-6")
    answers = [await t.send("GET", f"pods/{n}", as_sidecar=True) for n in ("keycloak-6", "nope")]
    return [(status, answer.get("reason")) for status, answer in answers]


CASES = [
    event_as_the_sidecar_sends_it,
    event_with_only_the_legacy_essentials,
    event_with_a_long_message_and_no_event_time,
    event_about_another_namespace,
    event_without_the_involved_namespace,
    event_without_a_name,
    event_with_event_time_but_no_reporting_fields,
    lease_created_twice,
    lease_replaced_with_a_stale_version,
    lease_replaced_without_a_version,
    pod_condition_by_strategic_merge,
    pod_condition_by_json_merge_patch,
    pods_listed_at_a_compacted_version,
    pod_read_by_name_as_the_sidecar,
]


# ------------------------------------------------------------------ both servers


@pytest.fixture
async def targets(
    make_namespace: Callable[..., Namespace],
) -> AsyncIterator[tuple[Target, Target]]:
    namespace = make_namespace()
    real = namespace.server
    context = ssl.create_default_context(cafile=str(real.ca_file))
    async with (
        KubeApiDouble(namespace=namespace.name) as double,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
    ):

        async def real_pod(name: str) -> None:
            namespace.admin.create(
                namespace.path("pods"),
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {
                        "serviceAccountName": "keycloak-sidecar",
                        "automountServiceAccountToken": False,
                        "containers": [{"name": "keycloak", "image": "test"}],
                    },
                },
            )
            namespace.admin.strategic_patch(
                namespace.path(f"pods/{name}/status"),
                {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            )

        async def double_pod(name: str) -> None:
            double.add_pod(name, {"app": "keycloak"})

        admin = {"Authorization": f"Bearer {real.tokens()['admin']}"}
        sidecar = {"Authorization": f"Bearer {namespace.admin.mint_token(namespace.name, SA_NAME)}"}
        yield (
            Target(
                "real", real.url, namespace.name, session, admin, real_pod, real.compact, sidecar
            ),
            Target(
                "double", double.url, namespace.name, session, {}, double_pod, double.compact, {}
            ),
        )


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
async def test_the_double_answers_like_the_real_server(
    case: Callable[[Target], Awaitable[object]], targets: tuple[Target, Target]
) -> None:
    real, double = targets
    expected = await case(real)
    assert await case(double) == expected, f"the real server answered {expected}"
