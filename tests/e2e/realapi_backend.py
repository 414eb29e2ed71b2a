"""The end-to-end cluster's API side on the real kube-apiserver instead of the double.

``RealApiBackend`` has the surface of ``KubeApiDouble`` that ``harness.Cluster`` uses
(``pods``, ``add_pod``, ``modify_pod``, ``restart_container``, ``delete_pod``,
``write_kubeconfig``, ``async with``), so a scenario runs unchanged against
``tests/kubeapiserver``: its namespace gets the rendered RBAC of ``k8s/``, the sidecars
authenticate with the ServiceAccount's token (TokenRequest), and the emulated kubelet's
writes become what a kubelet sends: the pod is created bound to a node, its status is a
strategic-merge patch of ``pods/status`` made with the node's own identity (Node
authorizer), and a deletion is the kubelet's final one (grace period 0).

The harness calls the mutators synchronously from the kubelet emulator's callbacks; they
update the local copy (``pods``, same shape as the double's) at once and queue the API
write, which one named task sends in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from kubeapi import make_pod
from realapiserver import RealApiServer, placed_in

Json = dict[str, Any]
SA_NAME = "keycloak-sidecar"
NODES = ("node-0", "node-1", "node-2")
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "PodScheduled")


class RealApiBackend:
    """One scenario's namespace on the real server, written as the kubelet would."""

    def __init__(self, server: RealApiServer, rbac: list[Json], namespace: str) -> None:
        self.server = server
        self.rbac = rbac
        self.namespace = namespace
        self.pods: dict[str, Json] = {}
        self.errors: list[str] = []
        self._token = ""
        self._queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._nodes: dict[str, str] = {}

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> RealApiBackend:
        self._token = await asyncio.to_thread(self._prepare_namespace)
        context = ssl.create_default_context(cafile=str(self.server.ca_file))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        self._writer = asyncio.create_task(self._write_all(), name="realapi-kubelet-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), 30)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._session is not None:
            await self._session.close()

    def _prepare_namespace(self) -> str:
        admin = self.server.admin()
        admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        for obj in self.rbac:
            admin.apply(placed_in(obj, self.namespace))
        return admin.mint_token(self.namespace, SA_NAME)

    def write_kubeconfig(self, directory: Path) -> Path:
        return self.server.write_kubeconfig(directory / "kubeconfig", self._token, self.namespace)

    # ------------------------------------------------------------- the kubelet's writes

    def add_pod(self, name: str, labels: dict[str, str], **kwargs: Any) -> Json:
        pod = make_pod(name, labels, **kwargs)
        pod["metadata"]["namespace"] = self.namespace
        self.pods[name] = pod
        self._nodes[name] = NODES[len(self._nodes) % len(NODES)]
        self._queue.put_nowait(("create", name))
        self._queue.put_nowait(("status", name))
        return pod

    def modify_pod(self, name: str, change: Callable[[Json], None]) -> None:
        change(self.pods[name])
        self._queue.put_nowait(("status", name))

    def restart_container(self, name: str, container: str = "keycloak", ready: bool = False) -> str:
        """The container exits and a new one starts: new ID, restartCount + 1."""
        status = next(
            s for s in self.pods[name]["status"]["containerStatuses"] if s["name"] == container
        )
        count = status["restartCount"] + 1
        new_id = f"containerd://{name}-{container}-{count}"
        status.update(restartCount=count, containerID=new_id, ready=ready, state={"running": {}})
        self._queue.put_nowait(("status", name))
        return new_id

    def delete_pod(self, name: str) -> None:
        self.pods.pop(name)
        self._queue.put_nowait(("delete", name))

    # ------------------------------------------------------------- the writer task

    async def _write_all(self) -> None:
        while (item := await self._queue.get()) is not None:
            what, name = item
            try:
                await self._write(what, name)
            except (aiohttp.ClientError, TimeoutError, AssertionError) as error:
                self.errors.append(f"{what} {name}: {error}")

    async def _write(self, what: str, name: str) -> None:
        base = f"{self.server.url}/api/v1/namespaces/{self.namespace}/pods"
        admin = self.server.tokens()["admin"]
        if what == "create":
            await self._send("POST", base, self._pod_object(name), admin)
        elif what == "delete":
            await self._send("DELETE", f"{base}/{name}", {"gracePeriodSeconds": 0}, admin)
        elif name in self.pods:
            node = self.server.tokens()[f"system:node:{self._nodes[name]}"]
            body = {"status": self._status(self.pods[name])}
            # the Node authorizer learns a new pod's node from its informer: retry a 403
            for _ in range(100):
                if (
                    await self._send(
                        "PATCH",
                        f"{base}/{name}/status",
                        body,
                        node,
                        content_type="application/strategic-merge-patch+json",
                        allow={403},
                    )
                    != 403
                ):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"node never allowed to write {name}'s status")

    async def _send(
        self,
        method: str,
        url: str,
        body: Json,
        token: str,
        *,
        content_type: str = "application/json",
        allow: frozenset[int] | set[int] = frozenset(),
    ) -> int:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        async with self._session.request(
            method,
            url,
            data=json.dumps(body),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as answer:
            if answer.status >= 300 and answer.status not in allow:
                text = await answer.text()
                raise AssertionError(f"{method} {url}: {answer.status} {text[:300]}")
            return answer.status

    def _pod_object(self, name: str) -> Json:
        labels = self.pods[name]["metadata"]["labels"]
        container = {"image": "test", "imagePullPolicy": "IfNotPresent"}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "serviceAccountName": SA_NAME,
                "nodeName": self._nodes[name],
                "containers": [{"name": "keycloak", **container}, {"name": "sidecar", **container}],
            },
        }

    @staticmethod
    def _status(pod: Json) -> Json:
        status = copy.deepcopy(pod["status"])
        ready = next(c["status"] for c in status["conditions"] if c["type"] == "Ready")
        status["conditions"] = [
            *({"type": kind, "status": "True"} for kind in KUBELET_CONDITIONS),
            {"type": "Ready", "status": ready},
            {"type": "ContainersReady", "status": ready},
        ]
        for container in status["containerStatuses"]:
            container.setdefault("image", "test")
            container.setdefault("imageID", "test@sha256:" + "0" * 64)
        status["podIPs"] = [{"ip": status["podIP"]}]
        return status
