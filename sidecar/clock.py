"""Time as a dependency: the pure core never reads the clock itself."""

from __future__ import annotations

import asyncio
import contextlib
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


async def sleep_until(event: asyncio.Event, seconds: float | None, *, clear: bool = False) -> None:
    """Sleep ``seconds``, or less when ``event`` is (or becomes) set: the one "wait for a stop
    or a change" of the daemon's loops.  ``clear``: consume the wake-up (a change feed
    subscriber's own event), so the next call waits again."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
    if clear:
        event.clear()
