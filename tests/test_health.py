"""The policy as tables: (what happened, when) -> verdicts and reasons."""

from __future__ import annotations

import pytest

from sidecar.core.events import ClusterView, EventKind, LogEvent, ProbeResult
from sidecar.core.health import Policy, TransitionTracker, evaluate
from sidecar.core.membership import KubeFacts
from sidecar.core.state import MonitorState

POLICY = Policy(startup_deadline_seconds=1200, progress_timeout_seconds=300,
                liveness_grace_seconds=60, degraded_hold_seconds=60, db_down_hold_seconds=60)
T0 = 1000.0


def ev(kind: EventKind, reason: str = "", **kw: object) -> LogEvent:
    return LogEvent(kind, reason=reason, **kw)  # type: ignore[arg-type]


def state_with(*events: tuple[float, LogEvent], probes: tuple[str, ...] = ()) -> MonitorState:
    state = MonitorState(T0, probe_targets=probes)
    state.log_present = state.log_caught_up = True
    for at, event in events:
        state.apply(event, at)
    return state


def probe(target: str, ok: bool, error: str = "", *, database_down: bool = False,
          checks: tuple[object, ...] = ()) -> ProbeResult:
    return ProbeResult(target=target, ok=ok, status=200 if ok else 503, latency_seconds=0.01,
                       error=error, keycloak_status="UP" if ok else "DOWN",
                       checks=checks, database_down=database_down, observed_at=0.0)  # type: ignore[arg-type]


STARTED = ev(EventKind.STARTUP_COMPLETE)
BOOT_LINE = ev(EventKind.STARTUP_PROGRESS, boot_marker=True, rule="jboss-modules",
               once_per_boot=True)
CASES = [
    # (id, events, now, started, live, ready, reasons)
    ("booting", [(T0 + 5, ev(EventKind.STARTUP_PROGRESS))], T0 + 10, False, True, False,
     ["not_started"]),
    ("started", [(T0 + 30, STARTED)], T0 + 31, True, True, True, []),
    ("liquibase fatal", [(T0 + 8, ev(EventKind.STARTUP_FATAL, "liquibase"))], T0 + 9,
     False, False, False, ["startup_fatal", "not_started"]),
    ("db unreachable is not a kill", [(T0 + 8, ev(EventKind.DB_UNAVAILABLE, "refused"))],
     T0 + 9, False, True, False, ["not_started", "db_unavailable"]),
    ("generic fatal caused by db is not a kill",
     [(T0 + 8, ev(EventKind.STARTUP_FATAL, "failed_to_start")),
      (T0 + 8, ev(EventKind.DB_UNAVAILABLE, "timeout"))],
     T0 + 9, False, True, False, ["not_started", "db_unavailable"]),
    ("generic fatal, database error before this boot: a kill",
     [(T0 - 100, ev(EventKind.DB_UNAVAILABLE, "refused")),
      (T0 + 8, ev(EventKind.STARTUP_FATAL, "failed_to_start"))],
     T0 + 9, False, False, False, ["startup_fatal", "not_started"]),
    ("specific cause beats db noise",
     [(T0 + 8, ev(EventKind.DB_UNAVAILABLE, "connection_failed")),
      (T0 + 9, ev(EventKind.STARTUP_FATAL, "liquibase"))],
     T0 + 10, False, False, False, ["startup_fatal", "not_started", "db_unavailable"]),
    ("datasource misconfigured at startup: a kill (the restart re-reads the fixed Secret)",
     [(T0 + 8, ev(EventKind.DB_UNAVAILABLE, "connection_failed")),
      (T0 + 8, ev(EventKind.STARTUP_FATAL, "db_config"))],
     T0 + 9, False, False, False, ["startup_fatal", "not_started", "db_unavailable"]),
    ("oom after start", [(T0 + 30, STARTED), (T0 + 90, ev(EventKind.RUNTIME_FATAL,
                                                          "out_of_memory"))],
     T0 + 91, True, False, False, ["runtime_fatal"]),
    ("slow boot within deadline", [(T0 + 100, ev(EventKind.STARTUP_PROGRESS))], T0 + 1199,
     False, True, False, ["not_started"]),
    ("past deadline but progress keeps coming", [(T0 + 1150, ev(EventKind.STARTUP_PROGRESS))],
     T0 + 1400, False, True, False, ["not_started"]),
    ("hung: past deadline and silent", [(T0 + 100, BOOT_LINE)],
     T0 + 1201, False, False, False, ["startup_hung", "not_started"]),
    ("shutdown", [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.SHUTDOWN, "stopped"))], T0 + 61,
     True, True, False, ["shutting_down"]),
    ("degraded recently", [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.CLUSTER_DEGRADED,
                                                            "state_transfer"))],
     T0 + 100, True, True, False, ["cluster_degraded"]),
    ("degraded long ago", [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.CLUSTER_DEGRADED,
                                                            "state_transfer"))],
     T0 + 200, True, True, True, []),
    # a crashed peer's survivor logs "possible split brain" too: it stays in the Services
    ("split brain alone keeps the replica ready",
     [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.CLUSTER_DEGRADED, "split_brain"))],
     T0 + 61, True, True, True, []),
    ("runtime db errors: ready false, live true",
     [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.DB_UNAVAILABLE, "refused"))],
     T0 + 61, True, True, False, ["db_unavailable"]),
    ("credentials refused after startup: ready false, live true",
     [(T0 + 30, STARTED), (T0 + 60, ev(EventKind.STARTUP_FATAL, "db_config"))],
     T0 + 61, True, True, False, ["db_unavailable"]),
]


