"""Metrics rendered from a real context driven by real Keycloak log lines and probe results.

``Harness`` (also used by test_web.py) builds the daemon's objects the way the runtime does:
a real ``LogFile`` on a temporary file as the log source, the built-in rules, a fresh
``CollectorRegistry``, a ``ManualClock``; then appends lines to the file, polls it, feeds
the pipeline and lets the tracker observe the verdicts, as the tail worker would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from sidecar import __version__
from sidecar.clock import ManualClock
from sidecar.context import Context
from sidecar.events import STARTUP_FATAL_REASONS, EventKind
from sidecar.health import REASONS, Policy, TransitionTracker, Verdicts
from sidecar.logfile import LogFile
from sidecar.membership import KubeFacts, PeerPod
from sidecar.metrics import PROBE_ERRORS, Metrics, StateCollector, observe_probe, register_all
from sidecar.pipeline import Pipeline
from sidecar.probe import HealthCheck, ProbeResult
from sidecar.rules import builtin_rules
from sidecar.settings import load_settings
from sidecar.state import MonitorState

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
        checks=(HealthCheck("Keycloak database connections health check", ok, ""),),
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


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path)
    yield made
    made.source.close()


@pytest.fixture
def probed(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path, probe_targets=("started", "live", "ready"))
    yield made
    made.source.close()


# --- verdicts ---------------------------------------------------------------------------------


def test_verdict_gauges_are_zero_after_a_liquibase_failure(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    values = [harness.sample(name) for name in ("live", "ready", "started")]

    assert values == [0.0, 0.0, 0.0]


def test_verdict_gauges_are_one_after_the_started_line(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    values = [harness.sample(name) for name in ("live", "ready", "started")]

    assert values == [1.0, 1.0, 1.0]


def test_failing_marks_exactly_the_reasons_of_failing_checks(harness: Harness) -> None:
    harness.write_log(LIQUIBASE_LINE)

    failing = {r for r in REASONS if harness.sample("failing", reason=r) == 1.0}

    assert failing == {"startup_fatal", "not_started"}


def test_failing_has_a_series_for_every_health_reason(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    values = {r: harness.sample("failing", reason=r) for r in REASONS}

    assert values == dict.fromkeys(REASONS, 0.0)


def test_verdict_change_timestamp_is_the_wall_time_of_the_change(harness: Harness) -> None:
    harness.clock.advance(30.0)
    harness.write_log(LIQUIBASE_LINE)

    changed_at = harness.sample("verdict_change_timestamp_seconds", verdict="live")

    assert changed_at == WALL_AT_START + 30.0


def test_verdict_change_timestamp_of_an_unchanged_verdict_is_the_tracker_start(
    harness: Harness,
) -> None:
    harness.clock.advance(30.0)
    harness.write_log(LIQUIBASE_LINE)

    changed_at = harness.sample("verdict_change_timestamp_seconds", verdict="started")

    assert changed_at == WALL_AT_START


def test_collector_evaluates_the_verdicts_once_per_scrape(tmp_path: Path) -> None:
    made = make_harness(tmp_path)
    calls = []

    class CountingContext(Context):
        def verdicts(self) -> Verdicts:
            calls.append(1)
            return super().verdicts()

    ctx = made.ctx
    counting = CountingContext(
        ctx.settings, ctx.clock, ctx.state, ctx.policy, ctx.pipeline, ctx.registry, ctx.tracker
    )
    list(StateCollector(counting).collect())
    made.source.close()

    assert len(calls) == 1


# --- log --------------------------------------------------------------------------------------


def test_log_lines_total_counts_every_line_read(harness: Harness) -> None:
    harness.write_log("2024-12-07 17:51:40,000 INFO  [org.example] (main) hello", STARTED_LINE)
    harness.write_log(VIEW_LINE)

    assert harness.sample("log_lines_total") == 3.0


def test_counters_do_not_grow_between_scrapes(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)
    first = generate_latest(harness.ctx.registry)

    second = generate_latest(harness.ctx.registry)

    assert _counter_lines(first) == _counter_lines(second)


def test_log_lines_truncated_total_comes_from_the_source(tmp_path: Path) -> None:
    made = make_harness(tmp_path, max_line_bytes=300)
    made.write_log(LIQUIBASE_LINE, STARTED_LINE, "short line")
    made.source.close()

    assert made.sample("log_lines_truncated_total") == 1.0


def test_log_records_truncated_total_comes_from_the_pipeline(tmp_path: Path) -> None:
    made = make_harness(tmp_path, max_record_lines=2)
    stack = [f"\tat org.example.Frame{i}.run(Frame.java:{i})" for i in range(6)]
    made.write_log(LIQUIBASE_LINE, *stack)
    made.source.close()

    assert made.sample("log_records_truncated_total") == 1.0


def test_log_events_total_has_every_event_kind(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    values = {
        kind.value: harness.sample("log_events_total", event=kind.value) for kind in EventKind
    }

    expected = dict.fromkeys((kind.value for kind in EventKind), 0.0)
    expected.update(cluster_view=1.0, startup_fatal=1.0)
    assert values == expected


def test_startup_fatal_total_has_every_reason(harness: Harness) -> None:
    harness.write_log(LIQUIBASE_LINE)

    values = {r: harness.sample("startup_fatal_total", reason=r) for r in STARTUP_FATAL_REASONS}

    expected = dict.fromkeys(STARTUP_FATAL_REASONS, 0.0)
    expected["liquibase"] = 1.0
    assert values == expected


def test_log_source_up_follows_the_source(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)
    up_while_open = harness.sample("log_source_up")
    harness.log_path.unlink()
    harness.source.poll()

    assert (up_while_open, harness.sample("log_source_up")) == (1.0, 0.0)


def test_log_source_up_is_zero_without_a_source(harness: Harness) -> None:
    harness.ctx.source = None

    assert harness.sample("log_source_up") == 0.0


def test_last_log_line_timestamp_is_wall_time(harness: Harness) -> None:
    harness.clock.advance(12.5)
    harness.write_log(STARTED_LINE)

    assert harness.sample("last_log_line_timestamp_seconds") == WALL_AT_START + 12.5


def test_last_log_line_timestamp_is_absent_before_any_line(harness: Harness) -> None:
    assert harness.sample("last_log_line_timestamp_seconds") is None


# --- boots ------------------------------------------------------------------------------------


def test_boots_total_counts_a_new_boot_in_the_log(harness: Harness) -> None:
    harness.write_log(BOOT_MARKER_LINE)
    harness.write_log(STARTED_LINE)
    harness.write_log(BOOT_MARKER_LINE)

    assert harness.sample("boots_total") == 2.0


def test_boot_start_timestamp_is_the_wall_time_of_the_new_boot(harness: Harness) -> None:
    harness.write_log(BOOT_MARKER_LINE, STARTED_LINE)
    harness.clock.advance(600.0)
    harness.write_log(BOOT_MARKER_LINE)

    assert harness.sample("boot_start_timestamp_seconds") == WALL_AT_START + 600.0


# --- probes -----------------------------------------------------------------------------------


def test_observe_probe_records_the_duration(probed: Harness) -> None:
    probed.probe("ready", latency_seconds=0.004)

    buckets = [
        probed.sample("probe_duration_seconds_bucket", target="ready", le=le)
        for le in ("0.0025", "0.005")
    ]

    assert (buckets, probed.sample("probe_duration_seconds_count", target="ready")) == (
        [0.0, 1.0],
        1.0,
    )


def test_observe_probe_counts_failures_by_error_class(probed: Harness) -> None:
    probed.probe("live", error="timeout")
    probed.probe("live", error="timeout")
    probed.probe("live", error="http_status")

    values = {
        e: probed.sample("probe_failures_total", target="live", reason=e) for e in PROBE_ERRORS
    }

    assert values == {
        "timeout": 2.0,
        "refused": 0.0,
        "connection": 0.0,
        "tls": 0.0,
        "http_status": 1.0,
        "body": 0.0,
    }


def test_observe_probe_does_not_count_a_success_as_failure(probed: Harness) -> None:
    probed.probe("live")

    total = sum(
        probed.sample("probe_failures_total", target="live", reason=e) or 0.0 for e in PROBE_ERRORS
    )

    assert total == 0.0


def test_observe_probe_maps_an_unknown_error_to_other(probed: Harness) -> None:
    probed.probe("live", error="something_new")

    assert probed.sample("probe_failures_total", target="live", reason="other") == 1.0


def test_probe_instruments_have_no_created_series(probed: Harness) -> None:
    probed.probe("live", error="timeout")

    text = generate_latest(probed.ctx.registry).decode()

    assert "_created" not in text


def test_probe_up_follows_the_last_result_per_target(probed: Harness) -> None:
    probed.probe("live")
    probed.probe("ready", error="body")

    values = [probed.sample("probe_up", target=t) for t in ("live", "ready")]

    assert values == [1.0, 0.0]


def test_probe_up_omits_targets_without_a_result(probed: Harness) -> None:
    probed.probe("live")

    assert probed.sample("probe_up", target="started") is None


# --- cluster and Kubernetes -------------------------------------------------------------------


def test_cluster_gauges_without_a_view(harness: Harness) -> None:
    values = [harness.sample("cluster_members"), harness.sample("cluster_view_id")]

    assert values == [0.0, -1.0]


def test_cluster_gauges_follow_the_view_in_the_log(harness: Harness) -> None:
    harness.write_log(VIEW_LINE)

    values = [harness.sample("cluster_members"), harness.sample("cluster_view_id")]

    assert values == [2.0, 1.0]


def test_cluster_expected_members_is_absent_without_kubernetes(harness: Harness) -> None:
    assert harness.sample("cluster_expected_members") is None


def test_cluster_expected_members_counts_ready_peers_and_self(harness: Harness) -> None:
    harness.ctx.state.update_kube(kube_facts())

    assert harness.sample("cluster_expected_members") == 2.0


@pytest.mark.parametrize(("held", "expected"), [(True, 1.0), (False, 0.0)], ids=["held", "free"])
def test_kill_budget_held_follows_the_kube_facts(
    harness: Harness, held: bool, expected: float
) -> None:
    harness.ctx.state.update_kube(kube_facts(kill_slot_held=held))

    assert harness.sample("kill_budget_held") == expected


def test_kill_budget_held_is_zero_without_kubernetes(harness: Harness) -> None:
    assert harness.sample("kill_budget_held") == 0.0


def test_kube_api_errors_total_comes_from_the_context(harness: Harness) -> None:
    harness.ctx.kube_api_errors[("list_pods", "403")] = 3
    harness.ctx.kube_api_errors[("create_event", "timeout")] = 1

    values = [
        harness.sample("kube_api_errors_total", operation="list_pods", code="403"),
        harness.sample("kube_api_errors_total", operation="create_event", code="timeout"),
    ]

    assert values == [3.0, 1.0]


# --- registry ---------------------------------------------------------------------------------


def test_build_info_carries_the_version(harness: Harness) -> None:
    assert harness.sample("build_info", version=__version__) == 1.0


def test_process_metrics_are_on_the_injected_registry(harness: Harness) -> None:
    text = generate_latest(harness.ctx.registry).decode()

    assert ("python_info" in text, "process_start_time_seconds" in text) == (True, True)


def test_nothing_is_registered_on_the_global_registry(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    assert REGISTRY.get_sample_value(P + "live") is None


def test_two_contexts_in_one_process_do_not_collide(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_harness(tmp_path / "a")
    second = make_harness(tmp_path / "b")
    first.write_log(STARTED_LINE)
    first.source.close()
    second.source.close()

    assert (first.sample("started"), second.sample("started")) == (1.0, 0.0)


def _counter_lines(text: bytes) -> list[str]:
    """Sample lines of this module's counters (process CPU time moves between scrapes)."""
    return [
        line
        for line in text.decode().splitlines()
        if line.startswith(P) and "_total" in line.split(" ")[0]
    ]
