"""The one ingest door (``LineSink``): live lines, the Kubernetes stream, log-time replay."""

from __future__ import annotations

from daemon_harness import LIQUIBASE_LINE, START_SECONDS, STARTED_LINE, WALL_AT_START

from sidecar.clock import ManualClock
from sidecar.context import Context
from sidecar.ingest import LineSink
from sidecar.kubesink import CoreSink
from sidecar.log.rules import builtin_rules
from sidecar.runtime import build_context
from sidecar.settings import load_settings

FATAL = (
    "2024-12-07 17:52:01,100 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler] "
    "(main) ERROR: Failed to start server in (production) mode\n"
)
LATER = (
    "2024-12-07 17:52:11,100 INFO  [org.keycloak.services] (main) KC-SERVICES0050: "
    "Initializing master realm\n"
)


def context() -> tuple[Context, ManualClock]:
    clock = ManualClock(start=START_SECONDS, wall_offset=WALL_AT_START - START_SECONDS)
    settings = load_settings({"no_kubernetes": "true", "keycloak_url": ""}, {})
    return build_context(settings, builtin_rules(), clock), clock


def test_the_kubernetes_log_stream_enters_through_the_same_door() -> None:
    ctx, clock = context()
    sink = CoreSink(ctx, LineSink(ctx, replay=False))

    sink.feed_log((STARTED_LINE + "\n").encode())
    sink.log_idle()

    state = ctx.state
    assert (state.log_present, state.log_caught_up, state.last_line_at) == (
        True,
        True,
        clock.monotonic(),
    )
    assert ctx.verdicts().started.ok
    assert ("started", True) in [(t.verdict, t.ok) for t, _ in ctx.transitions]


def test_a_live_line_is_judged_at_once() -> None:
    ctx, _ = context()
    lines = LineSink(ctx, replay=False)

    lines.feed((LIQUIBASE_LINE + "\n").encode())
    lines.idle()

    assert ctx.verdicts().live.reasons == ("startup_fatal",)


def test_history_is_replayed_in_log_time_then_moved_onto_the_clock() -> None:
    ctx, clock = context()
    lines = LineSink(ctx, replay=True)

    lines.feed((FATAL + LATER).encode())
    lines.idle()
    replayed_at = ctx.state.boot.fatal_at
    transitions_while_replaying = len(ctx.transitions)
    lines.end_replay(age_seconds=30.0)

    # in log time the fatal line is at its own timestamp; after the replay it lies 10 s
    # before the last line, which was written 30 s ago
    assert replayed_at is not None and replayed_at > 1.7e9
    assert ctx.state.boot.fatal_at == clock.monotonic() - 30.0 - 10.0
    assert ctx.state.last_line_at == clock.monotonic() - 30.0
    assert (transitions_while_replaying, lines.replaying, ctx.state.log_caught_up) == (
        0,
        False,
        True,
    )
    assert not ctx.verdicts().live.ok
