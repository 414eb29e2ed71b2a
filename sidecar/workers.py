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
    def mtime_wall(self) -> float | None: ...


class Waiter(Protocol):
    async def wait(self, timeout_seconds: float | None = None) -> None: ...


class Tailer:
    """Feeds the pipeline from a source; first replays the existing file (log time)."""

    def __init__(
        self, ctx: Context, source: Source, waiter: Waiter, recovered: asyncio.Event
    ) -> None:
        self._ctx = ctx
        self._source = source
        self._waiter = waiter
        self._recovered = recovered
        self._replayed_any = False
        self._was_present: bool | None = None

    async def run(self, stop: asyncio.Event) -> None:
        poll_seconds = self._ctx.settings.log_poll_interval_seconds
        since_yield = 0
        while not stop.is_set():
            chunk = self._source.poll(DEFAULT_POLL_MAX_BYTES)
            if chunk:
                self._feed(chunk)
                since_yield += len(chunk)
                if since_yield >= _YIELD_EVERY_BYTES or self._recovered.is_set():
                    since_yield = 0
                    await asyncio.sleep(0)
                continue
            self._note_presence()
            if not self._recovered.is_set() and self._source.caught_up:
                self._finish_recovery()
            if self._ctx.pipeline.has_pending and self._recovered.is_set():
                await self._waiter.wait(FLUSH_AFTER_SECONDS)
                chunk = self._source.poll(DEFAULT_POLL_MAX_BYTES)
                if chunk:
                    self._feed(chunk)
                else:
                    self._ctx.pipeline.flush(self._ctx.clock.monotonic())
                continue
            await self._waiter.wait(poll_seconds)

    def _feed(self, chunk: bytes) -> None:
        ctx = self._ctx
        now = ctx.clock.monotonic()
        if self._recovered.is_set():
            ctx.pipeline.feed(chunk, now)
        else:
            if not self._replayed_any:
                self._replayed_any = True
                # history is replayed in log time: its origin until the first timestamp
                ctx.state.boot.started_at = 0.0
            ctx.pipeline.feed(chunk, None)
        ctx.state.last_line_at = now

    def _finish_recovery(self) -> None:
        """Map the replayed history from log time onto the monotonic clock."""
        ctx = self._ctx
        if self._replayed_any:
            ctx.pipeline.flush(None)
            last = ctx.pipeline.last_log_time or 0.0
            mtime = self._source.mtime_wall
            age = max(0.0, ctx.clock.wall() - mtime) if mtime is not None else 0.0
            ctx.state.shift_times(ctx.clock.monotonic() - age - last)
            ctx.state.last_line_at = ctx.clock.monotonic() - age
        ctx.state.log_caught_up = True
        self._recovered.set()
        log.info(
            "Log replay finished",
            extra={"lines": ctx.pipeline.lines_total, "boot": ctx.state.boot.number},
        )

    def _note_presence(self) -> None:
        present = self._source.present
        self._ctx.state.log_present = present
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
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._probe(session, name, url), name=f"probe-{name}")
                    for name, url in targets.items()
                ]
            for task in tasks:
                self._record(task.result())
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

    def _record(self, result: ProbeResult) -> None:
        self._ctx.state.record_probe(result, result.observed_at)
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
    """Track verdict transitions (log them) and carry membership evidence forward, on every
    state change and at least every ``interval_seconds`` (deadlines pass without a change);
    one last observation at stop, so the final transitions are in the log.  Each round also
    lets the housekeeper give memory back after a burst of log.  Waking only on change keeps
    an idle sidecar at one wake-up a second here (the cost of idling is its wake-ups)."""
    changed = ctx.changes.subscribe()
    while True:
        observe_verdicts(ctx)
        if stop.is_set():
            return
        ctx.housekeeper.observe(ctx.pipeline.bytes_total, ctx.clock.monotonic())
        await sleep_until(changed, interval_seconds, clear=True)


def observe_verdicts(ctx: Context) -> None:
    now = ctx.clock.monotonic()
    verdicts = ctx.verdicts()
    membership = verdicts.membership
    evidence = membership is not None and not membership.ok and not membership.unknown
    ctx.state.set_membership_evidence(membership.since if evidence and membership else None)
    for change in ctx.tracker.observe(verdicts, now):
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
