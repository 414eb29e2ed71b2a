"""Pods of the rendered StatefulSet on the real API server, an emulated kubelet, sidecar processes.

``Namespace`` sets up one test's namespace on the real server: the rendered ServiceAccount,
Role (optionally with one rule taken out) and RoleBinding of ``k8s/``, a token for the
ServiceAccount from the TokenRequest API and a kubeconfig with it.  ``Namespace.add_pod``
creates a pod from the rendered StatefulSet's template, bound to an emulated node, and
``Kubelet`` writes what a kubelet writes for it (phase, Ready and the other kubelet
conditions, container statuses with restart counts and IDs) as the node's own identity,
with the strategic-merge patch of ``pods/status`` the real kubelet sends.  No container runs.

``Sidecar`` is the real ``python -m sidecar`` process of one pod, with the manifest's
Kubernetes identity (``POD_NAME``/``POD_NAMESPACE``) and the ServiceAccount's kubeconfig,
a log file the test writes Keycloak lines to, and no HTTP target (``--keycloak-url=``).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from realapiserver import REPO, AdminClient, RealApiServer, free_port, placed_in

Json = dict[str, Any]
SA_NAME = "keycloak-sidecar"
NODES = ("node-0", "node-1", "node-2")
POLL_SECONDS = 0.05
#: the first kill-budget Lease (--kill-lease-name default, slot 0)
LEASE = "keycloak-sidecar-kill-budget-0"
_namespace_numbers = itertools.count(1)



def wait_until(what: str, predicate: Callable[[], object], within_seconds: float = 45.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (a hang guard, not a timing claim)."""
    deadline = time.monotonic() + within_seconds
    last_error: object = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, KeyError, AssertionError) as error:
            last_error = error
        else:
            if result:
                return result
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"not within {within_seconds:g}s: {what} (last error: {last_error})")


def stamp(moment: float | None = None) -> str:
    return datetime.fromtimestamp(moment or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ namespace and RBAC


@dataclass(frozen=True)
class Rendered:
    """What the tests use of the rendered manifests."""

    rbac: list[Json]
    role: Json
    statefulset: Json


def without_rule(role: Json, group: str, resource: str) -> Json:
    """The Role with the rule that grants ``resource`` of ``group`` removed."""
    changed = copy.deepcopy(role)
    kept = [
        rule
        for rule in changed["rules"]
        if not (group in rule.get("apiGroups", []) and resource in rule.get("resources", []))
    ]
    assert len(kept) == len(changed["rules"]) - 1, f"no single rule for {group}/{resource}"
    changed["rules"] = kept
    return changed


@dataclass
class Namespace:
    """One test's namespace with the sidecar's RBAC applied and a token for its account."""

    server: RealApiServer
    rbac: list[Json]  # rendered ServiceAccount, Role, RoleBinding
    template: Json  # the rendered StatefulSet
    directory: Path
    role: Json | None = None  # None: the rendered Role as it is
    name: str = field(default_factory=lambda: f"t{next(_namespace_numbers)}-{os.getpid()}")
    admin: AdminClient = field(init=False)
    kubeconfig: Path = field(init=False)

    def __post_init__(self) -> None:
        self.admin = self.server.admin()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.name}})
        for obj in self.rbac:
            chosen = self.role if obj["kind"] == "Role" and self.role is not None else obj
            self.admin.apply(placed_in(chosen, self.name))
        token = self.admin.mint_token(self.name, SA_NAME)
        self.kubeconfig = self.server.write_kubeconfig(
            self.directory / "kubeconfig", token, self.name
        )

    def path(self, tail: str) -> str:
        return f"/api/v1/namespaces/{self.name}/{tail}"

    def add_pod(self, ordinal: int) -> Json:
        """A pod of the rendered StatefulSet (``<name>-<ordinal>``), bound to a node."""
        spec = copy.deepcopy(self.template["spec"]["template"])
        name = f"{self.template['metadata']['name']}-{ordinal}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**spec.get("metadata", {}), "name": name, "namespace": self.name},
            "spec": {**spec["spec"], "nodeName": NODES[ordinal % len(NODES)], "hostname": name},
        }
        return self.admin.create(self.path("pods"), pod)

    def pod(self, name: str) -> Json:
        result: Json = self.admin.get(self.path(f"pods/{name}"))
        return result

    def events(self) -> list[Json]:
        items: list[Json] = self.admin.get(self.path("events"))["items"]
        return items

    def sidecar_container(self) -> tuple[list[str], dict[str, str]]:
        """The manifest's sidecar args and literal env (``valueFrom`` ones are set per pod)."""
        pod_spec = self.template["spec"]["template"]["spec"]
        # a native sidecar (init container, restartPolicy Always) or a plain container
        containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
        spec = next(c for c in containers if c["name"] == "sidecar")
        env = {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}
        return list(spec.get("args", [])), env

    def lease(self, name: str) -> Json | None:
        status, answer = self.admin.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{self.name}/leases/{name}"
        )
        return answer if status == 200 else None


