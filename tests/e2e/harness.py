"""One scenario's cluster: the API double, the emulated pods, their processes, the timeline.

``Cluster`` builds the pods from the rendered manifest (``manifest.py``), runs each one's
``keycloak`` container as ``fake_keycloak.py`` and its ``sidecar`` container as the real
``python -m sidecar`` with the manifest's args and env, and keeps the API double in step
with what the emulated kubelet sees (pod Running, container ready, restartCount and
containerID, deletion).

Time scale (``docs/e2e.md`` has the table): the kubelet divides the probe numbers by
``scale``; the sidecar gets every duration setting divided by ``scale`` too, as flags
appended to the manifest's args (later flags win), computed from the manifest's value or
the setting's default, so ratios such as "startup budget > startup deadline > DB lock
wait" hold exactly as in the manifest.  Floors keep real latency out of the verdicts:
``--probe-interval`` and ``--probe-timeout`` are at least ``MIN_SIDECAR_PROBE_SECONDS``, and
``--worker-stall-timeout`` (a bound on the real time one worker round takes on a loaded
machine) at least ``MIN_SIDECAR_STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubeapi import KubeApiDouble
from kubelet import ContainerRunner, PodRuntime, Timeline, tail
from manifest import REPO, LocalPod, PodTemplate, localize, render

from sidecar.settings import SPECS, parse_duration

FAKE_KEYCLOAK = Path(__file__).with_name("fake_keycloak.py")
MIN_SIDECAR_PROBE_SECONDS = 0.5
MIN_SIDECAR_STALL_SECONDS = 5.0
#: durations left alone: a poll fallback, not policy (inotify wakes the sidecar at once),
#: and the port's guards, which bound real latency and real load (an idle timeout of 5 s
#: scaled to 0.17 s closes the probes' connections before a loaded machine sends them)
UNSCALED = frozenset(
    {"log_poll_interval_seconds", "http_idle_timeout_seconds", "http_cache_seconds"}
)
POLL_SECONDS = 0.05

Script = dict[str, Any]


def scaled_sidecar_flags(args: list[str], env: Mapping[str, str], scale: float) -> list[str]:
    """Every duration setting of the sidecar, divided by ``scale``, as ``--flag=Nms``."""
    given = {}
    for arg in args:
        flag, _, value = arg.partition("=")
        given[flag] = value
    scaled: dict[str, float] = {}
    for spec in SPECS:
        if spec.metavar != "DURATION" or spec.name in UNSCALED:
            continue
        raw = given.get(spec.cli_flag, env.get(spec.env, spec.default))
        scaled[spec.name] = parse_duration(raw) / scale
    interval = max(scaled["probe_interval_seconds"], MIN_SIDECAR_PROBE_SECONDS)
    scaled["probe_interval_seconds"] = interval
    scaled["probe_timeout_seconds"] = min(
        max(scaled["probe_timeout_seconds"], MIN_SIDECAR_PROBE_SECONDS), interval
    )
    stall = scaled.get("worker_stall_timeout_seconds")
    if stall is not None:
        scaled["worker_stall_timeout_seconds"] = max(stall, MIN_SIDECAR_STALL_SECONDS)
    by_name = {spec.name: spec for spec in SPECS}
    return [f"{by_name[name].cli_flag}={seconds * 1000:.0f}ms" for name, seconds in scaled.items()]


#: settings whose default names a host, port or path of the pod
LOCAL_SETTINGS = ("listen", "keycloak_url", "log_file")


def localized_defaults(
    args: list[str], env: Mapping[str, str], rewrite: Callable[[str], str]
) -> list[str]:
    """Flags for the settings the manifest leaves at a default that must change here."""
    given = {arg.partition("=")[0] for arg in args}
    flags = []
    for spec in SPECS:
        if spec.name in LOCAL_SETTINGS and spec.cli_flag not in given and spec.env not in env:
            local = rewrite(spec.default)
            if local != spec.default:
                flags.append(f"{spec.cli_flag}={local}")
    return flags


@dataclass
class Scenario:
    """A cluster to build and what to do with it (``body`` returns when the story is over)."""

    name: str
    scripts: Mapping[str, Script]  # pod name -> script
    body: Callable[[Cluster], Awaitable[None]]
    variant: str = ""  # "" = k8s/ itself; else k8s/examples/<variant>-patch.yaml applied
    replicas: int | None = None
    scale: float = 30.0
    kubernetes: bool = True  # False: the sidecar runs with --no-kubernetes
    #: the API side (default: the double); realapi_backend.RealApiBackend for the real server
    api: Callable[[], Any] | None = None


@dataclass
class Outcome:
    scenario: Scenario
    timeline: Timeline
    error: BaseException | None = None
    report: str = ""
    restarts: dict[str, dict[str, int]] = field(default_factory=dict)


class Cluster:
    """What a scenario body drives and observes."""

    def __init__(self, scenario: Scenario, root: Path) -> None:
        self.scenario = scenario
        self.root = root
        self.timeline = Timeline(scale=scenario.scale)
        self.api = scenario.api() if scenario.api else KubeApiDouble(namespace="keycloak")
        self.pods: dict[str, PodRuntime] = {}
        self.jgroups = root / "jgroups"
        self.session: aiohttp.ClientSession | None = None
        #: extra sidecar flags per pod, for its next start (a setting rolled out)
        self.sidecar_extra_args: dict[str, list[str]] = {}

    # ------------------------------------------------------------- for scenario bodies

    def now(self) -> float:
        """Cluster seconds since the start."""
        return self.timeline.now()

    async def sleep(self, cluster_seconds: float) -> None:
        await asyncio.sleep(cluster_seconds / self.scenario.scale)

    async def wait_for(
        self, what: str, predicate: Callable[[], bool], *, within_seconds: float
    ) -> float:
        """Wait (cluster seconds) until ``predicate()``; returns the cluster time it held."""
        deadline = self.now() + within_seconds
        while not predicate():
            if self.now() > deadline:
                raise AssertionError(f"not within {within_seconds:g}s: {what}")
            await asyncio.sleep(POLL_SECONDS)
        self.timeline.add("scenario", "", "reached", what)
        return self.now()

    def send(self, pod: str, event: str) -> None:
        """Trigger the script's ``events[event]`` in the pod's Keycloak process."""
        self.timeline.add(pod, "keycloak", "event", event)
        with (self.pods[pod].local.directory / "control").open("a", encoding="utf-8") as handle:
            handle.write(event + "\n")

    def isolate(self, pod: str) -> None:
        """Cut the pod's Keycloak off the cluster network (until its container restarts)."""
        self.timeline.add(pod, "keycloak", "event", "network partition: isolated")
        (self.jgroups / f"{pod}.isolated").touch()

    def kill_container(self, pod: str, container: str) -> None:
        """The container's process dies (SIGKILL), as on an OOM kill; the kubelet restarts it."""
        runner = self.pods[pod].runners[container]
        assert runner.process is not None
        self.timeline.add(pod, container, "event", "SIGKILL from outside")
        os.killpg(runner.process.pid, 9)

    def pause_container(self, pod: str, container: str, *, note: bool = True) -> int | None:
        """SIGSTOP the container's current process (a hung process, a frozen cgroup)."""
        return self._signal(pod, container, signal.SIGSTOP, "SIGSTOP", note=note)

    def resume_container(self, pod: str, container: str, pid: int | None = None) -> None:
        """SIGCONT the container's process (``pid``: only if it is still that one)."""
        runner = self.pods[pod].runners[container]
        if runner.process is not None and pid in (None, runner.process.pid):
            self._signal(pod, container, signal.SIGCONT, "SIGCONT", note=False)

    def _signal(
        self, pod: str, container: str, signum: int, what: str, *, note: bool = True
    ) -> int | None:
        runner = self.pods[pod].runners[container]
        if runner.process is None or runner.process.returncode is not None:
            return None
        if note:
            self.timeline.add(pod, container, "event", f"{what} from outside")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.process.pid, signum)
        return runner.process.pid

    def serving(self, pod: str, container: str) -> bool:
        """The container runs and its process answered its first connection."""
        runner = self.pods[pod].runners[container]
        records = self.timeline.of("serving", pod, container)
        starts = self.timeline.of("start", pod, container)
        alive = runner.process is not None and runner.process.returncode is None
        return alive and bool(records) and bool(starts) and records[-1].at >= starts[-1].at

    async def delete_pod(self, pod: str) -> None:
        """Pod deletion as the kubelet does it (termination order, see ``kubelet.py``)."""
        self.timeline.add(pod, "", "deleted")
        await self.pods[pod].stop()

    def restarts(self, pod: str, container: str = "keycloak") -> int:
        return self.pods[pod].restarts(container)

    def ready(self, pod: str) -> bool:
        return self.pods[pod].ready

    def kills(self, pod: str, container: str = "keycloak") -> list[float]:
        """Cluster times the kubelet killed (or saw exit) the container."""
        return [
            r.at
            for r in self.timeline.records
            if r.pod == pod and r.container == container and r.what in ("kill", "exit")
        ]

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Cluster:
        self.jgroups.mkdir(parents=True, exist_ok=True)
        template = await asyncio.to_thread(render, self.scenario.variant, self.scenario.replicas)
        template = dataclasses.replace(template, namespace=self.api.namespace)
        await self.api.__aenter__()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        kubeconfig = self.api.write_kubeconfig(self.root)
        for ordinal in range(template.replicas):
            local = localize(template, ordinal, self.root, kubeconfig)
            self.pods[local.name] = self._pod(template, local)
        for pod in self.pods.values():
            self.api.add_pod(
                pod.name, pod.local.labels, ready=False, ip=f"10.0.0.{len(self.api.pods) + 1}"
            )
            self.timeline.add(pod.name, "", "scheduled")
        for pod in self.pods.values():
            pod.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(pod.stop() for pod in self.pods.values()))
        for pod in self.pods.values():
            with contextlib.suppress(KeyError):
                self.api.delete_pod(pod.name)
        if self.session is not None:
            await self.session.close()
        await self.api.__aexit__(None, None, None)

    def _pod(self, template: PodTemplate, local: LocalPod) -> PodRuntime:
        assert self.session is not None
        pod = PodRuntime(local, self.timeline, self.session, on_change=self._on_change)
        grace = template.termination_grace_seconds
        for name in local.containers:
            command = (
                self._keycloak_command(local)
                if name == "keycloak"
                else self._sidecar_command(local)
            )
            pod.add(
                ContainerRunner(
                    pod, local.containers[name], command, termination_grace_seconds=grace
                )
            )
        return pod

    def _keycloak_command(self, pod: LocalPod) -> Callable[[int], tuple[list[str], dict[str, str]]]:
        spec = pod.containers["keycloak"]
        script_path = pod.directory / "script.json"
        script_path.write_text(json.dumps(self.scenario.scripts[pod.name]), encoding="utf-8")
        log_file = keycloak_log_file(spec.env, spec.mounts, self.scenario.scripts[pod.name]["era"])

        def command(boot: int) -> tuple[list[str], dict[str, str]]:
            env = {
                **_base_env(),
                **spec.env,
                "HOSTNAME": pod.name,
                "E2E_SCRIPT": str(script_path),
                "E2E_BOOT": str(boot),
                "E2E_SCALE": str(self.scenario.scale),
                "E2E_PORTS": json.dumps({str(k): v for k, v in pod.ports.items()}),
                "E2E_LOG_FILE": str(log_file),
                "E2E_CONTROL": str(pod.directory / "control"),
                "E2E_JGROUPS": str(self.jgroups),
            }
            return [sys.executable, str(FAKE_KEYCLOAK)], env

        return command

    def _sidecar_command(self, pod: LocalPod) -> Callable[[int], tuple[list[str], dict[str, str]]]:
        spec = pod.containers["sidecar"]
        args = [
            *spec.args,
            *localized_defaults(spec.args, spec.env, spec.rewrite),
            *scaled_sidecar_flags(spec.args, spec.env, self.scenario.scale),
        ]
        if not self.scenario.kubernetes:
            args.append("--no-kubernetes")

        def command(_boot: int) -> tuple[list[str], dict[str, str]]:
            env = {**_base_env(), **spec.env, "PYTHONPATH": str(REPO)}
            extra = self.sidecar_extra_args.get(pod.name, [])
            return [sys.executable, "-m", "sidecar", *args, *extra], env

        return command

    def _on_change(self, pod: PodRuntime, what: str, runner: ContainerRunner | None) -> None:
        """Keep the API double in step with the emulated kubelet."""
        if pod.name not in self.api.pods:
            return
        if what == "restarted" and runner is not None:
            self.api.restart_container(pod.name, runner.spec.name, ready=False)
            if runner.spec.name == "keycloak":
                (self.jgroups / f"{pod.name}.isolated").unlink(missing_ok=True)
        elif what == "stopped" and runner is not None and runner.spec.name == "keycloak":
            (self.jgroups / pod.name).unlink(missing_ok=True)  # JGroups failure detection
        self._sync_ready(pod)

    def _sync_ready(self, pod: PodRuntime) -> None:
        def change(obj: dict[str, Any]) -> None:
            for status in obj["status"]["containerStatuses"]:
                status["ready"] = pod.runners[status["name"]].ready
            for condition in obj["status"]["conditions"]:
                if condition["type"] == "Ready":
                    condition["status"] = "True" if pod.ready else "False"

        current = self.api.pods[pod.name]["status"]
        wanted = {s["name"]: pod.runners[s["name"]].ready for s in current["containerStatuses"]}
        have = {s["name"]: s["ready"] for s in current["containerStatuses"]}
        if wanted != have:
            self.api.modify_pod(pod.name, change)

    def report(self) -> str:
        """The timeline with the sidecars' verdict changes merged in, and output tails."""
        records = list(self.timeline.records)
        for pod in self.pods.values():
            records.extend(_verdict_records(self.timeline, pod))
        ordered = Timeline(scale=self.timeline.scale, started=self.timeline.started)
        ordered.records = sorted(records, key=lambda r: r.at)
        parts = [f"scenario {self.scenario.name}", ordered.render()]
        for pod in self.pods.values():
            for name, runner in pod.runners.items():
                parts.append(f"--- {pod.name}/{name} output (tail):\n{tail(runner.stderr_path)}")
        return "\n".join(parts)


