"""The copy-paste integrations of k8s/examples/: each yields a pod that works with the sidecar.

No Operator, no Helm and no chart can run here, so each route is turned into the pod it
yields by the real tool where one exists (kustomize for the strategic-merge patches) and
otherwise by a small model of how the other side places the values, written from its
source (read with the search tool, commits named below):

- Keycloak Operator: ``KeycloakDeploymentDependentResource.createBaseDeployment``
  (keycloak/keycloak operator module @ ee99112b): the pod template is the basis, the first
  container is Keycloak (renamed ``keycloak``, image forced, args filled when empty, ports
  added), each probe is kept when set and only a missing one gets the Operator's default.
- codecentric keycloakx: ``templates/statefulset.yaml`` and ``rbac.yaml`` (@ 03038801,
  9b808d81): probe values are templated strings rendered whole, only with ``health.enabled``
  (readiness also needs ``metrics.enabled``); extra* strings are appended to the lists.
- Bitnami keycloak: ``templates/statefulset.yaml``, ``role.yaml``, ``rolebinding.yaml``
  (@ 98617580, 06a7f9ae, 00643017): ``custom*Probe`` replace the chart's probes whole;
  ``initContainers`` follow ``prepare-write-dirs``; the Role adds pods get/list.

Then every pod is checked the same way: one handler per probe, the native sidecar with its
own ``/healthz`` probes, the shared log volume, the Keycloak probes asking the sidecar with
the same commands as k8s/base/keycloak.yaml, strict schema validation, and the sidecar's
settings parser accepting the arguments.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_tools import ROOT, describe, run, tool
from sync_probe_commands import synced

from sidecar.settings import add_arguments, load_settings

pytestmark = pytest.mark.tools

Doc = dict[str, Any]
EXAMPLES = ROOT / "k8s" / "examples"
IMAGE = "registry.example.com/keycloak-sidecar:0.1.0"
KUBERNETES_VERSION = "1.34.0"
SIDECAR_PORT = 9095
PROBE_KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
KEYCLOAK_PATHS = {"startupProbe": "/startupz", "livenessProbe": "/livez"}
CRD_FIELDS = json.loads((ROOT / "tests" / "data" / "keycloak-operator-crd-fields.json").read_text())
SAMPLES = {"metadata.name": "keycloak-0", "metadata.namespace": "keycloak"}


# --- what a chart or the Operator starts from ----------------------------------------------


def chart_statefulset() -> Doc:
    """A StatefulSet as Bitnami's chart makes it: tcpSocket liveness, delays, its own account."""
    labels = {"app": "keycloak"}
    keycloak = {
        "name": "keycloak",
        "image": "quay.io/keycloak/keycloak:26.4.10",
        "ports": [{"name": "http", "containerPort": 8080}],
        "startupProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 30},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 300},
        "readinessProbe": {
            "httpGet": {"path": "/realms/master", "port": "http"},
            "initialDelaySeconds": 30,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "keycloak"},
        "spec": {
            "serviceName": "keycloak-headless",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": "keycloak-chart", "containers": [keycloak]},
            },
        },
    }


