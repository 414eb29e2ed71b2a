"""The supervisor: builds everything, runs the workers in one TaskGroup, shuts down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar import __version__, housekeeping, libc, logjson
from sidecar.clock import Clock, SystemClock, sleep_until
from sidecar.context import Context
from sidecar.core.events import ProbeResult
from sidecar.core.health import TransitionTracker
from sidecar.core.redact import redacted_url
from sidecar.core.state import MonitorState
from sidecar.housekeeping import Housekeeper
from sidecar.ingest import LineSink
from sidecar.log.pipeline import Pipeline
from sidecar.log.rules import Rule
from sidecar.log.source import StdinReader
from sidecar.settings import Settings, policy_from_settings
from sidecar.workers import Prober, Tailer, verdict_worker

log = logging.getLogger(__name__)

#: the verdict worker runs on every state change, and at least this often (deadlines)
VERDICT_INTERVAL_SECONDS = 1.0
SHUTDOWN_TIMEOUT_SECONDS = 2.0
_RECOVERY_POLL_SECONDS = 0.05


class WorkerExitedError(RuntimeError):
    """An eternal worker returned although no stop was requested."""


class CannotServeError(RuntimeError):
    """The listener could not bind its address (in use, not permitted, no such address)."""


@dataclass
class Daemon:
    """A running sidecar: its context and the stop switch (tests and the demo use it)."""

    ctx: Context
    stop: asyncio.Event
    ready: asyncio.Event
    port: int = 0

    def request_stop(self) -> None:
        self.stop.set()
        self.ctx.changes.notify()  # the verdict loops make their last round now


def build_context(settings: Settings, rules: Sequence[Rule], clock: Clock) -> Context:
    now = clock.monotonic()
    state = MonitorState(now, probe_targets=tuple(settings.probe_targets()))
    pipeline = Pipeline(rules, state, max_record_lines=settings.log_max_record_lines)
    ctx = Context(
        settings=settings,
        clock=clock,
        state=state,
        policy=policy_from_settings(settings),
        pipeline=pipeline,
        registry=CollectorRegistry(auto_describe=True),
        tracker=TransitionTracker(now),
        housekeeper=Housekeeper(now),
    )
    state.on_change = ctx.changes.notify
    return ctx


def main(settings: Settings, rules: Sequence[Rule]) -> int:
    """Run the daemon until SIGTERM/SIGINT; 0 on a clean stop, 1 when a worker crashed."""
    logjson.configure(settings.log_level)
    libc.return_freed_blocks()
    failures: list[str] = []
    try:
        asyncio.run(serve(settings, rules, install_signals=True))
    except* WorkerExitedError as group:
        failures.append(f"a worker stopped unexpectedly: {group.exceptions[0]}")
    except* CannotServeError as group:
        failures.append(f"cannot serve: {group.exceptions[0]}")
    for failure in failures:
        log.error("Sidecar failed", extra={"error": failure})
    return 1 if failures else 0


async def serve(
    settings: Settings,
    rules: Sequence[Rule],
    *,
    install_signals: bool = False,
    clock: Clock | None = None,
    daemon_out: list[Daemon] | None = None,
) -> None:
    """Build, serve the endpoints, run the workers; return after ``stop``."""
    ctx = build_context(settings, rules, clock or SystemClock())
    stop, ready = asyncio.Event(), asyncio.Event()
    daemon = Daemon(ctx, stop, ready)
    if daemon_out is not None:
        daemon_out.append(daemon)
    if install_signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.request_stop)
    from sidecar.http.app import create_app
    from sidecar.http.metrics import observe_probe, register_all
    from sidecar.http.server import CappedSite, ServerLimits, make_runner

    metrics = register_all(ctx)
    runner = make_runner(
        create_app(ctx),
        ServerLimits(
            idle_timeout_seconds=settings.http_idle_timeout_seconds,
            max_connections=settings.http_max_connections,
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_SECONDS,
        ),
    )
    await runner.setup()
    try:
        host, port = settings.listen
        site = CappedSite(runner, host, port, settings.http_max_connections)
        try:
            await site.start()
        except OSError as error:  # only the bind: a worker's OSError is a crash of its own
            raise CannotServeError(str(error)) from error
        daemon.port = _bound_port(runner) or port
        log.info(
            "Serving",
            extra={
                "listen": f"{host}:{daemon.port}",
                "version": __version__,
                "log_source": settings.log_source,
                "log_file": settings.log_file,
                "keycloak_url": redacted_url(settings.keycloak_url) or "(not probed)",
            },
        )
        housekeeping.settle()
        ready.set()
        await _run_workers(ctx, stop, lambda result: observe_probe(metrics, result))
    finally:
        await runner.cleanup()
        log.info("Stopped")


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


async def _run_workers(
    ctx: Context, stop: asyncio.Event, record_probe: Callable[[ProbeResult], None]
) -> None:
    settings = ctx.settings
    lines = LineSink(ctx, replay=settings.log_source == "file")
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.probe_timeout_seconds + 1)
            )
        )
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            "verdict-worker": lambda: verdict_worker(ctx, stop, VERDICT_INTERVAL_SECONDS),
        }
        if settings.log_source == "file":
            tailer = _make_tailer(ctx, lines, stack)
            jobs["tail-worker"] = lambda: tailer.run(stop)
        # probe results and Kubernetes facts are on the monotonic clock: they wait for the
        # replayed history to be moved onto it
        if settings.probe_targets():
            prober = Prober(ctx, record_probe, _ssl_context(settings))
            jobs["probe-worker"] = lambda: _after(
                lines.replayed, stop, lambda: prober.run(stop, session)
            )
        if not settings.no_kubernetes:
            jobs["kube-worker"] = lambda: _after(
                lines.replayed, stop, lambda: _kube(ctx, lines, stop)
            )
        async with asyncio.TaskGroup() as group:
            for name, job in jobs.items():
                group.create_task(_guard(name, job, stop), name=name)


def _make_tailer(ctx: Context, lines: LineSink, stack: contextlib.AsyncExitStack) -> Tailer:
    from sidecar.log.source import LogFile
    from sidecar.log.watch import FileWatcher

    settings = ctx.settings
    source: LogFile | StdinReader
    if settings.log_file == "-":
        source = StdinReader(max_line_bytes=settings.log_max_line_bytes)
        waiter: object = _StdinWaiter(source)
    else:
        source = LogFile(settings.log_file, max_line_bytes=settings.log_max_line_bytes)
        waiter = FileWatcher(
            settings.log_file, poll_interval_seconds=settings.log_poll_interval_seconds
        )
        stack.callback(waiter.close)
    stack.callback(source.close)
    ctx.source = source
    return Tailer(ctx, source, waiter, lines)  # type: ignore[arg-type]


class _StdinWaiter:
    """Wakes when standard input is readable; after end of input it only sleeps (a closed
    pipe is always 'readable' and would spin the loop)."""

    def __init__(self, source: StdinReader) -> None:
        self._source = source

    async def wait(self, timeout_seconds: float | None = None) -> None:
        if self._source.eof:
            await asyncio.sleep(timeout_seconds if timeout_seconds is not None else 1.0)
            return
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = self._source.fileno()
        loop.add_reader(fd, readable.set)
        try:
            await sleep_until(readable, timeout_seconds)
        finally:
            loop.remove_reader(fd)


async def _after(
    event: asyncio.Event, stop: asyncio.Event, job: Callable[[], Awaitable[None]]
) -> None:
    """Start ``job`` once ``event`` is set (``LineSink.replayed``), unless stopping."""
    while not event.is_set():
        if stop.is_set():
            return
        await sleep_until(stop, _RECOVERY_POLL_SECONDS)
    await job()


async def _guard(name: str, job: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    await job()
    if not stop.is_set():
        raise WorkerExitedError(f"{name} finished unexpectedly")


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    from sidecar.probe import make_ssl_context

    return make_ssl_context(
        ca_file=settings.probe_ca_file, insecure_skip_verify=settings.probe_insecure_skip_verify
    )


async def _kube(ctx: Context, lines: LineSink, stop: asyncio.Event) -> None:
    from sidecar.kube.worker import kube_worker
    from sidecar.kubesink import CoreSink

    sink = CoreSink(ctx, lines)
    await kube_worker(settings=ctx.settings, sink=sink, clock=ctx.clock, stop=stop)
