"""The daemon's shared objects, built once by the runtime and passed to edges."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from sidecar.clock import Clock
from sidecar.core.health import Policy, Transition, TransitionTracker, Verdicts, evaluate
from sidecar.core.heartbeat import Heartbeats
from sidecar.core.state import MonitorState
from sidecar.housekeeping import Housekeeper
from sidecar.log.pipeline import Pipeline
from sidecar.settings import Settings

#: how long an evaluated verdict may be served again while the state is unchanged
REUSE_SECONDS = 0.05
#: transitions waiting to be logged; more between two rounds of the verdict worker are dropped
TRANSITIONS_KEPT = 64
#: distinct monotonic moments whose wall time is remembered (see ``Context.to_wall``)
WALL_MEMO_SIZE = 1024
#: a log source without a new line this long is shown as "quiet" (information only)
LOG_QUIET_SECONDS = 600.0


class ChangeFeed:
    """Wakes every subscriber on a state change (``MonitorState.on_change``) or a stop.

    Each subscriber owns an event it clears itself, so no waiter can consume another's
    wake-up.  Subscribers are the daemon's few eternal loops, subscribed once.
    """

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append(event)
        return event

    def notify(self) -> None:
        for event in self._events:
            event.set()


class SourceStats(Protocol):
    """What the log source tells about itself (``LogFile``, ``StdinReader``, API stream)."""

    @property
    def present(self) -> bool: ...

    @property
    def caught_up(self) -> bool: ...

    @property
    def lines_truncated(self) -> int: ...

    @property
    def last_error(self) -> str: ...


@dataclass
class Context:
    """Everything an edge needs; no globals anywhere."""

    settings: Settings
    clock: Clock
    state: MonitorState
    policy: Policy
    pipeline: Pipeline
    registry: CollectorRegistry
    tracker: TransitionTracker
    housekeeper: Housekeeper
    source: SourceStats | None = None
    #: counts of Kubernetes API errors by (operation, code)
    kube_api_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    #: state changes and stop requests, for the loops that follow the verdicts
    changes: ChangeFeed = field(default_factory=ChangeFeed)
    #: verdict transitions the core step found, not yet logged (the verdict worker logs them)
    transitions: deque[tuple[Transition, Verdicts]] = field(
        default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT)
    )
    #: each eternal worker's last progress, for ``/healthz`` (the sidecar's own health)
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    _cached: tuple[int, float, Verdicts] | None = field(default=None, repr=False)
    _walls: dict[float, float] = field(default_factory=dict, repr=False)

    def verdicts(self) -> Verdicts:
        """The core step: evaluate at now (pure, microseconds), carry the membership
        evidence forward in the state, and let the tracker see the verdicts.

        Every caller runs the same step: the ingest door and the other writers right after
        each state change, handlers and the metrics collector when asked, the verdict
        worker at least every second (deadlines pass without a change).  So no answer
        depends on a worker having run.  A verdict is reused while the state is unchanged
        for at most ``REUSE_SECONDS``: every log event, probe result or Kubernetes fact
        bumps the state's version, so evidence is reflected at once; only the passing of
        time (deadlines of minutes) is seen up to that late.
        """
        now = self.clock.monotonic()
        cached = self._cached
        version = self.state.version
        if cached is not None and cached[0] == version and 0 <= now - cached[1] < REUSE_SECONDS:
            return cached[2]
        verdicts = evaluate(self.state.snapshot(), now, self.policy)
        self.state.carry_membership_evidence(verdicts.membership)
        changed = self.tracker.observe(verdicts, now)
        if changed:
            self.transitions.extend((change, verdicts) for change in changed)
            # a verdict that changed with time alone (a grace or deadline ran out) wakes the
            # loops that follow verdicts (the kill budget, Events) as a state change does
            self.changes.notify()
        self._cached = (version, now, verdicts)
        return verdicts

    def beat(self, worker: str) -> None:
        """``worker`` made progress now (one loop round done)."""
        self.heartbeats.beat(worker, self.clock.monotonic())

    def to_wall(self, moment: float | None) -> float | None:
        """A time on the monotonic axis as epoch seconds, converted once per moment, so
        every rendering of one check's ``since`` (JSON, ``?verbose``, ``/status``, the
        status page) shows the same timestamp even when the wall clock is stepped."""
        if moment is None:
            return None
        wall = self._walls.get(moment)
        if wall is None:
            if len(self._walls) >= WALL_MEMO_SIZE:
                self._walls.clear()
            wall = self.clock.wall() - (self.clock.monotonic() - moment)
            self._walls[moment] = wall
        return wall

    def log_source_state(self) -> tuple[str, str]:
        """The log source's state as information (never a Keycloak check): ``ok``,
        ``missing``, ``unreadable`` or ``quiet`` (no line for ``LOG_QUIET_SECONDS``),
        with a detail."""
        source = self.source
        if source is None:
            return "missing", "no log source started yet"
        if source.last_error:
            return "unreadable", source.last_error
        if not source.present:
            return "missing", "waiting for the log source to appear"
        last = self.state.last_line_at
        if last is not None and self.clock.monotonic() - last >= LOG_QUIET_SECONDS:
            quiet_minutes = int((self.clock.monotonic() - last) // 60)
            return "quiet", f"no line for {quiet_minutes} min"
        return "ok", ""
