"""The change feed that wakes the verdict loops: every subscriber, at once, and only once."""

from __future__ import annotations

import asyncio
import time

from sidecar.clock import sleep_until
from sidecar.context import ChangeFeed
from sidecar.core.events import EventKind, LogEvent
from sidecar.core.state import MonitorState


async def test_one_change_wakes_every_subscriber_once() -> None:
    feed = ChangeFeed()
    first, second = feed.subscribe(), feed.subscribe()
    feed.notify()
    await asyncio.wait_for(sleep_until(first, 5.0, clear=True), 1.0)
    assert not first.is_set()
    assert second.is_set()  # the first one's wake-up did not consume the second's
    await asyncio.wait_for(sleep_until(second, 5.0, clear=True), 1.0)


async def test_without_a_change_the_wait_ends_after_its_timeout() -> None:
    changed = ChangeFeed().subscribe()
    started = time.monotonic()
    await sleep_until(changed, 0.05, clear=True)
    assert time.monotonic() - started >= 0.04


async def test_a_waiting_loop_wakes_when_the_state_changes() -> None:
    feed = ChangeFeed()
    state = MonitorState(0.0)
    state.on_change = feed.notify
    changed = feed.subscribe()
    waiter = asyncio.create_task(sleep_until(changed, 30.0, clear=True), name="test-waiter")
    await asyncio.sleep(0.01)
    assert not waiter.done()
    state.apply(LogEvent(EventKind.STARTUP_COMPLETE, line=1, rule="started"), 1.0)
    await asyncio.wait_for(waiter, 1.0)  # long before the 30 s timeout
    assert state.version == 1
