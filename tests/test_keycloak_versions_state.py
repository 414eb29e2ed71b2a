"""Keycloak 26.6+ bootstraps after its 'started' line (server-async-bootstrap, on by default
with the health endpoints): the boot lines that follow 'started' belong to the same boot.

Seen for real on 26.7.3 (tests/data/realkc/26.7.3-*): 'started in', then the migration,
ISPN000556/ISPN000078/ISPN000079, 'Node name:', and last 'Bootstrap completed in'.  Before,
the first of those lines began a new boot that never started (analyze: not_started).
At the end: 26.4.7's JGroups logs send failures to a member that has left the view.
"""

from __future__ import annotations

from sidecar.core.events import ClusterView, EventKind, LogEvent
from sidecar.core.state import MonitorState

T0 = 1000.0


def started() -> LogEvent:
    return LogEvent(
        EventKind.STARTUP_COMPLETE, rule="quarkus-started", boot_marker=True, once_per_boot=True
    )


def marker(rule: str, *, once: bool = False) -> LogEvent:
    return LogEvent(EventKind.STARTUP_PROGRESS, rule=rule, boot_marker=True, once_per_boot=once)


BOOTSTRAP_DONE = LogEvent(
    EventKind.STARTUP_PROGRESS, reason="bootstrap", rule="bootstrap-completed", boot_marker=True
)


def replay(*events: LogEvent) -> MonitorState:
    state = MonitorState(T0)
    for offset, event in enumerate(events):
        state.apply(event, T0 + offset)
    return state


def test_boot_lines_after_an_async_started_line_are_the_same_boot() -> None:
    state = replay(
        started(),
        marker("ispn-marshaller"),
        marker("jgroups-start"),
        marker("node-name", once=True),
        BOOTSTRAP_DONE,
    )
    assert state.boot.number == 0
    assert state.boot.complete_at is not None
    assert not state.boot.bootstrapping


def test_a_second_started_line_is_a_new_boot() -> None:
    """A 26.7 restart appended to the same log (no shutdown line after a SIGKILL) shows
    first by its own 'started' line: no boot line comes before it."""
    state = replay(started(), marker("jgroups-start"), BOOTSTRAP_DONE, started())
    assert state.boot.number == 1
    assert state.boot.complete_at is not None


def test_after_the_bootstrap_a_boot_line_is_a_new_boot() -> None:
    state = replay(started(), marker("jgroups-start"), BOOTSTRAP_DONE, marker("jgroups-start"))
    assert state.boot.number == 1
    assert state.boot.complete_at is None


def test_a_synchronous_boot_ends_at_started() -> None:
    """26.4/26.5: the boot lines come before 'started'; one after it is the next boot."""
    state = replay(marker("ispn-marshaller"), marker("node-name", once=True), started())
    assert not state.boot.bootstrapping
    state.apply(marker("ispn-marshaller"), T0 + 10)
    assert state.boot.number == 1


def test_a_failed_async_bootstrap_then_boot_lines_are_a_new_boot() -> None:
    fatal = LogEvent(EventKind.STARTUP_FATAL, reason="liquibase")
    state = replay(started(), marker("jgroups-start"), fatal, marker("jgroups-start"))
    assert state.boot.number == 1


# --- unreachable-peer evidence about a member that left (seen for real on 26.4.7) ----------


def view(view_id: int, *members: str) -> LogEvent:
    seen = ClusterView(view_id, members[0], members, len(members), False, "ISPN")
    return LogEvent(EventKind.CLUSTER_VIEW, view=seen)


def unreachable(node: str) -> LogEvent:
    return LogEvent(EventKind.CLUSTER_DEGRADED, reason="peer_unreachable", node=node)


def test_send_failures_to_a_departed_member_are_no_evidence() -> None:
    """26.4.7's JGroups keeps logging 'failed sending message to kc1' after kc1 has left."""
    state = replay(view(1, "kc0", "kc1"), view(2, "kc0"), unreachable("kc1:"), unreachable("kc1:"))
    assert state.degraded_at is None


def test_send_failures_to_a_member_of_the_view_count() -> None:
    state = replay(view(1, "kc0", "kc1(v=16.0.14)"), unreachable("kc1:"), unreachable("kc1:"))
    assert state.degraded_reason == "peer_unreachable"


def test_a_view_without_the_unreachable_peer_resolves_it() -> None:
    """The survivor of a SIGKILLed peer: two send failures, then the view drops the peer."""
    state = replay(view(1, "kc0", "kc1"), unreachable("kc1:"), unreachable("kc1:"), view(2, "kc0"))
    assert state.degraded_at is None