# ------------------------------------------------------------------ the kubelet


@dataclass
class ContainerState:
    restart_count: int = 0
    ready: bool = False

    def container_id(self, pod: str, container: str) -> str:
        return f"containerd://{pod}-{container}-{self.restart_count}"


class Kubelet:
    """What the kubelet of the pod's node writes into ``pods/status``, as that node."""

    def __init__(self, namespace: Namespace, pod: str) -> None:
        self.namespace = namespace
        self.pod = pod
        node = namespace.pod(pod)["spec"]["nodeName"]
        self.client = namespace.server.node(node)
        spec = namespace.pod(pod)["spec"]
        self.init = [c["name"] for c in spec.get("initContainers", [])]
        self.native = {
            c["name"] for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"
        }
        self.containers = {c["name"]: ContainerState() for c in spec["containers"]}
        self.containers.update({name: ContainerState(ready=True) for name in self.native})
        self.started_at = stamp()
        self.ip = f"10.244.{NODES.index(node)}.{10 + int(pod.rsplit('-', 1)[1])}"

    def set_ready(self, ready: bool, container: str = "keycloak") -> Json:
        self.containers[container].ready = ready
        return self.write()

    def restart(self, container: str = "keycloak", *, ready: bool = False) -> Json:
        """The container exited and a new one runs: restartCount + 1, a new container ID."""
        state = self.containers[container]
        state.restart_count += 1
        state.ready = ready
        return self.write()

    def delete(self) -> None:
        """The kubelet's final delete once the containers stopped (grace period 0)."""
        self.client.call(
            "DELETE", self.namespace.path(f"pods/{self.pod}"), {"gracePeriodSeconds": 0}
        )

    def write(self) -> Json:
        body = self.status()
        # The Node authorizer learns the pod->node edge from its informer: a write right
        # after the pod was created, or after an API server restart, may come before it
        # (403), a retry gets through.
        result: Json = wait_until(
            f"kubelet status write of {self.pod}",
            lambda: self._patch(body),
            within_seconds=60,
        )
        return result

    def _patch(self, body: Json) -> Json | None:
        status, answer = self.client.request(
            "PATCH",
            self.namespace.path(f"pods/{self.pod}/status"),
            body,
            content_type="application/strategic-merge-patch+json",
        )
        if status == 403:
            return None
        if status >= 300:
            raise AssertionError(f"kubelet status write: {status} {json.dumps(answer)[:400]}")
        return answer  # type: ignore[no-any-return]

    def status(self) -> Json:
        now = stamp()
        all_ready = all(state.ready for state in self.containers.values())
        flag = "True" if all_ready else "False"
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ]
        statuses = [
            self._container_status(name, state, now)
            for name, state in self.containers.items()
            if name not in self.native
        ]
        init_statuses = [self._init_status(name, now) for name in self.init]
        return {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "startTime": self.started_at,
                "conditions": conditions,
                "containerStatuses": statuses,
                **({"initContainerStatuses": init_statuses} if init_statuses else {}),
            }
        }

    def _container_status(self, name: str, state: ContainerState, now: str) -> Json:
        return {
            "name": name,
            "ready": state.ready,
            "started": True,
            "restartCount": state.restart_count,
            "containerID": state.container_id(self.pod, name),
            "image": f"{name}:test",
            "imageID": f"{name}@sha256:{'0' * 64}",
            "state": {"running": {"startedAt": now}},
        }

    def _init_status(self, name: str, now: str) -> Json:
        """A native sidecar runs; a plain init container has completed."""
        if name in self.native:
            return self._container_status(name, self.containers[name], now)
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": self.started_at,
            "finishedAt": now,
        }
        return {
            "name": name,
            "ready": False,
            "restartCount": 0,
            "containerID": f"containerd://{self.pod}-{name}",
            "image": f"{name}:test",
            "imageID": f"{name}@sha256:{'0' * 64}",
            "state": {"terminated": terminated},
        }