def statefulset_of(pod_spec: Doc, replicas: int = 2) -> Doc:
    labels = {"app.kubernetes.io/name": "keycloak"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "keycloak", "namespace": "keycloak"},
        "spec": {
            "replicas": replicas,
            "serviceName": "keycloak-headless",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def kustomize_patch(name: str, directory: Path, base: Doc | None = None) -> Doc:
    (directory / "statefulset.yaml").write_text(yaml.safe_dump(base or chart_statefulset()))
    (directory / name).write_text((EXAMPLES / name).read_text())
    kustomization = {"resources": ["statefulset.yaml"], "patches": [{"path": name}]}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, describe(result)
    (statefulset,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    return statefulset


OPERATOR_DEFAULT_PROBES = {
    "readinessProbe": ("/health/ready", 10, 3),
    "livenessProbe": ("/health/live", 10, 3),
    "startupProbe": ("/health/started", 1, 600),
}


def operator_statefulset(keycloak_cr: Doc) -> Doc:
    """The StatefulSet the Keycloak Operator makes from a CR (model of its merge)."""
    spec = keycloak_cr["spec"]
    template = copy.deepcopy(spec.get("unsupported", {}).get("podTemplate", {}))
    pod = template.setdefault("spec", {})
    containers = pod.setdefault("containers", [])
    if not containers:
        containers.append({})
    keycloak = containers[0]
    keycloak["name"] = "keycloak"
    keycloak["image"] = spec.get("image", "quay.io/keycloak/keycloak:26.4.10")
    keycloak["args"] = ["-Djgroups.bind.address=$(POD_IP)", *keycloak.get("args", ["start"])]
    for kind, (path, period, threshold) in OPERATOR_DEFAULT_PROBES.items():
        keycloak.setdefault(
            kind,
            {
                "httpGet": {"path": path, "port": 9000, "scheme": "HTTP"},
                "periodSeconds": period,
                "failureThreshold": threshold,
            },
        )
    keycloak.setdefault("ports", []).extend(
        [
            {"name": "https", "containerPort": 8443, "protocol": "TCP"},
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "management", "containerPort": 9000, "protocol": "TCP"},
        ]
    )
    keycloak.setdefault("env", []).extend(
        {"name": "KC_" + o["name"].upper().replace("-", "_"), "value": o["value"]}
        for o in spec.get("additionalOptions", [])
    )
    pod.setdefault("restartPolicy", "Always")
    return statefulset_of(pod, spec.get("instances", 1))


def tpl_yaml(text: str) -> Any:
    """A keycloakx templated string; the examples use no template expressions."""
    assert "{{" not in text, "the model does not evaluate Helm templates"
    return yaml.safe_load(text) if text.strip() else None


def keycloakx_release(values: Doc) -> list[Doc]:
    """The StatefulSet, Role and RoleBinding keycloakx renders (release "keycloak")."""
    account = values["serviceAccount"].get("name") or "keycloak-keycloakx"
    keycloak: Doc = {
        "name": "keycloak",
        "image": "quay.io/keycloak/keycloak:26.4.5",
        "env": [
            {"name": "KC_HTTP_RELATIVE_PATH", "value": "/auth"},
            {"name": "KC_HEALTH_ENABLED", "value": "true"},
            *(tpl_yaml(values.get("extraEnv", "")) or []),
        ],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "http-internal", "containerPort": 9000, "protocol": "TCP"},
        ],
        "volumeMounts": tpl_yaml(values.get("extraVolumeMounts", "")) or [],
    }
    if values["health"]["enabled"]:
        keycloak["livenessProbe"] = tpl_yaml(values["livenessProbe"])
        if values["metrics"]["enabled"]:
            keycloak["readinessProbe"] = tpl_yaml(values["readinessProbe"])
        keycloak["startupProbe"] = tpl_yaml(values["startupProbe"])
    pod: Doc = {
        "serviceAccountName": account,
        "restartPolicy": "Always",
        "containers": [keycloak, *(tpl_yaml(values.get("extraContainers", "")) or [])],
        "volumes": tpl_yaml(values.get("extraVolumes", "")) or [],
    }
    init = tpl_yaml(values.get("extraInitContainers", "")) or []
    if init:
        pod["initContainers"] = init
    docs = [statefulset_of(pod, values["replicas"])]
    if values["rbac"]["create"] and values["rbac"]["rules"]:
        docs += role_and_binding("keycloak-keycloakx", values["rbac"]["rules"], account)
    return docs


BITNAMI_WRITABLE_DIRS = {
    "/tmp": "tmp-dir",
    "/bitnami/keycloak": "app-volume-dir",
    "/opt/bitnami/keycloak/conf": "app-conf-dir",
    "/opt/bitnami/keycloak/lib/quarkus": "app-quarkus-dir",
    "/opt/bitnami/keycloak/data": "app-data-dir",
    "/opt/bitnami/keycloak/providers": "app-providers-dir",
}


