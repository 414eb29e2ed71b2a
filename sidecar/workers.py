"""Eternal loops connecting the edges (log source, prober) to the state.

Expected trouble (missing file, refused connection) is handled inside and shows in state and
metrics; anything unexpected escapes and ends the daemon (crash-only: the kubelet restarts
the sidecar, never Keycloak).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

import aiohttp

from sidecar.clock import sleep_until
from sidecar.context import Context
from sidecar.core.events import ProbeResult
from sidecar.ingest import LineSink
from sidecar.log.source import DEFAULT_POLL_MAX_BYTES
from sidecar.probe import probe_http

log = logging.getLogger(__name__)

#: a record with no newline-terminated successor is complete after this much quiet
FLUSH_AFTER_SECONDS = 0.02
#: while catching up, yield to the event loop after this many bytes
_YIELD_EVERY_BYTES = 8 << 20


class Source(Protocol):
    def poll(self, max_bytes: int = ...) -> bytes: ...

    @property
    def present(self) -> bool: ...

    @property
    def caught_up(self) -> bool: ...

    @property
    def drained(self) -> bool: ...

    @property
    def mtime_wall(self) -> float | None: ...


class Waiter(Protocol):
    async def wait(self, timeout_seconds: float | None = None) -> None: ...


class Tailer:
    """Reads a source (a file like ``tail -F``, or standard input) into the ingest door.

    A file's existing content is history: the door replays it in log time and ends the
    replay once the source is caught up (``LineSink``)."""

    def __init__(self, ctx: Context, source: Source, waiter: Waiter, sink: LineSink) -> None:
        self._ctx = ctx
        self._source = source
        self._waiter = waiter
        self._sink = sink
        self._was_present: bool | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """One poll per wake-up when lines trickle in: a poll that read to the end of what
        there is (``drained``) is not repeated at once, and the poll after the flush wait
        is the next round's poll."""
        poll_seconds = self._ctx.settings.log_poll_interval_seconds
        since_yield = 0
        flush_due = False
        while not stop.is_set():
            self._ctx.beat("tail-worker")
            fed = self.pump()
            if fed:
                flush_due = False
                since_yield += fed
                if not self._source.drained:
                    if since_yield >= _YIELD_EVERY_BYTES or not self._sink.replaying:
                        since_yield = 0
                        await asyncio.sleep(0)
                    continue
                since_yield = 0  # the wait below yields
            elif flush_due:
                # FLUSH_AFTER_SECONDS passed with nothing new: the held record is complete
                flush_due = False
                self._sink.idle()
            self.settle()
            if self._ctx.pipeline.has_pending and not self._sink.replaying:
                await self._waiter.wait(FLUSH_AFTER_SECONDS)
                flush_due = True
                continue
            await self._waiter.wait(poll_seconds)

    def pump(self) -> int:
        """Read once from the source into the door; the number of bytes fed."""
        chunk = self._source.poll(DEFAULT_POLL_MAX_BYTES)
        if chunk:
            self._sink.feed(chunk)
        return len(chunk)

    def settle(self) -> None:
        """Nothing more to read now: note the source's presence; a caught-up source ends
        the replay."""
        self._note_presence()
        if self._sink.replaying and self._source.caught_up:
            mtime = self._source.mtime_wall
            age = max(0.0, self._ctx.clock.wall() - mtime) if mtime is not None else 0.0
            self._sink.end_replay(age)

    def after_quiet(self) -> None:
        """``FLUSH_AFTER_SECONDS`` passed: with still nothing new, the record held back is
        complete."""
        if not self.pump():
            self._sink.idle()

    def _note_presence(self) -> None:
        present = self._source.present
        self._sink.present(present)
        if present != self._was_present:
            self._was_present = present
            if present:
                log.info("Log source available")
            else:
                log.warning("Log source missing; waiting for it (no verdict depends on it)")


class Prober:
    """Probes every configured Keycloak target on its own schedule; results are cached."""

    def __init__(
        self,
        ctx: Context,
        record_metrics: Callable[[ProbeResult], None],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._ctx = ctx
        self._record_metrics = record_metrics
        self._ssl_context = ssl_context
        self._last_ok: dict[str, bool] = {}

    async def run(self, stop: asyncio.Event, session: aiohttp.ClientSession) -> None:
        settings = self._ctx.settings
        targets = settings.probe_targets()
        while not stop.is_set():
            self._ctx.beat("probe-worker")
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._probe(session, name, url), name=f"probe-{name}")
                    for name, url in targets.items()
                ]
            for task in tasks:
                self.record(task.result())
            await sleep_until(stop, settings.probe_interval_seconds)

    async def _probe(self, session: aiohttp.ClientSession, name: str, url: str) -> ProbeResult:
        return await probe_http(
            session,
            target=name,
            url=url,
            timeout_seconds=self._ctx.settings.probe_timeout_seconds,
            clock=self._ctx.clock,
            ssl_context=self._ssl_context,
        )

    def record(self, result: ProbeResult) -> None:
        """Store one result, count it, run the core step."""
        self._ctx.state.record_probe(result, result.observed_at)
        self._ctx.verdicts()
        self._record_metrics(result)
        previous = self._last_ok.get(result.target)
        if previous != result.ok:
            self._last_ok[result.target] = result.ok
            log.info(
                "Keycloak probe result changed",
                extra={
                    "target": result.target,
                    "ok": result.ok,
                    "error": result.error,
                    "status": result.status,
                },
            )


async def verdict_worker(ctx: Context, stop: asyncio.Event, interval_seconds: float) -> None:
    """Run the core step at least every ``interval_seconds`` (deadlines pass without a
    state change) and log the verdict transitions it found, on every state change too;
    one last round at stop, so the final transitions are in the log.  Each round also lets
    the housekeeper give memory back after a burst of log.  Waking only on change keeps an
    idle sidecar at one wake-up a second here (the cost of idling is its wake-ups)."""
    changed = ctx.changes.subscribe()
    while True:
        ctx.beat("verdict-worker")
        ctx.verdicts()
        log_transitions(ctx)
        if stop.is_set():
            return
        ctx.housekeeper.observe(ctx.pipeline.bytes_total, ctx.clock.monotonic())
        await sleep_until(changed, interval_seconds, clear=True)


def log_transitions(ctx: Context) -> None:
    """Log (and forget) the transitions the core step recorded."""
    while ctx.transitions:
        change, verdicts = ctx.transitions.popleft()
        verdict = getattr(verdicts, change.verdict)
        log.info(
            "Verdict changed",
            extra={
                "verdict": change.verdict,
                "ok": change.ok,
                "reasons": list(change.reasons),
                "checks": [
                    {"name": c.name, "reason": c.reason, "detail": c.detail}
                    for c in verdict.checks
                    if not c.ok
                ],
                "boot": ctx.state.boot.number,
            },
        )
