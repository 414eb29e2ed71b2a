"""The rendered manifests, read the way the kubelet reads them, and rewritten to run locally.

``render(variant)`` runs ``kubectl kustomize`` on ``k8s/`` (or on a temporary
kustomization that applies one of ``k8s/examples/*-patch.yaml`` to it) and returns the
Keycloak StatefulSet's pod template as a ``PodTemplate``.  ``localize`` turns it into one
``LocalPod`` per replica, changing only what cannot be the same on one machine:

* ports: every ``containerPort`` (and the probes' ports) -> a free local port, per pod;
* host: ``0.0.0.0``/``127.0.0.1``/``localhost`` in args and env -> ``127.0.0.1``;
* paths: a volume's ``mountPath`` in args and env -> that volume's directory for the pod;
* downward API: ``metadata.name``/``metadata.namespace``/``status.podIP`` -> the pod's values;
* ``KUBECONFIG`` -> the API double's kubeconfig (what in-cluster config is in a real pod);
* exec probes: ``/dev/tcp/127.0.0.1/PORT`` in the command -> that port's local port.

Init containers with ``restartPolicy: Always`` are native sidecars and run (before the
regular containers, see ``kubelet.py``); other init containers (Keycloak's augmentation)
cannot run here and are left out, as if they had completed.

Secrets and ConfigMaps referenced by ``valueFrom``/``envFrom`` are left out: nothing that
runs here reads them.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
Json = dict[str, Any]
_LOCAL_HOSTS = re.compile(r"(?<![\w.])(?:0\.0\.0\.0|127\.0\.0\.1|localhost)(?=:\d)")


_DEV_TCP = re.compile(r"/dev/tcp/127\.0\.0\.1/(\d+)")


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe, with Kubernetes' defaults filled in (seconds as in the manifest)."""

    kind: str  # startup, liveness, readiness
    path: str  # httpGet path ("" for an exec probe)
    port: int  # container port (named ports resolved); of an exec probe: the /dev/tcp port
    period_seconds: float = 10.0
    timeout_seconds: float = 1.0
    initial_delay_seconds: float = 0.0
    failure_threshold: int = 3
    success_threshold: int = 1
    command: tuple[str, ...] = ()  # an exec probe's command (run for real by the emulator)


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # literal values and downward-API markers "<fieldRef:...>"
    ports: tuple[int, ...]
    mounts: tuple[tuple[str, str], ...]  # (volume name, mountPath)
    probes: tuple[Probe, ...]
    native_sidecar: bool = False  # an init container with restartPolicy Always


@dataclass(frozen=True, slots=True)
class PodTemplate:
    statefulset: str
    namespace: str
    replicas: int
    labels: dict[str, str]
    termination_grace_seconds: float
    containers: tuple[Container, ...]

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)


@dataclass
class LocalContainer:
    name: str
    args: list[str]
    env: dict[str, str]
    probes: tuple[Probe, ...]
    mounts: dict[str, Path]  # mountPath -> local directory
    ports: tuple[int, ...]  # container ports
    rewrite: Callable[[str], str]  # the same rewrite, for values the container defaults to
    native_sidecar: bool = False


@dataclass
class LocalPod:
    name: str
    namespace: str
    labels: dict[str, str]
    directory: Path
    ports: dict[int, int]  # container port -> local port
    containers: dict[str, LocalContainer] = field(default_factory=dict)

    def local_port(self, container_port: int) -> int:
        return self.ports[container_port]


