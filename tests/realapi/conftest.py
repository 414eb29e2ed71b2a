"""Fixtures of the suite against the real kube-apiserver (marker ``realapi``).

``real_api`` starts one server (kube-apiserver + embedded etcd, ``tests/kubeapiserver``)
for the whole session on free loopback ports; ``rendered`` holds the objects of
``k8s/overlays/readiness-gate`` (the RBAC of ``k8s/rbac`` with the readiness-gate rule,
and the StatefulSet with its readiness gate), rendered by the kubectl that
``.ci/install-tools.sh`` installs.  Every test gets a namespace of its own
(``make_namespace``), and every sidecar process it starts is stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ci_tools import in_ci, tool
from realapi_cluster import Json, Namespace, Rendered, Sidecar
from realapiserver import REPO, RealApiServer, cached_binary, render_kustomization


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realapi)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server_binary() -> Path:
    binary, why = cached_binary()
    if binary is None:
        if in_ci():
            pytest.fail(f"the real kube-apiserver is not built: {why}")
        pytest.skip(f"real kube-apiserver not built: {why}")
    return binary


@pytest.fixture(scope="session")
def real_api(
    server_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealApiServer]:
    server = RealApiServer(server_binary, tmp_path_factory.mktemp("kubeapiserver"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rendered() -> Rendered:
    kubectl = tool("kubectl")
    objects = render_kustomization(kubectl, REPO / "k8s" / "overlays" / "readiness-gate")
    rbac = [
        obj
        for obj in objects
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding")
        and obj["metadata"]["name"] == "keycloak-sidecar"
    ]
    assert sorted(obj["kind"] for obj in rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    role = next(obj for obj in rbac if obj["kind"] == "Role")
    statefulset = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    return Rendered(rbac, role, statefulset)


@pytest.fixture
def make_namespace(
    real_api: RealApiServer, rendered: Rendered, tmp_path: Path
) -> Callable[..., Namespace]:
    def make(role: Json | None = None) -> Namespace:
        return Namespace(real_api, rendered.rbac, rendered.statefulset, tmp_path, role=role)

    return make


@pytest.fixture
def sidecars() -> Iterator[list[Sidecar]]:
    """Sidecars a test started (append them): stopped at the end, output shown on failure."""
    started: list[Sidecar] = []
    yield started
    for sidecar in started:
        sidecar.stop()
