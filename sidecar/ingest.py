"""The one door from a log source into the core: ``LineSink.feed(chunk)`` and ``idle()``.

Every source (the file tail, standard input, the Kubernetes log stream) hands its byte
chunks of complete lines to a ``LineSink``; nothing else feeds the pipeline or writes the
log's facts into the state.  After each chunk the core step runs (``Context.verdicts``), so
an answer of ``/livez`` never waits for a worker to carry anything forward.

Log-time replay lives here too, and only here.  A sidecar that starts next to a Keycloak
that has been running reads the existing file first; its lines are old, so they are read on
the log's own time axis (``Pipeline.feed(chunk, None)``, the timestamps in the lines) and,
once the file is caught up, ``end_replay`` moves the state onto the monotonic clock
(``MonitorState.shift_times``) and opens ``replayed``, the gate the probe and Kubernetes
workers wait behind (their facts are on the monotonic axis).  A sink made with
``replay=False`` is live from the start (stdin after its first read, the API stream).
"""

from __future__ import annotations

import asyncio
import logging

from sidecar.context import Context

log = logging.getLogger(__name__)


class LineSink:
    """Feeds the pipeline, keeps the log's bookkeeping in the state, runs the core step."""

    def __init__(self, ctx: Context, *, replay: bool) -> None:
        self._ctx = ctx
        self._replayed_any = False
        #: a file whose first line arrives live: it was empty when the sidecar started
        self._first_live_line_starts_boot = replay
        #: set once the history is read and the state is on the monotonic clock
        self.replayed = asyncio.Event()
        if not replay:
            self.replayed.set()

    @property
    def replaying(self) -> bool:
        return not self.replayed.is_set()

    def feed(self, chunk: bytes) -> None:
        """Complete lines from the source."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        state = ctx.state
        state.last_line_at = now
        if self.replaying:
            if not self._replayed_any:
                self._replayed_any = True
                state.begin_log_time()
            ctx.pipeline.feed(chunk, None)
            return  # the state is on the log's time axis: no step until end_replay
        if self._first_live_line_starts_boot and not self._replayed_any:
            # The log was empty when the sidecar started (a native sidecar starts before
            # Keycloak): the first boot began with this line, not with the sidecar.
            state.log_time_started(now)
        self._first_live_line_starts_boot = False
        ctx.pipeline.feed(chunk, now)
        state.log_present = state.log_caught_up = True
        ctx.verdicts()

    def idle(self) -> None:
        """No more data for now: the record held back is complete."""
        ctx = self._ctx
        if self.replaying:
            ctx.pipeline.flush(None)
            return
        ctx.pipeline.flush(ctx.clock.monotonic())
        ctx.verdicts()

    def present(self, present: bool) -> None:
        """Whether the source can be read at all (a missing file is no evidence)."""
        self._ctx.state.log_present = present
        if not self.replaying:
            self._ctx.verdicts()

    def end_replay(self, age_seconds: float) -> None:
        """The history is read: its last line was written ``age_seconds`` ago.  Map the
        replayed times from log time onto the monotonic clock and open the gate."""
        ctx = self._ctx
        if self.replayed.is_set():
            return
        if self._replayed_any:
            ctx.pipeline.flush(None)
            last = ctx.pipeline.last_log_time or 0.0
            now = ctx.clock.monotonic()
            ctx.state.shift_times(now - age_seconds - last)
            ctx.state.last_line_at = now - age_seconds
        ctx.state.log_caught_up = True
        self.replayed.set()
        ctx.verdicts()
        log.info(
            "Log replay finished",
            extra={"lines": ctx.pipeline.lines_total, "boot": ctx.state.boot.number},
        )
