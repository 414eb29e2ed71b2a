"""End-to-end scenarios of ``test_scenarios.py`` again, against the real kube-apiserver.

Same bodies, same assertions; only the API side differs: ``realapi_backend.RealApiBackend``
on ``tests/kubeapiserver`` (one server for the module, one namespace per scenario with
the rendered RBAC of ``k8s/``, the sidecars on the ServiceAccount's token, the kubelet's
writes made as the node).  The selected scenarios run concurrently, like the double's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ci_tools import in_ci, tool
from harness import Outcome, run_scenario
from realapi_backend import RealApiBackend
from realapiserver import REPO, RealApiServer, cached_binary, render_kustomization
from test_scenarios import SCENARIOS

pytestmark = [pytest.mark.slow, pytest.mark.realapi, pytest.mark.timeout(900)]

#: the real server answers in milliseconds on an idle machine but took ~0.8 s a request at a
#: load of 11 on 2 cores; at the double's scale 30 that is 25 cluster seconds per call
REAL_API_SCALE = 10.0

REAL_API_SCENARIOS = (
    "story",
    "both_fail_at_startup",
    "partition_restarts_the_isolated_replica",
    "database_down_for_everyone",
    "sidecar_restart_leaves_keycloak_alone",
    "out_of_memory_restarts_that_replica",
)


def namespace_of(scenario: str) -> str:
    return "e2e-" + scenario.replace("_", "-")[:50]


@pytest.fixture(scope="module")
def e2e_real_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApiServer]:
    binary, why = cached_binary()
    if binary is None:
        if in_ci():
            pytest.fail(f"the real kube-apiserver is not built: {why}")
        pytest.skip(f"real kube-apiserver not built: {why}")
    server = RealApiServer(binary, tmp_path_factory.mktemp("kubeapiserver-for-e2e"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def real_outcomes(
    request: pytest.FixtureRequest, e2e_real_api: RealApiServer, e2e_root: Path
) -> dict[str, Outcome]:
    objects = render_kustomization(tool("kubectl"), REPO / "k8s")
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_scenario_against_the_real_api"
        and hasattr(item, "callspec")
    ]

    backends: dict[str, RealApiBackend] = {}

    def backend(name: str) -> Any:
        def make() -> RealApiBackend:
            namespace = namespace_of(name)
            backends[name] = RealApiBackend(e2e_real_api, rbac, namespace)
            return backends[name]

        return make

    scenarios = [
        dataclasses.replace(
            SCENARIOS[name], api=backend(name), scale=min(SCENARIOS[name].scale, REAL_API_SCALE)
        )
        for name in dict.fromkeys(selected)
    ]

    async def run_all() -> list[Outcome]:
        return await asyncio.gather(
            *(run_scenario(s, e2e_root / f"real-{s.name}") for s in scenarios)
        )

    outcomes = {o.scenario.name: o for o in asyncio.run(run_all())}
    for name, outcome in outcomes.items():
        failed_writes = backends[name].errors if name in backends else []
        if failed_writes and outcome.error is None:
            outcome.error = AssertionError(f"kubelet writes failed: {failed_writes[:5]}")
    return outcomes


def sidecar_calls(server: RealApiServer, namespace: str) -> dict[tuple[str, str, int], int]:
    """(resource, verb, HTTP code) -> count of the ServiceAccount's requests (audit log)."""
    user = f"system:serviceaccount:{namespace}:keycloak-sidecar"
    calls: dict[tuple[str, str, int], int] = {}
    for event in server.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"].get("username") == user and ref.get("namespace") == namespace:
            key = (ref.get("resource", ""), event["verb"], event["responseStatus"]["code"])
            calls[key] = calls.get(key, 0) + 1
    return calls


@pytest.mark.parametrize("name", REAL_API_SCENARIOS)
def test_scenario_against_the_real_api(
    name: str, real_outcomes: dict[str, Outcome], e2e_real_api: RealApiServer
) -> None:
    outcome = real_outcomes[name]
    if outcome.error is not None:
        pytest.fail(f"{outcome.error}\n\n{outcome.report}", pytrace=False)
    calls = sidecar_calls(e2e_real_api, namespace_of(name))
    assert calls.get(("pods", "list", 200)), calls  # the sidecars really used this server
    assert calls.get(("pods", "watch", 200)), calls
    refused = {key: count for key, count in calls.items() if key[2] in (401, 403)}
    assert not refused, f"the Role of k8s/ refused the sidecars: {refused}"
