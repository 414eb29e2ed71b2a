"""The image recipe and the Kubernetes manifests through the validators CI installs.

``kubectl kustomize`` renders the base, each overlay and the monitoring kustomization;
every rendered object is validated strictly against the Kubernetes 1.34 schemas
(kubernetes-validate), scanned by checkov and checked for the properties the sidecar's
design depends on; the sidecar's own ``--check-config`` is run with exactly the
arguments and environment the rendered manifests give it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_tools import ROOT, TOOLS_BIN, describe, run, tool

from sidecar.settings import add_arguments, load_settings, parse_duration

pytestmark = pytest.mark.tools

KUBERNETES_VERSION = "1.34.0"
KEYCLOAK_DB_LOCK_WAIT_SECONDS = 900
SIDECAR_PORT = 9095
TARGETS = ["k8s", "k8s/overlays/readiness-gate", "k8s/overlays/api-log-source"]
# Sample values for the downward API, as the kubelet would resolve them.
FIELD_SAMPLES = {
    "metadata.name": "keycloak-0",
    "metadata.namespace": "keycloak",
    "status.podIP": "10.0.0.7",
}
Doc = dict[str, Any]


def kustomize(directory: Path) -> list[Doc]:
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, describe(result)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {target: kustomize(ROOT / target) for target in TARGETS}


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(pod_spec: Doc, name: str) -> Doc:
    """A container or an init container (the sidecar is a native sidecar)."""
    matches = [c for c in all_containers(pod_spec) if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name!r}"
    return matches[0]


def keycloak_pod(docs: list[Doc]) -> Doc:
    spec: Doc = find(docs, "StatefulSet", "keycloak")["spec"]["template"]["spec"]
    return spec


def all_containers(pod_spec: Doc) -> Iterator[Doc]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def write_docs(path: Path, docs: list[Doc]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --- rendering and schemas ---------------------------------------------------------------


def test_base_renders_the_cluster_of_the_story(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["k8s"]
    assert find(docs, "StatefulSet", "keycloak")["spec"]["replicas"] == 2
    ports = {
        name: [(p["port"], p["targetPort"]) for p in find(docs, "Service", name)["spec"]["ports"]]
        for name in ("keycloak-http-service", "keycloak-https-service", "postgres-service")
    }
    assert ports == {
        "keycloak-http-service": [(80, "http")],
        "keycloak-https-service": [(443, "https")],
        "postgres-service": [(5432, "postgres")],
    }
    keycloak = container(keycloak_pod(docs), "keycloak")
    named = {p["name"]: p["containerPort"] for p in keycloak["ports"]}
    assert (named["http"], named["https"]) == (8080, 8443)
    discovery = find(docs, "Service", "keycloak-discovery")["spec"]
    assert discovery["clusterIP"] == "None"
    assert discovery["publishNotReadyAddresses"] is True
    claims = find(docs, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "keycloak"
    }


@pytest.mark.parametrize("target", [*TARGETS, "k8s/monitoring"])
def test_renders_and_validates_strictly(target: str, tmp_path: Path) -> None:
    docs = kustomize(ROOT / target)
    # The Prometheus Operator's custom resources have no schema in kubernetes-validate.
    core = [d for d in docs if d["apiVersion"].split("/")[0] != "monitoring.coreos.com"]
    assert core, "nothing to validate"
    result = run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
            str(write_docs(tmp_path / "rendered.yaml", core)),
        ]
    )
    assert result.returncode == 0, describe(result)


def test_strict_validation_catches_a_misspelled_field(
    tmp_path: Path, rendered: dict[str, list[Doc]]
) -> None:
    statefulset = json.loads(json.dumps(find(rendered["k8s"], "StatefulSet", "keycloak")))
    probe = container(statefulset["spec"]["template"]["spec"], "keycloak")["livenessProbe"]
    probe["periodSecondz"] = probe.pop("periodSeconds")
    result = run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
            str(write_docs(tmp_path / "bad.yaml", [statefulset])),
        ]
    )
    assert result.returncode != 0
    assert "periodSecondz" in result.stdout + result.stderr


# --- security scanners and linters -------------------------------------------------------


def test_checkov_passes_on_every_rendering(tmp_path: Path) -> None:
    files = []
    for index, target in enumerate([*TARGETS, "k8s/monitoring"]):
        files += [
            "-f",
            str(write_docs(tmp_path / f"render-{index}.yaml", kustomize(ROOT / target))),
        ]
    report = checkov([*files, "--framework", "kubernetes"])
    assert report["failed"] == 0, report["failures"]
    assert report["passed"] > 100


def test_checkov_passes_on_the_dockerfile() -> None:
    report = checkov(["-f", str(ROOT / "Dockerfile"), "--framework", "dockerfile"])
    assert report["failed"] == 0, report["failures"]
    assert report["passed"] > 30


def checkov(args: list[str], cwd: Path | None = None) -> dict[str, Any]:
    # Away from the repository root unless asked: .checkov.yaml there adds its own targets.
    result = run(
        [tool("checkov"), "--skip-download", "--quiet", "--compact", "-o", "json", *args],
        cwd=cwd or Path(tempfile.gettempdir()),
        timeout_seconds=180,
        env={**os.environ, "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode in (0, 1), describe(result)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summary: dict[str, Any] = {"passed": 0, "failed": 0, "failures": [], "frameworks": set()}
    for report in reports:
        summary["frameworks"].add(report["check_type"])
        summary["passed"] += report["summary"]["passed"]
        summary["failed"] += report["summary"]["failed"]
        summary["failures"] += [
            (c["check_id"], c["resource"], c.get("file_path"))
            for c in report["results"]["failed_checks"]
        ]
    return summary


def test_checkov_with_the_repository_config() -> None:
    """Plain `checkov` at the root (.checkov.yaml): kustomize renderings and Dockerfile."""
    tool("kubectl")
    report = checkov([], cwd=ROOT)
    assert report["failed"] == 0, report["failures"]
    assert report["frameworks"] == {"kustomize", "dockerfile"}


def test_every_checkov_skip_is_justified() -> None:
    pattern = re.compile(r"checkov(?:\.io/skip\d+:\s*\"?|:skip=)(\S+?)\s*[=:]\s*(.*)")
    skips = []
    for path in [*(ROOT / "k8s").rglob("*.yaml"), ROOT / "Dockerfile"]:
        skips += [(path.name, *m) for m in pattern.findall(path.read_text())]
    assert len(skips) >= 4, f"expected the known skips, found {skips}"
    for name, check_id, reason in skips:
        assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check_id), (name, check_id)
        assert len(reason.strip()) > 40, f"{name}: skip {check_id} needs a real reason"


def test_hadolint_is_clean() -> None:
    result = run([tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, describe(result)


def test_hadolint_would_catch_a_sloppy_dockerfile(tmp_path: Path) -> None:
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    result = run([tool("hadolint"), str(sloppy)])
    assert result.returncode != 0
    assert "DL3008" in result.stdout  # unpinned apt packages


# --- what the design relies on -----------------------------------------------------------


def _probe_target(probe: Doc) -> tuple[str, int]:
    """(path, port) of an httpGet probe, or of the fail-open exec probe's request."""
    if "httpGet" in probe:
        return probe["httpGet"]["path"], probe["httpGet"]["port"]
    script = probe["exec"]["command"][-1]
    port = re.search(r"/dev/tcp/127\.0\.0\.1/(\d+)", script)
    path = re.search(r"GET (\S+) HTTP", script)
    assert port and path, script
    return path.group(1), int(port.group(1))