def bitnami_release(values: Doc) -> list[Doc]:
    """The StatefulSet, Role and RoleBinding Bitnami's chart renders (release "keycloak")."""
    keycloak: Doc = {
        "name": "keycloak",
        "image": "docker.io/bitnami/keycloak:26.3.3",
        "env": [{"name": "KEYCLOAK_HTTP_RELATIVE_PATH", "value": "/"}, *values["extraEnvVars"]],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "discovery", "containerPort": 7800},
        ],
        "startupProbe": values["customStartupProbe"],
        "livenessProbe": values["customLivenessProbe"],
        "readinessProbe": values["customReadinessProbe"],
        "volumeMounts": [
            {"name": "empty-dir", "mountPath": path, "subPath": sub}
            for path, sub in BITNAMI_WRITABLE_DIRS.items()
        ]
        + values["extraVolumeMounts"],
    }
    prepare = {
        "name": "prepare-write-dirs",
        "image": "docker.io/bitnami/keycloak:26.3.3",
        "command": ["/bin/bash"],
        "args": ["-ec", "cp -r --preserve=mode /opt/bitnami/keycloak/lib/quarkus /emptydir/"],
        "volumeMounts": [{"name": "empty-dir", "mountPath": "/emptydir"}],
    }
    pod: Doc = {
        "serviceAccountName": "keycloak",
        "automountServiceAccountToken": values.get("automountServiceAccountToken", False),
        "initContainers": [prepare, *values.get("initContainers", [])],
        "containers": [keycloak, *values.get("sidecars", [])],
        "volumes": [{"name": "empty-dir", "emptyDir": {}}, *values["extraVolumes"]],
    }
    docs = [statefulset_of(pod, values["replicaCount"])]
    if values["serviceAccount"]["create"] and values["rbac"]["create"]:
        rules = [
            *values["rbac"].get("rules", []),
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ]
        docs += role_and_binding("keycloak", rules, "keycloak")
    return docs


def role_and_binding(name: str, rules: list[Doc], account: str) -> list[Doc]:
    meta = {"name": name, "namespace": "keycloak"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "keycloak"}],
        },
    ]


def load(name: str) -> Doc:
    doc: Doc = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


ROUTES: dict[str, Callable[[Path], list[Doc]]] = {
    "sidecar-patch.yaml": lambda d: [kustomize_patch("sidecar-patch.yaml", d)],
    "wildfly-legacy-patch.yaml": lambda d: [kustomize_patch("wildfly-legacy-patch.yaml", d)],
    "keycloak-operator.yaml": lambda _: [operator_statefulset(load("keycloak-operator.yaml"))],
    "keycloakx-values.yaml": lambda _: keycloakx_release(load("keycloakx-values.yaml")),
    "bitnami-values.yaml": lambda _: bitnami_release(load("bitnami-values.yaml")),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    return {
        name: route(tmp_path_factory.mktemp(name.removesuffix(".yaml")))
        for name, route in ROUTES.items()
    }


def pod_of(docs: list[Doc]) -> Doc:
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    pod: Doc = statefulset["spec"]["template"]["spec"]
    return pod


def named(items: list[Doc], name: str) -> Doc:
    matches = [c for c in items if c["name"] == name]
    assert len(matches) == 1, f"expected one {name!r} in {[c['name'] for c in items]}"
    return matches[0]


def all_containers(pod: Doc) -> Iterator[Doc]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def handler_problems(pod: Doc) -> list[str]:
    """Probes with other than exactly one handler (the API server rejects those)."""
    problems = []
    for item in all_containers(pod):
        for kind in PROBE_KINDS:
            if kind in item:
                found = [h for h in HANDLERS if h in item[kind]]
                if len(found) != 1:
                    problems.append(f"{item['name']}.{kind}: {found}")
    return problems


def validate(docs: list[Doc], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)]
    )


# --- every route -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ROUTES)
def test_every_probe_has_exactly_one_handler(name: str, rendered: dict[str, list[Doc]]) -> None:
    assert handler_problems(pod_of(rendered[name])) == []


@pytest.mark.parametrize("name", ROUTES)
def test_keycloak_probes_ask_the_sidecar(name: str, rendered: dict[str, list[Doc]]) -> None:
    keycloak = named(pod_of(rendered[name])["containers"], "keycloak")
    for kind, path in KEYCLOAK_PATHS.items():
        assert keycloak[kind]["exec"]["command"] == expected_command(path), kind
    assert keycloak["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": SIDECAR_PORT}
    for kind in PROBE_KINDS:
        assert "initialDelaySeconds" not in keycloak[kind], f"{kind} keeps the chart's delay"
    startup = keycloak["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > 20 * 60


@pytest.mark.parametrize("name", ROUTES)
def test_sidecar_is_a_native_sidecar_with_its_own_health(
    name: str, rendered: dict[str, list[Doc]]
) -> None:
    pod = pod_of(rendered[name])
    assert "sidecar" not in [c["name"] for c in pod["containers"]]
    sidecar = named(pod["initContainers"], "sidecar")
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == IMAGE
    assert sidecar["ports"] == [{"name": "sidecar", "containerPort": SIDECAR_PORT}]
    for kind in ("startupProbe", "livenessProbe"):
        assert sidecar[kind]["httpGet"] == {"path": "/healthz", "port": "sidecar"}, kind
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in sidecar["env"]}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


