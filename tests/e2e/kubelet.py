"""A kubelet emulator: runs a pod's containers as local processes and probes them like Kubernetes.

Semantics kept from the kubelet (pkg/kubelet/prober and kuberuntime):

* HTTP GET probes; a status of 200-399 is success, anything else, a refused connection or
  no answer within ``timeoutSeconds`` is failure.
* exec probes: the command runs for real (``bash`` on this machine, with the container's
  environment); exit status 0 is success, any other status, or still running after
  ``timeoutSeconds``, is failure (the kubelet since 1.20); a command that times out is
  killed (process group).
* Native sidecars (init containers with ``restartPolicy: Always``, Kubernetes >= 1.29):
  started in manifest order, each one started (its startup probe passed, or running when
  it has none) before the next one and before the regular containers start; restarted on
  their own like any container; on pod deletion the regular containers are stopped first,
  then the sidecars in reverse order.
* ``initialDelaySeconds`` before the first probe, then one probe every ``periodSeconds``.
* The startup probe runs alone until it succeeds once; liveness and readiness start only
  then.  ``failureThreshold`` consecutive startup or liveness failures restart the container
  (SIGTERM, SIGKILL after ``terminationGracePeriodSeconds``).
* Readiness starts false; without a readiness probe a container is ready once started;
  ``successThreshold`` consecutive successes make the container ready,
  ``failureThreshold`` consecutive failures unready.  A restarted container is
  unready until its probes say otherwise.  The pod is Ready when every container is.
* A container that exits is restarted (restartPolicy Always).  Restart back-off: the
  first restart is immediate, then 10 s, 20 s, 40 s ... capped at 300 s after the previous
  exit; the back-off is forgotten after 600 s without a restart.

Time scale: every duration derived from the manifest (periods, delays, grace, back-off) is
divided by ``scale``.  Probe timeouts are divided too but never below
``MIN_PROBE_TIMEOUT_SECONDS``: they bound the real latency of real processes on a loaded
machine, which the scale does not shrink; periods never below ``MIN_PROBE_PERIOD_SECONDS``.
An exec probe's timeout is not divided at all: its command runs in real time with its own
real timeouts inside (``read -t 2``), and the manifest's ``timeoutSeconds`` is sized
against those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from manifest import LocalContainer, LocalPod, Probe

MIN_PROBE_TIMEOUT_SECONDS = 1.0
#: a probe period is divided by the scale but never below this (real seconds): a 1 s period
#: at scale 30 would otherwise probe 30 times a (real) second and load the machine
MIN_PROBE_PERIOD_SECONDS = 0.1
SERVING_WAIT_SECONDS = 30.0
BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
BACKOFF_RESET_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Record:
    at: float  # seconds since the scenario began, in cluster time (real seconds x scale)
    pod: str
    container: str
    what: str
    detail: str = ""


@dataclass
class Timeline:
    """Everything that happened, for assertions and for the failure report."""

    scale: float
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    records: list[Record] = field(default_factory=list)

    def now(self) -> float:
        """Cluster seconds since the start (what the manifest's numbers are in)."""
        return (time.monotonic() - self.started) * self.scale

    def add(self, pod: str, container: str, what: str, detail: str = "") -> Record:
        record = Record(round(self.now(), 1), pod, container, what, detail)
        self.records.append(record)
        return record

    def of(self, what: str, pod: str | None = None, container: str | None = None) -> list[Record]:
        return [
            r
            for r in self.records
            if r.what == what
            and (pod is None or r.pod == pod)
            and (container is None or r.container == container)
        ]

    def render(self) -> str:
        lines = [f"timeline (cluster seconds; real = cluster / {self.scale:g}):"]
        for r in self.records:
            where = f"{r.pod}/{r.container}" if r.container else r.pod
            lines.append(f"  {r.at:8.1f}s  {where:<28} {r.what:<14} {r.detail}")
        return "\n".join(lines)


Command = Callable[[int], tuple[list[str], dict[str, str]]]


@dataclass
class ProbeState:
    failures: int = 0
    successes: int = 0
    last_ok: bool | None = None
    last_detail: str = ""


class ContainerRunner:
    """One container of one pod: its process, its probes, its restarts."""

    def __init__(
        self,
        pod: PodRuntime,
        spec: LocalContainer,
        command: Command,
        *,
        termination_grace_seconds: float,
    ) -> None:
        self.pod = pod
        self.spec = spec
        self.command = command
        self.grace_seconds = termination_grace_seconds
        self.restart_count = 0
        self.process: asyncio.subprocess.Process | None = None
        self.started = False
        self.ready = False
        self.finished_at: float | None = None
        self.last_restart_at: float | None = None
        self.backoff_seconds = 0.0
        self.stderr_path = pod.local.directory / f"{spec.name}.stderr"
        self.kill_reason = ""
        self._kill_requested = asyncio.Event()

    @property
    def timeline(self) -> Timeline:
        return self.pod.timeline

    def _scaled(self, seconds: float) -> float:
        return seconds / self.timeline.scale

    def note(self, what: str, detail: str = "") -> None:
        self.timeline.add(self.pod.name, self.spec.name, what, detail)

    async def run(self) -> None:
        """Start, probe, restart; forever (cancelled by the pod)."""
        while True:
            await self._start()
            reason = await self._supervise()
            await self._stop(reason)
            await self._back_off()
            self.restart_count += 1
            self.pod.container_restarted(self)

    async def _start(self) -> None:
        argv, env = self.command(self.restart_count)
        self.started = not any(p.kind == "startup" for p in self.spec.probes)
        self._set_ready(False)
        with self.stderr_path.open("ab") as stderr:
            stderr.write(f"--- start #{self.restart_count}\n".encode())
            stderr.flush()
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # own process group: killed as a whole
            )
        self.pod.pgids.add(self.process.pid)
        self.note("start", f"restartCount={self.restart_count} pid={self.process.pid}")
        await self._wait_serving()
        if self.started:
            self._ready_without_probe()

    def _ready_without_probe(self) -> None:
        """A container without a readiness probe is ready once started (the kubelet)."""
        if not any(p.kind == "readiness" for p in self.spec.probes):
            self._set_ready(True)

    async def _wait_serving(self) -> None:
        """Start-up compensation: wait (real time) until the probed ports accept.

        A process's start-up (Python imports: about a real second, more on a loaded
        machine) is not compressed by the time scale, yet it is negligible against the
        probe budgets of a real pod (60 s for the sidecar).  So the probe clock of a
        container whose ports some probe of the pod targets starts when they accept
        connections, bounded by ``SERVING_WAIT_SECONDS``.
        """
        ports = [p for p in self.spec.ports if p in self.pod.probed_ports()]
        assert self.process is not None
        deadline = time.monotonic() + SERVING_WAIT_SECONDS
        while ports and time.monotonic() < deadline and self.process.returncode is None:
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", self.pod.local.local_port(ports[0])
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            self.note("serving", f"port {ports[0]}")
            return

    async def _supervise(self) -> str:
        """Until the process exits or a probe says restart; returns why it ended."""
        assert self.process is not None
        self._kill_requested = asyncio.Event()
        tasks = [
            asyncio.create_task(self.process.wait(), name=f"{self.pod.name}-{self.spec.name}-wait"),
            asyncio.create_task(self._kill_requested.wait(), name="kill-requested"),
            *(
                asyncio.create_task(self._probe_loop(p), name=f"probe-{p.kind}")
                for p in self.spec.probes
            ),
        ]
        try:
            await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks[1:], return_exceptions=True)
        if self.process.returncode is not None:
            return f"exited code={self.process.returncode}"
        return self.kill_reason

    def request_kill(self, reason: str) -> None:
        self.kill_reason = reason
        self._kill_requested.set()

    async def _stop(self, reason: str) -> None:
        """SIGTERM the process group, SIGKILL after the (scaled) grace period."""
        assert self.process is not None
        self._set_ready(False)
        if self.process.returncode is None:
            self.note("kill", reason)
            await terminate(self.process, self._scaled(self.grace_seconds))
        else:
            self.note("exit", reason)
        self.pod.pgids.discard(self.process.pid)
        self.pod.container_stopped(self)
        self.finished_at = time.monotonic()

    async def _back_off(self) -> None:
        now = time.monotonic()
        fresh = self.last_restart_at is None or now - self.last_restart_at > self._scaled(
            BACKOFF_RESET_SECONDS
        )
        delay = 0.0 if fresh else self.backoff_seconds
        self.backoff_seconds = (
            BACKOFF_INITIAL_SECONDS if fresh else min(self.backoff_seconds * 2, BACKOFF_MAX_SECONDS)
        )
        if delay:
            self.note("back-off", f"{delay:g}s")
            assert self.finished_at is not None
            await asyncio.sleep(max(0.0, self.finished_at + self._scaled(delay) - now))
        self.last_restart_at = time.monotonic()

    # ------------------------------------------------------------- probes

    async def _probe_loop(self, probe: Probe) -> None:
        state = ProbeState()
        if probe.kind != "startup":
            while not self.started:
                await asyncio.sleep(self._scaled(probe.period_seconds) / 4)
        await asyncio.sleep(self._scaled(probe.initial_delay_seconds))
        while not (probe.kind == "startup" and self.started):
            ok, detail = await (self._exec(probe) if probe.command else self._http(probe))
            self._record(probe, state, ok, detail)
            self._apply(probe, state, ok)
            await asyncio.sleep(max(self._scaled(probe.period_seconds), MIN_PROBE_PERIOD_SECONDS))

    async def _http(self, probe: Probe) -> tuple[bool, str]:
        url = f"http://127.0.0.1:{self.pod.local.local_port(probe.port)}{probe.path}"
        timeout = max(self._scaled(probe.timeout_seconds), MIN_PROBE_TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(timeout):
                async with self.pod.session.get(url) as response:
                    body = await response.read()
                    return 200 <= response.status < 400, f"{response.status} {_reasons(body)}"
        except TimeoutError:
            return False, "timeout"
        except aiohttp.ClientError as error:
            return False, type(error).__name__

    async def _exec(self, probe: Probe) -> tuple[bool, str]:
        """Run the command; its timeout is real time (module docstring)."""
        process = await asyncio.create_subprocess_exec(
            *probe.command,
            env={**_base_env(), **self.spec.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pod.pgids.add(process.pid)
        try:
            async with asyncio.timeout(probe.timeout_seconds):
                code = await process.wait()
        except TimeoutError:
            return False, "timeout"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            self.pod.pgids.discard(process.pid)
        return code == 0, f"exit {code}"

    def _record(self, probe: Probe, state: ProbeState, ok: bool, detail: str) -> None:
        if ok != state.last_ok or detail != state.last_detail:
            what = probe.path or _exec_target(probe)
            self.note(f"{probe.kind}", f"{what} {'ok' if ok else 'FAIL'} {detail}")
        state.last_ok, state.last_detail = ok, detail
        if ok:
            state.successes, state.failures = state.successes + 1, 0
        else:
            state.successes, state.failures = 0, state.failures + 1

    def _apply(self, probe: Probe, state: ProbeState, ok: bool) -> None:
        if probe.kind == "startup" and ok:
            self.started = True
            self._ready_without_probe()
        elif probe.kind in ("startup", "liveness") and state.failures >= probe.failure_threshold:
            self.request_kill(f"{probe.kind} probe failed {state.failures}x")
        elif probe.kind == "readiness":
            if ok and state.successes >= probe.success_threshold:
                self._set_ready(True)
            elif not ok and state.failures >= probe.failure_threshold:
                self._set_ready(False)

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self.note("ready" if ready else "unready")
            self.pod.readiness_changed()

    async def shutdown(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.note("terminate", "pod deleted")
            await terminate(self.process, self._scaled(self.grace_seconds))
            self.pod.pgids.discard(self.process.pid)


def _exec_target(probe: Probe) -> str:
    """``exec GET /livez`` for the fail-open probe, else the command's last word."""
    match = re.search(r"GET (\S+) ", probe.command[-1]) if probe.command else None
    return f"exec {match.group(1)}" if match else f"exec {probe.command[-1][:30]}"


def _base_env() -> dict[str, str]:
    return {key: os.environ[key] for key in ("PATH", "LANG", "TZ") if key in os.environ}


def _reasons(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        document = json.loads(body)
        reasons = document.get("reasons") or [
            c.get("reason") for c in document.get("checks", []) if not c.get("ok", True)
        ]
        return ",".join(str(r) for r in reasons if r)
    return ""


async def terminate(process: asyncio.subprocess.Process, grace_seconds: float) -> None:
    """SIGTERM the process group; SIGKILL it after ``grace_seconds``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_seconds):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group


class PodRuntime:
    """One emulated pod: its containers and its Ready condition."""

    def __init__(
        self,
        local: LocalPod,
        timeline: Timeline,
        session: aiohttp.ClientSession,
        *,
        on_change: Callable[[PodRuntime, str, ContainerRunner | None], None],
    ) -> None:
        self.local = local
        self.name = local.name
        self.timeline = timeline
        self.session = session
        self.on_change = on_change
        self.runners: dict[str, ContainerRunner] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.pgids: set[int] = set()
        self.ready = False
        self._by_runner: dict[str, asyncio.Task[None]] = {}

    def probed_ports(self) -> set[int]:
        return {p.port for r in self.runners.values() for p in r.spec.probes}

    def add(self, runner: ContainerRunner) -> None:
        self.runners[runner.spec.name] = runner

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._start_in_order(), name=f"{self.name}-start"))

    def _sidecars(self) -> list[ContainerRunner]:
        return [r for r in self.runners.values() if r.spec.native_sidecar]

    def _regular(self) -> list[ContainerRunner]:
        return [r for r in self.runners.values() if not r.spec.native_sidecar]

    async def _start_in_order(self) -> None:
        """Native sidecars one by one, each started before the next; then the rest."""
        for runner in self._sidecars():
            self._run(runner)
            while not (runner.started and runner.process is not None):
                await asyncio.sleep(0.02)
        for runner in self._regular():
            self._run(runner)

    def _run(self, runner: ContainerRunner) -> None:
        task = asyncio.create_task(runner.run(), name=f"{self.name}-{runner.spec.name}")
        self.tasks.append(task)
        self._by_runner[runner.spec.name] = task

    def readiness_changed(self) -> None:
        ready = all(r.ready for r in self.runners.values())
        if ready != self.ready:
            self.ready = ready
            self.timeline.add(self.name, "", "pod-ready" if ready else "pod-unready")
        self.on_change(self, "ready", None)

    def container_restarted(self, runner: ContainerRunner) -> None:
        self.on_change(self, "restarted", runner)

    def container_stopped(self, runner: ContainerRunner) -> None:
        self.on_change(self, "stopped", runner)

    def restarts(self, container: str = "keycloak") -> int:
        return self.runners[container].restart_count

    async def _stop_runners(self, runners: list[ContainerRunner]) -> None:
        tasks = [self._by_runner[r.spec.name] for r in runners if r.spec.name in self._by_runner]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.shutdown() for r in runners))

    async def stop(self) -> None:
        """Pod deletion: the regular containers first, then the sidecars, last one first."""
        for task in self.tasks[:1]:
            task.cancel()  # the start sequence, if still waiting for a sidecar
        await self._stop_runners(self._regular())
        for runner in reversed(self._sidecars()):
            await self._stop_runners([runner])
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for pgid in list(self.pgids):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