@pytest.mark.parametrize(("events", "now", "started", "live", "ready", "reasons"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_table(events: list[tuple[float, LogEvent]], now: float, started: bool,
                      live: bool, ready: bool, reasons: list[str]) -> None:
    verdicts = evaluate(state_with(*events).snapshot(), now, POLICY)
    assert (verdicts.started.ok, verdicts.live.ok, verdicts.ready.ok) == (started, live, ready)
    assert list(dict.fromkeys([*verdicts.live.reasons, *verdicts.ready.reasons])) == reasons


def test_no_log_means_no_hang_verdict() -> None:
    """Silence from a missing log is the sidecar's blind spot, never evidence."""
    state = MonitorState(T0)
    assert evaluate(state.snapshot(), T0 + 10_000, POLICY).live.ok


def test_new_boot_rearms_after_fatal() -> None:
    state = state_with((T0 + 8, ev(EventKind.STARTUP_FATAL, "liquibase")))
    assert not evaluate(state.snapshot(), T0 + 9, POLICY).live.ok
    recorded = state.apply(ev(EventKind.STARTUP_PROGRESS, boot_marker=True, rule="jboss-modules",
                              once_per_boot=True), T0 + 30)
    assert [e.kind for e in recorded] == [EventKind.BOOT, EventKind.STARTUP_PROGRESS]
    verdicts = evaluate(state.snapshot(), T0 + 31, POLICY)
    assert verdicts.live.ok and not verdicts.started.ok
    # fresh deadline: not hung 1201 s after the *old* boot began
    assert evaluate(state.snapshot(), T0 + 1210, POLICY).live.ok


def test_startup_probe_passes_when_startup_failed() -> None:
    """/startupz lets the liveness probe act on a failed boot at once."""
    state = state_with((T0 + 8, ev(EventKind.STARTUP_FATAL, "port_in_use")))
    verdicts = evaluate(state.snapshot(), T0 + 9, POLICY)
    assert verdicts.startup_probe.ok and not verdicts.live.ok and not verdicts.started.ok
    booting = evaluate(state_with().snapshot(), T0 + 9, POLICY)
    assert not booting.startup_probe.ok


def test_liveness_endpoint_needs_answers_for_the_grace() -> None:
    state = state_with((T0 + 30, STARTED), probes=("live",))
    for at in (T0 + 40, T0 + 95, T0 + 100):  # the prober renews its answer
        state.record_probe(probe("live", ok=False, error="http_status"), at)
    assert evaluate(state.snapshot(), T0 + 99, POLICY).live.ok
    assert not evaluate(state.snapshot(), T0 + 101, POLICY).live.ok


def test_a_stale_failing_answer_is_no_evidence() -> None:
    """A prober that stalls after a failing answer must not turn it into a kill: the
    sidecar's own /healthz restarts the sidecar instead."""
    state = state_with((T0 + 30, STARTED), probes=("live",))
    for at in (T0 + 40, T0 + 90):
        state.record_probe(probe("live", ok=False, error="http_status"), at)
    assert not evaluate(state.snapshot(), T0 + 101, POLICY).live.ok
    stale = evaluate(state.snapshot(), T0 + 121, POLICY).live
    assert stale.ok


def test_liveness_grace_starts_at_the_start_not_at_a_failure_during_boot() -> None:
    """A live endpoint answering 503 while Keycloak boots is no evidence once it has started:
    the grace runs from the start."""
    state = state_with(probes=("live",))
    state.record_probe(probe("live", ok=False, error="http_status"), T0 + 5)
    state.apply(STARTED, T0 + 100)
    assert evaluate(state.snapshot(), T0 + 101, POLICY).live.ok
    state.record_probe(probe("live", ok=False, error="http_status"), T0 + 150)
    assert evaluate(state.snapshot(), T0 + 159, POLICY).live.ok
    failing = evaluate(state.snapshot(), T0 + 161, POLICY).live
    assert not failing.ok
    (check,) = [c for c in failing.checks if not c.ok]
    assert (check.reason, check.since) == ("liveness_probe_failing", T0 + 160)


def test_probe_timeouts_are_never_evidence() -> None:
    state = state_with((T0 + 30, STARTED), probes=("live",))
    state.record_probe(probe("live", ok=False, error="timeout"), T0 + 40)
    assert evaluate(state.snapshot(), T0 + 5000, POLICY).live.ok


def test_http_target_coming_back_rearms() -> None:
    state = state_with((T0 + 30, STARTED), probes=("ready",))
    state.record_probe(probe("ready", ok=True), T0 + 40)
    state.record_probe(probe("ready", ok=False, error="refused"), T0 + 100)
    state.record_probe(probe("ready", ok=False, error="http_status"), T0 + 110)
    assert state.boot.number == 1 and state.boot.cause == "http_restart"
    assert not evaluate(state.snapshot(), T0 + 111, POLICY).started.ok


def test_readiness_database_check_marks_db_down() -> None:
    state = state_with((T0 + 30, STARTED), probes=("ready",))
    state.record_probe(probe("ready", ok=False, error="http_status", database_down=True),
                       T0 + 40)
    verdicts = evaluate(state.snapshot(), T0 + 41, POLICY)
    assert verdicts.db_down and verdicts.live.ok
    assert "db_unavailable" in verdicts.ready.reasons


def test_kill_is_deferred_without_a_budget_slot() -> None:
    state = state_with((T0 + 8, ev(EventKind.STARTUP_FATAL, "liquibase")))
    state.update_kube(KubeFacts(api_ok=True, api_error="", own_pod="kc-0", peers=(),
                                kill_slot_held=False, budget_enabled=True, observed_at=T0))
    verdicts = evaluate(state.snapshot(), T0 + 9, POLICY)
    assert verdicts.live.ok and verdicts.kill_wanted == "startup_fatal"
    assert "kill_deferred" in verdicts.ready.reasons
    state.update_kube(KubeFacts(api_ok=True, api_error="", own_pod="kc-0", peers=(),
                                kill_slot_held=True, budget_enabled=True, observed_at=T0))
    assert not evaluate(state.snapshot(), T0 + 10, POLICY).live.ok


def test_duplicate_views_and_node_events_are_recorded_once() -> None:
    state = state_with()
    view = ClusterView(3, "a", ("a", "b"), 2, channel="ejb")
    assert state.apply(ev(EventKind.CLUSTER_VIEW, view=view), T0)
    assert state.apply(ev(EventKind.CLUSTER_VIEW, view=view), T0) == []
    assert state.apply(ev(EventKind.NODE_JOINED, node="b"), T0)
    assert state.apply(ev(EventKind.NODE_JOINED, node="b"), T0) == []


def test_tracker_reports_transitions_once() -> None:
    tracker = TransitionTracker(T0)
    state = state_with()
    first = tracker.observe(evaluate(state.snapshot(), T0, POLICY), T0)
    assert {c.verdict for c in first} == {"started", "live", "ready"}
    assert tracker.observe(evaluate(state.snapshot(), T0 + 1, POLICY), T0 + 1) == []
    state.apply(STARTED, T0 + 2)
    changes = tracker.observe(evaluate(state.snapshot(), T0 + 3, POLICY), T0 + 3)
    assert {(c.verdict, c.ok) for c in changes} == {("started", True), ("ready", True)}
    assert tracker.since("ready") == T0 + 3


def test_a_port_opening_after_a_fatal_line_does_not_rearm() -> None:
    """Keycloak's port opening late is not a restart: the fatal evidence stays."""
    state = state_with((T0 + 8, ev(EventKind.STARTUP_FATAL, "liquibase")), probes=("ready",))
    state.record_probe(probe("ready", ok=False, error="refused"), T0 + 9)
    state.record_probe(probe("ready", ok=False, error="http_status"), T0 + 14)
    assert state.boot.number == 0
    assert not evaluate(state.snapshot(), T0 + 15, POLICY).live.ok


def test_one_remote_timeout_is_routine_two_are_degraded() -> None:
    state = state_with((T0 + 30, STARTED),
                       (T0 + 40, ev(EventKind.CLUSTER_DEGRADED, "request_timeout")))
    assert evaluate(state.snapshot(), T0 + 41, POLICY).ready.ok
    state.apply(ev(EventKind.CLUSTER_DEGRADED, "request_timeout"), T0 + 50)
    assert "cluster_degraded" in evaluate(state.snapshot(), T0 + 51, POLICY).ready.reasons


def test_startup_only_causes_after_start_do_not_kill() -> None:
    """A keystore error from a realm's key provider at runtime is not a startup failure."""
    state = state_with((T0 + 30, STARTED))
    assert state.apply(ev(EventKind.STARTUP_FATAL, "tls"), T0 + 100) == []
    assert evaluate(state.snapshot(), T0 + 101, POLICY).live.ok
    assert state.apply(ev(EventKind.STARTUP_FATAL, "liquibase"), T0 + 102)
    assert not evaluate(state.snapshot(), T0 + 103, POLICY).live.ok


def _rearmed_by_api(state: MonitorState) -> None:
    state.rearm(T0 + 50, "container_restart")


def _http_gone_and_back(state: MonitorState) -> None:
    state.record_probe(probe("started", ok=False, error="http_status"), T0 + 10)
    state.record_probe(probe("started", ok=False, error="refused"), T0 + 20)
    state.record_probe(probe("started", ok=False, error="http_status"), T0 + 50)


def _nothing_seen(state: MonitorState) -> None:
    state.record_probe(probe("started", ok=False, error="http_status"), T0 + 10)


def _progress_without_boot_line(state: MonitorState) -> None:
    state.apply(ev(EventKind.STARTUP_PROGRESS), T0 + 50)


def _boot_line(state: MonitorState) -> None:
    state.apply(BOOT_LINE, T0 + 50)


BOOT_EVIDENCE = [
    # (id, what happened, hung at boot start + deadline + 1)
    ("no boot seen: log rotated, started target never succeeds", _nothing_seen, False),
    ("progress lines alone are no boot seen", _progress_without_boot_line, False),
    ("boot line in this log", _boot_line, True),
    ("container restart seen through the API", _rearmed_by_api, True),
    ("HTTP target gone and back", _http_gone_and_back, True),
]


@pytest.mark.parametrize(("happen", "hung"), [c[1:] for c in BOOT_EVIDENCE],
                         ids=[c[0] for c in BOOT_EVIDENCE])
def test_hung_boot_needs_a_boot_seen(happen: object, hung: bool) -> None:
    """startup_hung needs positive evidence that a boot began where the sidecar saw it."""
    state = state_with(probes=("started",))
    happen(state)  # type: ignore[operator]
    now = state.boot.started_at + POLICY.startup_deadline_seconds + 1
    verdicts = evaluate(state.snapshot(), now, POLICY)
    assert verdicts.live.ok is not hung
    assert ("startup_hung" in verdicts.live.reasons) is hung
    assert verdicts.ready.reasons[0] in ("not_started", "startup_hung")
    # /startupz never holds a boot it never saw: past the deadline the phase is over
    assert verdicts.startup_probe.ok


def test_unseen_boot_keeps_startup_probe_waiting_until_the_deadline() -> None:
    state = state_with()
    assert not evaluate(state.snapshot(), T0 + 1199, POLICY).startup_probe.ok
    after = evaluate(state.snapshot(), T0 + 1200, POLICY)
    assert after.startup_probe.ok and after.live.ok and not after.ready.ok
    assert after.startup_probe.checks[0].detail == "no boot seen in this log"


def test_a_broken_transfer_is_never_evidence() -> None:
    """A reset after the status line (error class 'transfer') is unknown, like a timeout."""
    state = state_with((T0 + 30, STARTED), probes=("live",))
    state.record_probe(probe("live", ok=False, error="transfer"), T0 + 40)
    verdicts = evaluate(state.snapshot(), T0 + 5000, POLICY)
    assert verdicts.live.ok and verdicts.kill_wanted == ""
    assert state.boot.number == 0  # not "gone and back" either