@pytest.mark.parametrize("name", ROUTES)
def test_log_volume_is_shared(name: str, rendered: dict[str, list[Doc]]) -> None:
    pod = pod_of(rendered[name])
    sidecar = named(pod["initContainers"], "sidecar")
    keycloak = named(pod["containers"], "keycloak")
    volume = named(pod["volumes"], "keycloak-log")
    assert "emptyDir" in volume
    reader = named(sidecar["volumeMounts"], "keycloak-log")
    writer = named(keycloak["volumeMounts"], "keycloak-log")
    assert reader["readOnly"] is True
    assert not writer.get("readOnly", False)
    assert reader["mountPath"] == writer["mountPath"]
    log_file = flag(sidecar["args"], "--log-file")
    assert log_file.startswith(reader["mountPath"] + "/")
    env = {e["name"]: e.get("value") for e in keycloak.get("env", [])}
    if name != "wildfly-legacy-patch.yaml":  # WildFly writes server.log there by itself
        assert env["KC_LOG_FILE"] == log_file
        assert "file" in env["KC_LOG"].split(",")


@pytest.mark.parametrize("name", ROUTES)
def test_renders_valid_kubernetes_objects(
    name: str, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    result = validate(rendered[name], tmp_path / "rendered.yaml")
    assert result.returncode == 0, describe(result)


@pytest.mark.parametrize("name", ROUTES)
def test_sidecar_accepts_the_arguments(name: str, rendered: dict[str, list[Doc]]) -> None:
    sidecar = named(pod_of(rendered[name])["initContainers"], "sidecar")
    env = {e["name"]: SAMPLES[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in sidecar["env"]}
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    settings = load_settings(vars(parser.parse_args(sidecar["args"])), env)
    assert settings.listen[1] == SIDECAR_PORT


@pytest.mark.parametrize("name", ROUTES)
def test_check_config_accepts_the_arguments(name: str, rendered: dict[str, list[Doc]]) -> None:
    """What a user would run: `keycloak-sidecar --check-config` with the example's args."""
    sidecar = named(pod_of(rendered[name])["initContainers"], "sidecar")
    env = {e["name"]: SAMPLES[e["valueFrom"]["fieldRef"]["fieldPath"]] for e in sidecar["env"]}
    result = run(
        [sys.executable, "-m", "sidecar", "--check-config", *sidecar["args"]],
        env={"PATH": os.environ.get("PATH", ""), **env},
        timeout_seconds=60,
    )
    assert result.returncode == 0, describe(result)


@pytest.mark.parametrize("name", ROUTES)
def test_probe_commands_are_those_of_the_base(name: str, rendered: dict[str, list[Doc]]) -> None:
    """One source of truth: the fail-open commands are k8s/base/keycloak.yaml's."""
    base = base_keycloak_container()
    if "exec" not in base["livenessProbe"]:
        pytest.skip("k8s/base/keycloak.yaml has no fail-open exec probes yet (issue 12)")
    keycloak = named(pod_of(rendered[name])["containers"], "keycloak")
    for kind in KEYCLOAK_PATHS:
        assert keycloak[kind]["exec"] == base[kind]["exec"], (
            f"{kind} differs from k8s/base/keycloak.yaml: run python tests/sync_probe_commands.py"
        )


def test_sync_tool_finds_and_rewrites_every_probe_command() -> None:
    """The sync keeps the examples as they are and rewrites exactly their two commands."""
    current = {path: expected_command(path) for path in KEYCLOAK_PATHS.values()}
    other = {path: ["/bin/sh", "-c", f"echo 'GET {path} HTTP/1.0'"] for path in current}
    for example in EXAMPLES.glob("*.yaml"):
        text = example.read_text()
        assert synced(text, current) == text, example.name
        rewritten = synced(text, other)
        found = [
            json.loads(m.group(2)) for m in re.finditer(r"^(\s*)command: (.*)$", rewritten, re.M)
        ]
        assert sorted(map(tuple, found)) == sorted(map(tuple, other.values())), example.name


# --- the fail-open probe command, run for real ----------------------------------------------


class StatusServer(HTTPServer):
    status = 200


class StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, StatusServer)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is the exit codes."""


def run_probe(path: str, port: int) -> int:
    command = list(expected_command(path))
    command[2] = command[2].replace(f"/{SIDECAR_PORT}", f"/{port}")
    result = run(command, timeout_seconds=20)
    return result.returncode


@pytest.mark.parametrize(("status", "passes"), [(200, True), (503, False), (500, True)])
def test_fail_open_probe_fails_only_on_503(status: int, passes: bool) -> None:
    server = StatusServer(("127.0.0.1", 0), StatusHandler)
    server.status = status
    thread = threading.Thread(target=server.serve_forever, name="status-server", daemon=True)
    thread.start()
    try:
        assert (run_probe("/livez", server.server_address[1]) == 0) is passes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fail_open_probe_passes_when_the_sidecar_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert run_probe("/livez", free_port) == 0


def test_fail_open_probe_passes_when_the_sidecar_does_not_answer() -> None:
    """Connected but silent (a hung sidecar): the 2 s read gives up and the probe passes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        assert run_probe("/startupz", silent.getsockname()[1]) == 0


# --- what each route must get right ------------------------------------------------------


def test_patch_replaces_the_charts_probes_and_keeps_its_account(
    rendered: dict[str, list[Doc]],
) -> None:
    pod = pod_of(rendered["sidecar-patch.yaml"])
    assert pod["serviceAccountName"] == "keycloak-chart"
    keycloak = named(pod["containers"], "keycloak")
    assert "tcpSocket" not in keycloak["livenessProbe"]


def test_a_merging_patch_would_leave_two_handlers(tmp_path: Path) -> None:
    """Without `$patch: replace` the chart's tcpSocket and our exec would both remain."""
    merging = (EXAMPLES / "sidecar-patch.yaml").read_text().replace("$patch: replace", "")
    original = EXAMPLES / "sidecar-patch.yaml"
    (tmp_path / "patch").mkdir()
    directory = tmp_path / "patch"
    (directory / "statefulset.yaml").write_text(yaml.safe_dump(chart_statefulset()))
    (directory / original.name).write_text(merging)
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["statefulset.yaml"], "patches": [{"path": original.name}]})
    )
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, describe(result)
    (statefulset,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    problems = handler_problems(statefulset["spec"]["template"]["spec"])
    assert "keycloak.livenessProbe: ['exec', 'tcpSocket']" in problems


def test_operator_model_fills_in_missing_probes() -> None:
    """The model keeps set probes and adds the Operator's where none is set."""
    cr = load("keycloak-operator.yaml")
    del cr["spec"]["unsupported"]["podTemplate"]["spec"]["containers"][0]["readinessProbe"]
    keycloak = pod_of([operator_statefulset(cr)])["containers"][0]
    assert keycloak["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert "exec" in keycloak["livenessProbe"]


def test_operator_cr_uses_only_fields_of_the_crd() -> None:
    cr = load("keycloak-operator.yaml")
    assert (cr["apiVersion"], cr["kind"]) == (CRD_FIELDS["apiVersion"], CRD_FIELDS["kind"])
    assert unknown_fields(cr["spec"], "spec") == []
    assert cr["spec"]["unsupported"]["podTemplate"]["spec"]["containers"][0]["name"] == "keycloak"


def test_crd_field_check_catches_a_misspelled_field() -> None:
    cr = load("keycloak-operator.yaml")
    cr["spec"]["db"]["hostname"] = cr["spec"]["db"].pop("host")
    assert unknown_fields(cr["spec"], "spec") == ["spec.db.hostname"]


def unknown_fields(value: Any, path: str) -> list[str]:
    fields = CRD_FIELDS["fields"]
    if path in CRD_FIELDS["object_fields"] or path not in fields:
        return []
    if isinstance(value, list):
        return [p for item in value for p in unknown_fields(item, path + "[]")]
    problems = []
    for key, item in value.items():
        child = f"{path}.{key}"
        if key not in fields[path]:
            problems.append(child)
        elif isinstance(item, list) and child + "[]" in fields:
            problems += [p for entry in item for p in unknown_fields(entry, child + "[]")]
        elif isinstance(item, dict):
            problems += unknown_fields(item, child)
    return problems


@pytest.mark.parametrize("name", ["keycloakx-values.yaml", "bitnami-values.yaml"])
def test_chart_rbac_grants_the_sidecars_role(name: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[name]
    pod = pod_of(docs)
    (role,) = [d for d in docs if d["kind"] == "Role"]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    wanted = yaml.safe_load((ROOT / "k8s" / "rbac" / "role.yaml").read_text())["rules"]
    assert all(rule in role["rules"] for rule in wanted)
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert pod.get("automountServiceAccountToken", True) is True


def test_keycloakx_probe_paths_follow_the_relative_path(rendered: dict[str, list[Doc]]) -> None:
    pod = pod_of(rendered["keycloakx-values.yaml"])
    env = {e["name"]: e.get("value") for e in named(pod["containers"], "keycloak")["env"]}
    args = named(pod["initContainers"], "sidecar")["args"]
    relative = env["KC_HTTP_RELATIVE_PATH"]
    for target in ("started", "live", "ready"):
        assert flag(args, f"--probe-{target}-path") == f"{relative}/health/{target}"


# --- one image name ----------------------------------------------------------------------


def test_one_image_name_everywhere() -> None:
    readme = (ROOT / "README.md").read_text()
    documents = [readme, *(path.read_text() for path in (ROOT / "docs").glob("*.md"))]
    built = {tag for text in documents for tag in re.findall(r"build -t (\S+) \.", text)}
    assert built == {IMAGE}
    assert f"podman build -t {IMAGE} ." in (ROOT / "Dockerfile").read_text()
    images = set(re.findall(r"image: (\S*keycloak-sidecar\S*)", readme))
    for path in EXAMPLES.glob("*.yaml"):
        images |= set(re.findall(r"image: (\S*keycloak-sidecar\S*)", path.read_text()))
    assert images == {IMAGE}
    kustomization = yaml.safe_load((ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == "keycloak-sidecar"]
    assert f"{entry['newName']}:{entry['newTag']}" == IMAGE


def test_license_file_is_the_declared_license() -> None:
    declared = re.search(r'license = \{ text = "([^"]+)" \}', (ROOT / "pyproject.toml").read_text())
    assert declared is not None
    assert declared.group(1) == "Apache-2.0"
    assert (
        "Apache License\n                           Version 2.0" in (ROOT / "LICENSE").read_text()
    )
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in (ROOT / "Dockerfile").read_text()


def test_image_healthcheck_asks_the_sidecars_own_health() -> None:
    healthcheck = re.search(r"^HEALTHCHECK .*\n.*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert healthcheck is not None
    assert ":9095/healthz" in healthcheck.group(0)
    assert "/livez" not in healthcheck.group(0)


# --- helpers -----------------------------------------------------------------------------


def fail_open_command(path: str) -> list[str]:
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{SIDECAR_PORT} || exit 0; "
        f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; "
        'read -r -t 2 _ code _ <&3 || exit 0; [ "$code" != 503 ]'
    )
    return ["/bin/bash", "-c", script]


def expected_command(path: str) -> list[str]:
    """The base's command once it has exec probes (issue 12), else the agreed text."""
    base = base_keycloak_container()
    for kind, kind_path in KEYCLOAK_PATHS.items():
        if kind_path == path and "exec" in base[kind]:
            command: list[str] = base[kind]["exec"]["command"]
            return command
    return fail_open_command(path)


def base_keycloak_container() -> Doc:
    for doc in yaml.safe_load_all((ROOT / "k8s" / "base" / "keycloak.yaml").read_text()):
        if doc and doc["kind"] == "StatefulSet":
            return named(doc["spec"]["template"]["spec"]["containers"], "keycloak")
    raise AssertionError("no StatefulSet in k8s/base/keycloak.yaml")


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]
    assert len(values) == 1, f"{name} given {len(values)} times in {args}"
    return values[0]
