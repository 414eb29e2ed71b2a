"""The daemon's shared objects, built once by the runtime and passed to edges."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from sidecar.clock import Clock
from sidecar.core.health import Policy, TransitionTracker, Verdicts, evaluate
from sidecar.core.state import MonitorState
from sidecar.housekeeping import Housekeeper
from sidecar.log.pipeline import Pipeline
from sidecar.settings import Settings

#: how long an evaluated verdict may be served again while the state is unchanged
REUSE_SECONDS = 0.05


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
    _cached: tuple[int, float, Verdicts] | None = field(default=None, repr=False)

    def verdicts(self) -> Verdicts:
        """Evaluate now (pure, microseconds): what handlers and the collector call.

        A verdict is reused while the state is unchanged for at most
        ``REUSE_SECONDS``: every log event, probe result or Kubernetes fact bumps
        the state's version, so evidence is reflected at once; only the passing of time
        (deadlines of minutes) is seen up to that late.
        """
        now = self.clock.monotonic()
        cached = self._cached
        version = self.state.version
        if cached is not None and cached[0] == version and 0 <= now - cached[1] < REUSE_SECONDS:
            return cached[2]
        verdicts = evaluate(self.state.snapshot(), now, self.policy)
        self._cached = (version, now, verdicts)
        return verdicts

    def to_wall(self, moment: float | None) -> float | None:
        """A time on the monotonic axis as epoch seconds."""
        if moment is None:
            return None
        return self.clock.wall() - (self.clock.monotonic() - moment)
