"""The daemon's objects built the way the runtime builds them, for metrics and web tests.

``Harness`` holds a real ``LogFile`` on a temporary file as the log source, the built-in rules,
a fresh ``CollectorRegistry`` and a ``ManualClock``; it appends lines to the file, polls it,
feeds the pipeline and lets the tracker observe the verdicts, as the tail worker would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from sidecar.clock import ManualClock
from sidecar.context import Context
from sidecar.core.events import HealthCheck, ProbeResult
from sidecar.core.health import Policy, TransitionTracker, Verdicts
from sidecar.core.membership import KubeFacts, PeerPod
from sidecar.core.state import MonitorState
from sidecar.housekeeping import Housekeeper
from sidecar.http.metrics import Metrics, observe_probe, register_all
from sidecar.log.pipeline import Pipeline
from sidecar.log.rules import builtin_rules
from sidecar.log.source import LogFile
from sidecar.settings import load_settings

P = "keycloak_sidecar_"
START_SECONDS = 1000.0
#: wall clock at START_SECONDS: 2024-12-07T17:52:23.000Z
WALL_AT_START = 1733593943.0
WALL_AT_START_TEXT = "2024-12-07T17:52:23.000Z"

# Real lines: the two from the original report (kubectl --timestamps prefix, WildFly 1.x)
# and a Keycloak 26 'started' line.
VIEW_LINE = (
    "2015-04-02T09:26:18.683827888Z 09:26:18,678 INFO  "
    "[org.infinispan.remoting.transport.jgroups.JGroupsTransport] (Incoming-1,shared=udp) "
    "ISPN000094: Received new cluster view: [keycloak-controller-559a8/keycloak|1] (2) "
    "[keycloak-controller-559a8/keycloak, keycloak-controller-zorqg/keycloak]"
)
LIQUIBASE_LINE = (
    "2015-04-02T09:26:37.124344660Z 09:26:37,074 ERROR "
    "[org.keycloak.connections.jpa.updater.liquibase.LiquibaseJpaUpdaterProvider] "
    "(MSC service thread 1-1) Change Set "
    "META-INF/jpa-changelog-1.1.0.Final.xml::1.1.0.Final::sthorger@redhat.com failed.  "
    "Error: Error executing SQL ALTER TABLE public.EVENT_ENTITY RENAME COLUMN TIME TO "
    'EVENT_TIME: ERROR: column "time" does not exist: liquibase.exception.DatabaseException: '
    "Error executing SQL ALTER TABLE public.EVENT_ENTITY RENAME COLUMN TIME TO EVENT_TIME: "
    'ERROR: column "time" does not exist'
)
STARTED_LINE = (
    "2024-12-07 17:52:23,717 INFO  [io.quarkus] (main) Keycloak 26.0.7 on JVM "
    "(powered by Quarkus 3.15.1) started in 39.709s. Listening on: http://0.0.0.0:8080. "
    "Management interface listening on http://0.0.0.0:9000."
)
#: a boot marker that is scanned for after startup too (a restarted JVM writing to the same log)
BOOT_MARKER_LINE = (
    "2024-12-07 17:51:52,311 INFO  [org.infinispan.remoting.transport.jgroups.JGroupsTransport] "
    "(keycloak-cache-init) ISPN000078: Starting JGroups channel `ISPN` with stack `kubernetes`"
)
#: fragments of the Liquibase line that must never leave the sidecar
RAW_FRAGMENTS = ("ALTER TABLE", "EVENT_ENTITY", "sthorger", "jpa-changelog", "does not exist")


@dataclass
class Harness:
    ctx: Context
    clock: ManualClock
    log_path: Path
    source: LogFile
    metrics: Metrics

    def write_log(self, *lines: str) -> None:
        """Append lines to the log file and let the pipeline read them (the tail worker)."""
        with self.log_path.open("ab") as log:
            log.write("".join(line + "\n" for line in lines).encode())
        now = self.clock.monotonic()
        self.ctx.pipeline.feed(self.source.poll(), now)
        self.ctx.pipeline.flush(now)
        self.ctx.state.log_present = self.source.present
        self.ctx.state.log_caught_up = self.source.caught_up
        self.ctx.state.last_line_at = now
        self.observe()

    def probe(self, target: str, *, error: str = "", latency_seconds: float = 0.004) -> None:
        """Record one probe result (the probe worker)."""
        now = self.clock.monotonic()
        result = probe_result(target, error=error, latency_seconds=latency_seconds, at=now)
        self.ctx.state.record_probe(result, now)
        observe_probe(self.metrics, result)
        self.observe()

    def observe(self) -> Verdicts:
        """What the runtime does after every change: let the tracker see the verdicts."""
        verdicts = self.ctx.verdicts()
        self.ctx.tracker.observe(verdicts, self.clock.monotonic())
        return verdicts

    def sample(self, name: str, **labels: str) -> float | None:
        return self.ctx.registry.get_sample_value(P + name, labels)


def probe_result(
    target: str, *, error: str = "", latency_seconds: float = 0.004, at: float = START_SECONDS
) -> ProbeResult:
    ok = not error
    return ProbeResult(
        target=target,
        ok=ok,
        status=200 if ok else (503 if error in ("http_status", "body") else None),
        latency_seconds=latency_seconds,
        error=error,
        keycloak_status="UP" if ok else ("DOWN" if error == "body" else ""),
        checks=(HealthCheck("Keycloak database connections health check", ok),),
        database_down=False,
        observed_at=at,
    )


def make_harness(
    tmp_path: Path,
    *,
    probe_targets: tuple[str, ...] = (),
    max_line_bytes: int = 65536,
    max_record_lines: int = 512,
    environ: dict[str, str] | None = None,
) -> Harness:
    clock = ManualClock(start=START_SECONDS, wall_offset=WALL_AT_START - START_SECONDS)
    state = MonitorState(clock.monotonic(), probe_targets=probe_targets)
    log_path = tmp_path / "keycloak.log"
    log_path.write_bytes(b"")
    source = LogFile(str(log_path), max_line_bytes=max_line_bytes)
    ctx = Context(
        settings=load_settings({}, environ or {}),
        clock=clock,
        state=state,
        policy=Policy(),
        pipeline=Pipeline(builtin_rules(), state, max_record_lines=max_record_lines),
        registry=CollectorRegistry(auto_describe=True),  # as the runtime builds it
        tracker=TransitionTracker(clock.monotonic()),
        housekeeper=Housekeeper(clock.monotonic()),
        source=source,
    )
    harness = Harness(ctx, clock, log_path, source, register_all(ctx))
    source.poll()  # open the (empty) file as the tail worker's first poll does
    harness.observe()
    return harness


def kube_facts(*, kill_slot_held: bool = False, budget_enabled: bool = True) -> KubeFacts:
    """Two replicas: this one (keycloak-controller-559a8) and a ready peer."""
    peer = PeerPod(
        name="keycloak-controller-zorqg",
        running=True,
        terminating=False,
        keycloak_ready=True,
        ip="10.0.0.12",
        ready_at=START_SECONDS,
    )
    return KubeFacts(
        api_ok=True,
        api_error="",
        own_pod="keycloak-controller-559a8",
        peers=(peer,),
        kill_slot_held=kill_slot_held,
        budget_enabled=budget_enabled,
        observed_at=START_SECONDS,
    )
