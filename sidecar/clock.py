"""Time as a dependency: the pure core never reads the clock itself."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """``monotonic()`` for durations, ``wall()`` (epoch seconds) for display and the API."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests, ``analyze`` and replays)."""

    def __init__(self, start: float = 1_000_000.0, wall_offset: float = 0.0) -> None:
        self.now = start
        self.wall_offset = wall_offset

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    def advance(self, seconds: float) -> None:
        self.now += seconds
