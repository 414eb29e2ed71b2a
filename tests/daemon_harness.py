"""The daemon's own objects, for metrics and web tests: no copy of the runtime's glue.

``Harness`` holds the context ``runtime.build_context`` builds (built-in rules, a fresh
``CollectorRegistry``, a ``ManualClock``), a real ``LogFile`` on a temporary file read by
the real ``Tailer`` through the real ingest door (``LineSink``), and the real ``Prober``'s
recording step.  Only the waiting is left out: the test says when the tail worker's and
the probe worker's turns come.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sidecar.clock import ManualClock
from sidecar.context import Context
from sidecar.core.events import HealthCheck, ProbeResult
from sidecar.core.health import Verdicts
from sidecar.core.membership import KubeFacts, PeerPod
from sidecar.core.state import ProbeTrack
from sidecar.http.metrics import Metrics, observe_probe, register_all
from sidecar.ingest import LineSink
from sidecar.kubesink import CoreSink
from sidecar.log.rules import builtin_rules
from sidecar.log.source import LogFile
from sidecar.runtime import build_context
from sidecar.settings import load_settings
from sidecar.workers import Prober, Tailer

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
#: a later view of the same cluster without the peer (this replica alone)
ALONE_VIEW_LINE = (
    "2015-04-02T09:31:02.020412200Z 09:31:02,011 INFO  "
    "[org.infinispan.remoting.transport.jgroups.JGroupsTransport] (Incoming-1,shared=udp) "
    "ISPN000094: Received new cluster view: [keycloak-controller-559a8/keycloak|2] (1) "
    "[keycloak-controller-559a8/keycloak]"
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
    tailer: Tailer
    prober: Prober
    kube_sink: CoreSink

    def write_log(self, *lines: str) -> None:
        """Append lines to the log file and give the tail worker its turn: read all there is,
        then the quiet that completes the last record."""
        with self.log_path.open("ab") as log:
            log.write("".join(line + "\n" for line in lines).encode())
        self.tail()

    def tail(self) -> None:
        """One turn of the tail worker with nothing left to read at its end."""
        while self.tailer.pump():
            pass
        self.tailer.settle()
        self.tailer.after_quiet()

    def probe(self, target: str, *, error: str = "", latency_seconds: float = 0.004) -> None:
        """Record one probe result (the probe worker)."""
        now = self.clock.monotonic()
        self.prober.record(
            probe_result(target, error=error, latency_seconds=latency_seconds, at=now)
        )

    def kube(self, facts: KubeFacts) -> None:
        """The Kubernetes worker publishes its facts (through the core's ``KubeSink``)."""
        self.kube_sink.update_kube(facts)

    def observe(self) -> Verdicts:
        """The core step (what every writer runs after a change)."""
        return self.ctx.verdicts()

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
    log_path = tmp_path / "keycloak.log"
    log_path.write_bytes(b"")
    settings = load_settings(
        {
            "log_file": str(log_path),
            "log_max_line_bytes": str(max_line_bytes),
            "log_max_record_lines": str(max_record_lines),
        },
        environ or {},
    )
    ctx = build_context(settings, builtin_rules(), clock)
    # the targets a test names (the settings would enable all three)
    ctx.state.probes = {target: ProbeTrack() for target in probe_targets}
    source = LogFile(str(log_path), max_line_bytes=max_line_bytes)
    ctx.source = source
    metrics = register_all(ctx)
    lines = LineSink(ctx, replay=True)
    tailer = Tailer(ctx, source, _NoWaiting(), lines)
    prober = Prober(ctx, lambda result: observe_probe(metrics, result), None)
    harness = Harness(ctx, clock, log_path, source, metrics, tailer, prober, CoreSink(ctx, lines))
    harness.tail()  # the empty file is read and caught up: the replay ends at once
    harness.observe()
    return harness


class _NoWaiting:
    """The tail worker's waiter; the harness never lets it wait."""

    async def wait(self, timeout_seconds: float | None = None) -> None:
        raise AssertionError("the harness drives the tailer's turns itself")


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
