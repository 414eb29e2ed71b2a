"""A real Keycloak pod run by the kubelet emulator of tests/e2e (issue 16).

One pod rendered from the real manifests (``k8s/``, one replica): the ``keycloak`` container
is the real ``kc.sh start --optimized`` with the manifest's args and environment, the
``sidecar`` the real sidecar as the native sidecar, talking to the API double; the kubelet
emulator runs the manifest's probes (the fail-open exec startup and liveness probes, the
HTTP readiness probe) and restarts the container as the kubelet would.  Time scale 3: every
period, grace and back-off of the manifest (and every duration of the sidecar) divided by 3;
Keycloak's own boot and shutdown run in real time.

What the cluster provides and the emulator cannot is supplied as a real pod would get it:
the Secrets (database and bootstrap-admin credentials), the ``keycloak-build-options``
ConfigMap (read from ``k8s/base/keycloak-config.yaml``), the Service ``postgres-service``
(the suite's PostgreSQL on 127.0.0.1), the pod IP (its own loopback address, for JGroups;
``$(POD_IP)`` expanded as the kubelet does) and the port mapping (``KC_HTTP_PORT`` and
friends: the emulator maps each containerPort to a free local port).  The container's memory
limit is replaced by its heap: 192 MiB, what kc.sh's 70 % gives a limit of about 275 MiB.

The pod's database is a copy of the pair's (no migration; a JGroups cluster of its own).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path

import yaml
from harness import Cluster, Scenario
from manifest import K8S, LocalPod
from realkc_cluster import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DB_PASSWORD,
    DB_USER,
    OOM_HEAP_OPTIONS,
    USER_JAVA_OPTS,
    RealCluster,
    exhaust_heap,
)

POD = "keycloak-0"
SCALE = 3.0
POD_IP = "127.0.0.11"
#: cluster seconds (real x SCALE) for a real boot on a loaded 2-core machine
BOOT_CLUSTER_SECONDS = 300 * SCALE
#: a liveness kill: 3 failures 10 s apart, + grace 60 s for a JVM that ignores SIGTERM
KILL_CLUSTER_SECONDS = 3 * 10 + 60 + 30 * SCALE


def build_options() -> dict[str, str]:
    """The keycloak-build-options ConfigMap (envFrom of both Keycloak containers)."""
    text = (K8S / "base" / "keycloak-config.yaml").read_text(encoding="utf-8")
    for document in yaml.safe_load_all(text):
        if document and document.get("kind") == "ConfigMap":
            return {str(k): str(v) for k, v in document["data"].items()}
    raise AssertionError("no ConfigMap in keycloak-config.yaml")


def expand_dependent(env: dict[str, str]) -> dict[str, str]:
    """``$(VAR)`` of an earlier variable expanded, as the kubelet does (``$$`` escapes)."""
    done: dict[str, str] = {}
    for key, value in env.items():
        done[key] = re.sub(
            r"\$\$|\$\((\w+)\)",
            lambda m: "$" if m.group(0) == "$$" else done.get(m.group(1), m.group(0)),
            value,
        )
    return done


class RealKeycloakPod(Cluster):
    """The e2e harness's cluster with the real kc.sh as the ``keycloak`` container."""

    def __init__(self, scenario: Scenario, root: Path, real: RealCluster, database: str) -> None:
        super().__init__(scenario, root)
        self.real = real
        self.database = database

    def _keycloak_command(self, pod: LocalPod) -> Callable[[int], tuple[list[str], dict[str, str]]]:
        spec = pod.containers["keycloak"]
        kc_sh = str(self.real.home / "bin" / "kc.sh")

        def command(boot: int) -> tuple[list[str], dict[str, str]]:
            env = {
                **{k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ},
                **build_options(),
                **spec.env,
                "POD_IP": POD_IP,
                "KC_DB_URL_HOST": "127.0.0.1",
                "KC_DB_URL_PORT": str(self.real.postgres.port),
                "KC_DB_URL_DATABASE": self.database,
                "KC_DB_USERNAME": DB_USER,
                "KC_DB_PASSWORD": DB_PASSWORD,
                "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
                "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "KC_HTTP_PORT": str(pod.local_port(8080)),
                "KC_HTTPS_PORT": str(pod.local_port(8443)),
                "KC_HTTP_MANAGEMENT_PORT": str(pod.local_port(9000)),
            }
            env.pop("KUBECONFIG", None)
            env = expand_dependent(env)
            if boot == 0:
                env["JAVA_OPTS"] = USER_JAVA_OPTS  # the JVM survives an OutOfMemoryError
            else:
                env["JAVA_OPTS_KC_HEAP"] = OOM_HEAP_OPTIONS  # kc.sh's defaults: it exits
            return [kc_sh, *spec.args], env

        return command


def keycloak_url(c: Cluster) -> str:
    return f"http://127.0.0.1:{c.pods[POD].local.local_port(8080)}"


async def restarted_by_the_emulator(c: Cluster) -> None:
    """OOM with the JVM surviving: liveness kill; then OOM with kc.sh's defaults: an exit."""
    await c.wait_for("ready", lambda: c.ready(POD), within_seconds=BOOT_CLUSTER_SECONDS)
    await asyncio.to_thread(exhaust_heap, keycloak_url(c))
    await c.wait_for(
        "restarted once", lambda: c.restarts(POD) == 1, within_seconds=KILL_CLUSTER_SECONDS * 2
    )
    kill = c.timeline.of("kill", POD, "keycloak")
    assert [r.detail for r in kill] == ["liveness probe failed 3x"], c.timeline.render()
    await c.wait_for("ready again", lambda: c.ready(POD), within_seconds=BOOT_CLUSTER_SECONDS)
    await asyncio.to_thread(exhaust_heap, keycloak_url(c))
    await c.wait_for(
        "restarted twice", lambda: c.restarts(POD) == 2, within_seconds=KILL_CLUSTER_SECONDS * 2
    )
    exits = c.timeline.of("exit", POD, "keycloak")
    assert [r.detail for r in exits] == ["exited code=3"], c.timeline.render()
    await c.wait_for(
        "ready a third time", lambda: c.ready(POD), within_seconds=BOOT_CLUSTER_SECONDS
    )
