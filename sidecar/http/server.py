"""The sidecar's own port, hardened against idle floods, slow clients and scrape storms.

* Every connection with no request in progress is closed ``idle_timeout_seconds`` after it
  opened or after its last answer (aiohttp's keep-alive timer runs from the connection's
  start, so a client that never finishes its headers is closed too); the body of a request
  the handlers did not read is drained for at most ``_LINGER_SECONDS``.
* At most ``max_connections`` are open: a new one closes the oldest idle one (a request
  being answered only when none is idle), so a flood of idle or trickling connections
  cannot keep the kubelet's probe out, and memory stays bounded (~5 KiB a connection).
* ``/metrics`` and ``/status`` bodies are reused for ``cache_seconds`` while nothing changed
  (``cached``): a scrape storm costs one rendering per period, and the verdict endpoints
  (cached per verdict already) keep answering within the kubelet's timeout.
* A malformed or oversized request (a 64 KiB URL or header) is logged as one short line
  with the error class, never with a traceback that quotes the request bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from sidecar.context import Context

logger = logging.getLogger(__name__)

_LINGER_SECONDS: Final = 1.0
#: request line and each header at most this long (aiohttp's default, stated here)
_MAX_LINE_BYTES: Final = 8190
_CACHE_ENTRIES_MAX: Final = 16
_RECHECK_SECONDS: Final = 0.05
_ACCEPT_BACKLOG: Final = 256


@dataclass(frozen=True, slots=True)
class ServerLimits:
    idle_timeout_seconds: float
    max_connections: int
    shutdown_timeout_seconds: float


class _RequestLogger(logging.Logger):
    """aiohttp's per-connection logger: bad requests become one short line (no traceback,
    no request bytes); everything else goes to ``target`` unchanged."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(target.name + ".requests")
        self.parent = target

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.warning(
                "Bad HTTP request",
                extra={"error": type(exc_info).__name__, "status": exc_info.code},
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: object, *args: object, **kw: Any) -> None:
        if isinstance(kw.get("exc_info"), HttpProcessingError):
            kw["exc_info"] = None
            args = ()
            msg = "Bad HTTP request"
        super().debug(msg, *args, **kw)


def make_runner(app: web.Application, limits: ServerLimits) -> web.AppRunner:
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=limits.shutdown_timeout_seconds,
        keepalive_timeout=limits.idle_timeout_seconds,
        lingering_time=_LINGER_SECONDS,
        max_line_size=_MAX_LINE_BYTES,
        max_field_size=_MAX_LINE_BYTES,
        logger=_RequestLogger(logger),
    )


class CappedSite(web.TCPSite):
    """A TCP site that closes its oldest idle connection when a new one would pass the cap."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int):
        # a longer accept queue than aiohttp's 128: in a burst the kubelet's SYN is queued,
        # not dropped (a retransmission costs the probe 1 s); asyncio accepts up to a queue's
        # worth per loop turn before the cap can trim, so 256 also bounds that memory peak
        super().__init__(runner, host, port, reuse_address=True, backlog=_ACCEPT_BACKLOG)
        self._max_connections = max_connections
        self._recheck_pending = False
        self.evicted_total = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: self._admit(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )

    def _admit(self, server: web.Server) -> asyncio.Protocol:
        self._enforce(server, room=1)
        if not self._recheck_pending:
            # accepted in a burst, connections are registered a loop turn later: trim then
            self._recheck_pending = True
            asyncio.get_running_loop().call_later(_RECHECK_SECONDS, self._recheck, server)
        return server()

    def _recheck(self, server: web.Server) -> None:
        self._recheck_pending = False
        self._enforce(server, room=0)

    def _enforce(self, server: web.Server, *, room: int) -> None:
        """Close connections until ``room`` more fit: idle ones (no handler running:
        keep-alive, headers not finished) oldest first, busy ones only when none is idle."""
        # closed ones stay listed until the loop runs their connection_lost: not counted
        connections = [h for h in server.connections if h.transport is not None]
        excess = len(connections) - self._max_connections + room
        if excess <= 0:
            return
        idle = [h for h in connections if h._current_request is None]
        busy = [h for h in connections if h._current_request is not None]
        for handler in (idle + busy)[:excess]:
            handler.force_close()
            self.evicted_total += 1


def cached(handler: Handler, ctx: Context, cache_seconds: float) -> Handler:
    """``handler``'s answer reused for ``cache_seconds`` while the state and the log input are
    unchanged, per (path, query, Accept, Accept-Encoding); at most a few variants kept."""
    entries: dict[tuple[str, ...], tuple[float, tuple[int, int], web.Response]] = {}

    def freshness() -> tuple[int, int]:
        return ctx.state.version, ctx.pipeline.bytes_total

    async def serve(request: web.Request) -> web.StreamResponse:
        key = (
            request.path,
            request.query_string,
            request.headers.get(hdrs.ACCEPT, ""),
            request.headers.get(hdrs.ACCEPT_ENCODING, ""),
        )
        now = ctx.clock.monotonic()
        entry = entries.get(key)
        if entry is not None and now - entry[0] < cache_seconds and entry[1] == freshness():
            return _copy(entry[2])
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status != 200:
            return response
        if len(entries) >= _CACHE_ENTRIES_MAX:
            entries.clear()
        entries[key] = (now, freshness(), response)
        return _copy(response)

    return serve


def _copy(response: web.Response) -> web.Response:
    headers = {k: v for k, v in response.headers.items() if k != hdrs.CONTENT_LENGTH}
    return web.Response(status=response.status, body=response.body, headers=headers)


def cache_hook(ctx: Context, cache_seconds: float) -> Callable[[Handler], Handler]:
    """The ``cached`` decorator bound to ``ctx`` (what ``create_app`` wraps handlers with)."""
    return lambda handler: cached(handler, ctx, cache_seconds)