def render(variant: str = "", replicas: int | None = None) -> PodTemplate:
    """The Keycloak pod template of ``kubectl kustomize k8s/`` (+ an example patch)."""
    with tempfile.TemporaryDirectory(prefix="e2e-kustomize-") as scratch:
        target = K8S
        if variant:
            target = Path(scratch)
            shutil.copy(K8S / "examples" / f"{variant}-patch.yaml", target / "patch.yaml")
            (target / "kustomization.yaml").write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "resources": [os.path.relpath(K8S, target)],
                        "patches": [
                            {"path": "patch.yaml", "target": {"kind": "StatefulSet"}},
                        ],
                    }
                ),
                encoding="utf-8",
            )
        output = subprocess.run(
            ["kubectl", "kustomize", str(target)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    documents = [d for d in yaml.safe_load_all(output) if d]
    statefulset = next(d for d in documents if d["kind"] == "StatefulSet")
    return _template(statefulset, replicas)


def _template(statefulset: Json, replicas: int | None) -> PodTemplate:
    spec = statefulset["spec"]
    pod = spec["template"]
    return PodTemplate(
        statefulset=statefulset["metadata"]["name"],
        namespace=statefulset["metadata"].get("namespace", "default"),
        replicas=replicas if replicas is not None else int(spec.get("replicas", 1)),
        labels=dict(pod["metadata"].get("labels", {})),
        termination_grace_seconds=float(pod["spec"].get("terminationGracePeriodSeconds", 30)),
        containers=(
            *(
                _container(c, native_sidecar=True)
                for c in pod["spec"].get("initContainers", [])
                if c.get("restartPolicy") == "Always"
            ),
            *(_container(c) for c in pod["spec"]["containers"]),
        ),
    )


def _probe(kind: str, spec: Json, named_ports: dict[str, int]) -> Probe:
    command: tuple[str, ...] = ()
    if "exec" in spec:
        command = tuple(str(part) for part in spec["exec"]["command"])
        target = _DEV_TCP.search(" ".join(command))
        path, port = "", int(target.group(1)) if target else 0
    else:
        raw_port = spec["httpGet"]["port"]
        path = spec["httpGet"].get("path", "/")
        port = named_ports[raw_port] if isinstance(raw_port, str) else int(raw_port)
    return Probe(
        kind=kind,
        path=path,
        port=port,
        period_seconds=float(spec.get("periodSeconds", 10)),
        timeout_seconds=float(spec.get("timeoutSeconds", 1)),
        initial_delay_seconds=float(spec.get("initialDelaySeconds", 0)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
        success_threshold=int(spec.get("successThreshold", 1)),
        command=command,
    )


def _container(raw: Json, *, native_sidecar: bool = False) -> Container:
    named_ports = {p["name"]: int(p["containerPort"]) for p in raw.get("ports", []) if "name" in p}
    probes = [
        _probe(kind, raw[f"{kind}Probe"], named_ports)
        for kind in ("startup", "liveness", "readiness")
        if f"{kind}Probe" in raw
    ]
    env = []
    for entry in raw.get("env", []):
        if "value" in entry:
            env.append((entry["name"], str(entry["value"])))
        elif "fieldRef" in entry.get("valueFrom", {}):
            env.append((entry["name"], f"<fieldRef:{entry['valueFrom']['fieldRef']['fieldPath']}>"))
    return Container(
        name=raw["name"],
        args=tuple(str(a) for a in raw.get("args", [])),
        env=tuple(env),
        ports=tuple(int(p["containerPort"]) for p in raw.get("ports", [])),
        mounts=tuple((m["name"], m["mountPath"]) for m in raw.get("volumeMounts", [])),
        probes=tuple(probes),
        native_sidecar=native_sidecar,
    )


def _rewrite_paths(text: str, mounts: dict[str, Path]) -> str:
    """Mount paths -> local directories, in one pass (a result is never rewritten again)."""
    if not mounts:
        return text
    alternatives = "|".join(re.escape(p.rstrip("/")) for p in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.-])({alternatives})(?=/|$|[\s:;,])")
    local = {p.rstrip("/"): str(d) for p, d in mounts.items()}
    return pattern.sub(lambda m: local[m.group(1)], text)


def _below_ephemeral_range() -> itertools.count[int]:
    """Ports below the kernel's ephemeral range, so that no client connection of the many
    processes a scenario runs can take a port between its allocation and its bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start = max(10_000, low - 12_000) + (os.getpid() % 200) * 50
    return itertools.count(start)


_NEXT_PORT = _below_ephemeral_range()


def free_port() -> int:
    """A port that is bindable now and handed out once per process."""
    for port in _NEXT_PORT:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable: itertools.count never ends")


def localize(template: PodTemplate, ordinal: int, root: Path, kubeconfig: Path) -> LocalPod:
    """One replica of the template, rewritten to run on this machine (module docstring)."""
    name = f"{template.statefulset}-{ordinal}"
    directory = root / name
    all_ports = {p for c in template.containers for p in c.ports}
    all_ports |= {probe.port for c in template.containers for probe in c.probes}
    pod = LocalPod(
        name=name,
        namespace=template.namespace,
        labels=dict(template.labels),
        directory=directory,
        ports={port: free_port() for port in sorted(all_ports)},
    )
    fields = {"metadata.name": name, "metadata.namespace": template.namespace}
    fields["status.podIP"] = "127.0.0.1"
    for container in template.containers:
        mounts = {path: directory / "volumes" / volume for volume, path in container.mounts}
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)

        def rewrite(text: str, mounts: dict[str, Path] = mounts) -> str:
            text = _LOCAL_HOSTS.sub("127.0.0.1", text)
            text = re.sub(
                r"127\.0\.0\.1:(\d+)",
                lambda m: f"127.0.0.1:{pod.ports.get(int(m.group(1)), int(m.group(1)))}",
                text,
            )
            return _rewrite_paths(text, mounts)

        env = {}
        for key, value in container.env:
            ref = re.fullmatch(r"<fieldRef:(.+)>", value)
            env[key] = fields.get(ref.group(1), "") if ref else rewrite(value)
        env["KUBECONFIG"] = str(kubeconfig)
        pod.containers[container.name] = LocalContainer(
            name=container.name,
            args=[rewrite(arg) for arg in container.args],
            env=env,
            probes=tuple(_localize_probe(probe, pod) for probe in container.probes),
            mounts=mounts,
            ports=container.ports,
            rewrite=rewrite,
            native_sidecar=container.native_sidecar,
        )
    return pod


def _localize_probe(probe: Probe, pod: LocalPod) -> Probe:
    """An exec probe's ``/dev/tcp/127.0.0.1/PORT`` -> the pod's local port."""
    if not probe.command:
        return probe

    def local(match: re.Match[str]) -> str:
        return f"/dev/tcp/127.0.0.1/{pod.local_port(int(match.group(1)))}"

    return dataclasses.replace(
        probe, command=tuple(_DEV_TCP.sub(local, part) for part in probe.command)
    )