def assert_native_sidecar(pod: Doc) -> None:
    """The sidecar is an init container with restartPolicy Always (Kubernetes >= 1.29)."""
    sidecar = container(pod, "sidecar")
    assert sidecar in pod.get("initContainers", []), "not a native sidecar"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"


def assert_probes_point_at_the_sidecar(keycloak: Doc) -> None:
    paths = {
        kind: _probe_target(keycloak[kind])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    # startup and liveness fail open (exec, only a 503 fails); readiness fails closed
    assert [k for k in ("startupProbe", "livenessProbe") if "exec" in keycloak[k]] == [
        "startupProbe",
        "livenessProbe",
    ]
    assert "httpGet" in keycloak["readinessProbe"]
    assert paths == {
        "startupProbe": ("/startupz", SIDECAR_PORT),
        "livenessProbe": ("/livez", SIDECAR_PORT),
        "readinessProbe": ("/readyz", SIDECAR_PORT),
    }


def flag_value(args: list[str], flag: str, default: str) -> str:
    for arg in args:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return default


@pytest.mark.parametrize("target", TARGETS)
def test_startup_budget_covers_the_sidecar_deadline_and_the_lock_wait(
    target: str, rendered: dict[str, list[Doc]]
) -> None:
    pod = keycloak_pod(rendered[target])
    keycloak, sidecar = container(pod, "keycloak"), container(pod, "sidecar")
    assert_probes_point_at_the_sidecar(keycloak)
    startup = keycloak["startupProbe"]
    budget_seconds = startup["periodSeconds"] * startup["failureThreshold"]
    deadline_seconds = parse_duration(flag_value(sidecar["args"], "--startup-deadline", "20m"))
    assert budget_seconds > deadline_seconds > KEYCLOAK_DB_LOCK_WAIT_SECONDS
    # The sidecar's own probes must not follow Keycloak's verdict: /healthz is its own.
    for kind in ("startupProbe", "livenessProbe"):
        assert sidecar[kind]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" not in sidecar, "Keycloak's /readyz covers a silent sidecar"
    assert_native_sidecar(pod)


@pytest.mark.parametrize("target", TARGETS)
def test_a_stuck_sidecar_is_restarted_long_before_keycloak_could_be(
    target: str, rendered: dict[str, list[Doc]]
) -> None:
    """The sidecar's own liveness gives up on a stalled worker (--worker-stall-timeout plus
    its confirmation) before Keycloak's own live endpoint failing would be acted on
    (--liveness-grace plus Keycloak's confirmation): a stale probe result never kills."""
    pod = keycloak_pod(rendered[target])
    keycloak, sidecar = container(pod, "keycloak"), container(pod, "sidecar")
    own = sidecar["livenessProbe"]
    own_seconds = own["periodSeconds"] * own["failureThreshold"] + own["timeoutSeconds"]
    stall_seconds = parse_duration(flag_value(sidecar["args"], "--worker-stall-timeout", "45s"))
    grace_seconds = parse_duration(flag_value(sidecar["args"], "--liveness-grace", "60s"))
    live = keycloak["livenessProbe"]
    keycloak_seconds = live["periodSeconds"] * live["failureThreshold"]
    assert stall_seconds + own_seconds < grace_seconds + keycloak_seconds
    for kind in ("startupProbe", "livenessProbe"):
        script = keycloak[kind]["exec"]["command"][-1]
        read_timeout = int(re.search(r"read -r -t (\d+)", script).group(1))  # type: ignore[union-attr]
        assert keycloak[kind]["timeoutSeconds"] > read_timeout


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_hardened(target: str, rendered: dict[str, list[Doc]]) -> None:
    for workload in (d for d in rendered[target] if d["kind"] == "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for item in all_containers(pod):
            context = item["securityContext"]
            where = f"{workload['metadata']['name']}/{item['name']}"
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert {"requests", "limits"} <= item["resources"].keys(), where


@pytest.mark.parametrize("target", TARGETS)
def test_service_account_and_log_sharing(target: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[target]
    pod = keycloak_pod(docs)
    find(docs, "ServiceAccount", pod["serviceAccountName"])
    binding = find(docs, "RoleBinding", "keycloak-sidecar")
    assert {
        "kind": "ServiceAccount",
        "name": pod["serviceAccountName"],
        "namespace": "keycloak",
    } in binding["subjects"]
    sidecar = container(pod, "sidecar")
    downward = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in sidecar["env"]
        if "valueFrom" in e
    }
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    uses_file = flag_value(sidecar["args"], "--log-source", "file") == "file"
    mounts = {m["name"]: m for m in sidecar.get("volumeMounts", [])}
    assert ("keycloak-log" in mounts) is uses_file
    if uses_file:
        assert mounts["keycloak-log"]["readOnly"] is True
        keycloak_env = {e["name"]: e.get("value") for e in container(pod, "keycloak")["env"]}
        log_file = flag_value(sidecar["args"], "--log-file", "")
        assert keycloak_env["KC_LOG_FILE"] == log_file
        assert log_file.startswith(mounts["keycloak-log"]["mountPath"] + "/")


@pytest.mark.parametrize(
    ("target", "patch"),
    [
        ("k8s/overlays/readiness-gate", "role-readiness-gate-patch.yaml"),
        ("k8s/overlays/api-log-source", "role-log-source-patch.yaml"),
    ],
)
def test_overlay_grants_exactly_the_rbac_patch(
    target: str, patch: str, rendered: dict[str, list[Doc]]
) -> None:
    base_rules = find(rendered["k8s"], "Role", "keycloak-sidecar")["rules"]
    overlay_rules = find(rendered[target], "Role", "keycloak-sidecar")["rules"]
    added = [rule for rule in overlay_rules if rule not in base_rules]
    assert added, "the overlay grants nothing extra"
    assert added == patch_rules(ROOT / "k8s" / "rbac" / patch)


def patch_rules(path: Path) -> list[Doc]:
    """Rules a Role patch adds: a JSON6902 list of add operations or a partial Role."""
    content = yaml.safe_load(path.read_text())
    if isinstance(content, list):
        return [op["value"] for op in content if op["op"] == "add"]
    rules: list[Doc] = content["rules"]
    return rules


def test_readiness_gate_overlay_sets_gate_and_condition(rendered: dict[str, list[Doc]]) -> None:
    pod = keycloak_pod(rendered["k8s/overlays/readiness-gate"])
    gates = [g["conditionType"] for g in pod["readinessGates"]]
    env = {e["name"]: e.get("value") for e in container(pod, "sidecar")["env"]}
    assert gates == [env["SIDECAR_READINESS_GATE_CONDITION"]]
    assert "readinessGates" not in keycloak_pod(rendered["k8s"])


def test_podmonitor_scrapes_the_sidecar_port(rendered: dict[str, list[Doc]]) -> None:
    monitor = find(kustomize(ROOT / "k8s" / "monitoring"), "PodMonitor", "keycloak-sidecar")
    pod_template = find(rendered["k8s"], "StatefulSet", "keycloak")["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_template["metadata"]["labels"].items()
    sidecar = container(pod_template["spec"], "sidecar")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in sidecar["ports"]}


# --- the sidecar accepts what the manifests give it ----------------------------------------


def sidecar_invocation(pod: Doc) -> tuple[list[str], dict[str, str]]:
    """Args and env of the sidecar container, downward API resolved to sample values."""
    sidecar = container(pod, "sidecar")
    env = {}
    for item in sidecar.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = FIELD_SAMPLES[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return list(sidecar.get("command", [])[1:]) + list(sidecar.get("args", [])), env


def check_config(args: list[str], env: dict[str, str]) -> None:
    if importlib.util.find_spec("sidecar.__main__") is None:
        pytest.skip("sidecar/__main__.py (--check-config) is not written yet")
    full_env = {"PATH": os.environ.get("PATH", ""), **env}
    result = run(
        [sys.executable, "-m", "sidecar", "--check-config", *args], env=full_env, timeout_seconds=60
    )
    assert result.returncode == 0, describe(result)


@pytest.mark.parametrize("target", TARGETS)
def test_sidecar_accepts_its_manifest_configuration(
    target: str, rendered: dict[str, list[Doc]]
) -> None:
    check_config(*sidecar_invocation(keycloak_pod(rendered[target])))


def test_check_config_rejects_a_broken_manifest_configuration(
    rendered: dict[str, list[Doc]],
) -> None:
    args, env = sidecar_invocation(keycloak_pod(rendered["k8s"]))
    if importlib.util.find_spec("sidecar.__main__") is None:
        pytest.skip("sidecar/__main__.py (--check-config) is not written yet")
    result = run(
        [sys.executable, "-m", "sidecar", "--check-config", *args, "--listen=0.0.0.0:8080"],
        env={"PATH": os.environ.get("PATH", ""), **env},
    )
    assert result.returncode == 2, describe(result)


@pytest.mark.parametrize("target", TARGETS)
def test_settings_parse_the_manifest_configuration(
    target: str, rendered: dict[str, list[Doc]]
) -> None:
    """In-process twin of --check-config: the same flags through sidecar.settings."""
    args, env = sidecar_invocation(keycloak_pod(rendered[target]))
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    settings = load_settings(vars(parser.parse_args(args)), env)
    assert settings.listen == ("0.0.0.0", SIDECAR_PORT)



def test_sidecar_port_is_not_open_to_every_namespace() -> None:
    """Port 9095: Prometheus's namespace only, never an empty (any) selector (issue 15)."""
    docs = list(yaml.safe_load_all((ROOT / "k8s/base/networkpolicy.yaml").read_text()))
    policy = next(d for d in docs if d["metadata"]["name"] == "keycloak")
    rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if any(port["port"] == SIDECAR_PORT for port in rule.get("ports", []))
    ]
    assert rules
    for rule in rules:
        assert rule.get("from"), "no 'from': open to everyone"
        for peer in rule["from"]:
            assert peer.get("namespaceSelector", {}).get("matchLabels"), peer
            assert peer.get("podSelector", {}).get("matchLabels"), peer
