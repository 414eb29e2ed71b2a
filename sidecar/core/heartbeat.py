"""The sidecar's own health: each eternal worker stamps a heartbeat when it makes progress.

In the style of exechealthz's staleness guard: the answer of ``/healthz`` is computed from
the age of the oldest heartbeat, never from Keycloak's state.  A worker is watched from its
first beat on (a worker that is not configured, or that deliberately parks, never beats);
``stalled`` lists every watched worker whose last beat is older than the threshold.
Pure: the caller passes the monotonic ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stall:
    """A worker that made no progress for ``age_seconds``."""

    worker: str
    age_seconds: float


class Heartbeats:
    """Last progress time of each worker, by task name (``tail-worker`` ...)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def beat(self, worker: str, now: float) -> None:
        self._last[worker] = now

    def ages(self, now: float) -> dict[str, float]:
        """Seconds since each watched worker's last beat, by name (sorted)."""
        return {name: max(0.0, now - at) for name, at in sorted(self._last.items())}

    def stalled(self, now: float, threshold_seconds: float) -> tuple[Stall, ...]:
        return tuple(
            Stall(name, age) for name, age in self.ages(now).items() if age > threshold_seconds
        )