def keycloak_log_file(env: Mapping[str, str], mounts: Mapping[str, Path], era: str) -> Path:
    """Where the real image would write its log: KC_LOG_FILE, or WildFly's server.log."""
    if era == "quarkus" and env.get("KC_LOG_FILE"):
        return Path(env["KC_LOG_FILE"])
    for mount_path, local in mounts.items():
        if mount_path.endswith("/standalone/log"):
            return local / "server.log"
    raise AssertionError(f"no shared log file for the {era} era in the manifest")


def _base_env() -> dict[str, str]:
    return {key: os.environ[key] for key in ("PATH", "LANG", "TZ") if key in os.environ}


_VERDICT = re.compile(r'"msg": "Verdict changed"')


def _verdict_records(timeline: Timeline, pod: PodRuntime) -> list[Any]:
    runner = pod.runners.get("sidecar")
    if runner is None or not runner.stderr_path.exists():
        return []
    from kubelet import Record

    records = []
    for line in runner.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not _VERDICT.search(line):
            continue
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            wall = datetime.fromisoformat(entry["ts"]).timestamp()
            at = round((wall - timeline.started_wall) * timeline.scale, 1)
            state = "ok" if entry["ok"] else "FAIL " + ",".join(entry.get("reasons", []))
            records.append(Record(at, pod.name, "sidecar", f"verdict:{entry['verdict']}", state))
    return records


async def run_scenario(scenario: Scenario, root: Path) -> Outcome:
    """Build the cluster, run the body, tear everything down; never raises."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(scenario, root)
    outcome = Outcome(scenario, cluster.timeline)
    try:
        async with cluster:
            try:
                await scenario.body(cluster)
            finally:
                outcome.restarts = {
                    name: {c: pod.restarts(c) for c in pod.runners}
                    for name, pod in cluster.pods.items()
                }
    except Exception as error:
        outcome.error = error
    outcome.report = cluster.report()
    return outcome