# ------------------------------------------------------------------ the sidecar process


class Sidecar:
    """``python -m sidecar`` for one pod, against the real API server."""

    def __init__(self, namespace: Namespace, pod: str, *args: str) -> None:
        self.namespace = namespace
        self.pod = pod
        self.directory = namespace.directory / pod
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_file = self.directory / "keycloak.log"
        self.log_file.touch()
        self.output_path = self.directory / "sidecar.log"
        self.port = free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sidecar:
        manifest_args, manifest_env = self.namespace.sidecar_container()
        # The manifest's args, then what must differ on one machine (later flags win).
        argv = [
            sys.executable,
            "-m",
            "sidecar",
            *manifest_args,
            f"--log-file={self.log_file}",
            f"--listen=127.0.0.1:{self.port}",
            "--keycloak-url=",
            f"--kubeconfig={self.namespace.kubeconfig}",
            *self.args,
        ]
        env = {
            **manifest_env,
            "PATH": os.environ.get("PATH", ""),
            "POD_NAME": self.pod,
            "POD_NAMESPACE": self.namespace.name,
            "PYTHONPATH": str(REPO),
        }
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(f"{self.pod} sidecar answers", lambda: self.get("/metrics")[0] == 200, 30)
        return self

    def stop(self) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_log(self, *lines: str) -> None:
        with self.log_file.open("a", encoding="utf-8") as log:
            log.write("".join(line + "\n" for line in lines))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def status(self) -> Json:
        code, body = self.get("/status")
        assert code == 200, (code, body)
        result: Json = json.loads(body)
        return result

    def kube(self) -> Json:
        kube: Json | None = self.status()["kube"]
        assert kube is not None
        return kube

    def livez(self) -> int:
        return self.get("/livez")[0]

    def readyz(self) -> tuple[int, Json]:
        code, body = self.get("/readyz?verbose=json")
        try:
            return code, json.loads(body)
        except ValueError:
            return code, {"raw": body}

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent)."""
        code, body = self.get("/metrics")
        assert code == 200, code
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def api_errors(self, code: str) -> dict[str, float]:
        """``keycloak_sidecar_kube_api_errors_total`` by operation, for one code."""
        status, body = self.get("/metrics")
        assert status == 200, status
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == "keycloak_sidecar_kube_api_errors_total" and (
                    sample.labels.get("code") == code
                ):
                    found[sample.labels["operation"]] = float(sample.value)
        return found

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[Json]:
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records


# ------------------------------------------------------------------ a cluster of them


def start_cluster(
    namespace: Namespace, sidecars: list[Sidecar], replicas: int, *args: str
) -> dict[str, Kubelet]:
    """``replicas`` pods, Running and ready (the kubelet's writes), each with its sidecar."""
    kubelets = {}
    for ordinal in range(replicas):
        name = namespace.add_pod(ordinal)["metadata"]["name"]
        kubelets[name] = Kubelet(namespace, name)
        kubelets[name].set_ready(True)
    for name in kubelets:
        sidecar = Sidecar(namespace, name, *args)
        sidecars.append(sidecar)
        sidecar.start()
    return kubelets


def peers_seen(sidecar: Sidecar) -> dict[str, bool]:
    """Peer name -> Keycloak ready, as the sidecar sees them."""
    kube = sidecar.kube()
    return (
        {peer["name"]: peer["keycloak_ready"] for peer in kube["peers"]} if kube["api_ok"] else {}
    )


def livez_by_pod(sidecars: list[Sidecar]) -> dict[str, int]:
    return {s.pod: s.livez() for s in sidecars}


def sidecar_report(started: list[Sidecar]) -> str:
    return "\n".join(f"--- {s.pod}\n{s.output()[-3000:]}" for s in started)
