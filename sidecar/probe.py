"""HTTP probe of Keycloak: one request in, one immutable ``ProbeResult`` out.

The probe is an edge: it does I/O and classifies what happened, but decides nothing about
health and never touches shared state.  Network trouble never raises; it becomes an error
class on the result (``timeout``, ``refused``, ``connection``, ``tls``, ``transfer``,
``http_status``, ``body``).  Only a complete answer is evidence about Keycloak: a failure
status (``http_status``) or a parsed health body saying DOWN (``body``); a transfer broken
after the status line (reset, short body) is ``transfer``, "unknown" like a timeout.  It
logs nothing: the caller logs transitions, not every probe.

Keycloak 17+ answers ``/health/*`` with a SmallRye health body
(``{"status": "UP"|"DOWN", "checks": [...]}``); the WildFly era has no health endpoint and
is probed with a realm page whose JSON is not a health body (``keycloak_status`` stays "").
"""

from __future__ import annotations

import asyncio
import errno
import json
import ssl
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from sidecar import __version__
from sidecar.clock import Clock
from sidecar.core.events import HealthCheck, ProbeResult

MAX_BODY_BYTES: Final = 64 * 1024
"""At most this much of a response body is read; the rest is discarded with the connection."""

USER_AGENT: Final = f"keycloak-sidecar/{__version__}"
_REQUEST_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}
_HEALTH_STATUSES: Final = frozenset({"UP", "DOWN"})


@dataclass(frozen=True, slots=True)
class HealthBody:
    """The parts of a SmallRye health body the sidecar uses; ``status`` "" = not one."""

    status: str
    checks: tuple[HealthCheck, ...]


_NO_HEALTH_BODY: Final = HealthBody(status="", checks=())


def make_ssl_context(*, ca_file: str, insecure_skip_verify: bool) -> ssl.SSLContext | None:
    """TLS settings for the probe session; ``None`` means default verification.

    Reads ``ca_file`` synchronously: call it at start-up, not from a handler.  Raises
    ``OSError``/``ssl.SSLError`` for an unreadable bundle, ``ValueError`` for both options.
    """
    if ca_file and insecure_skip_verify:
        raise ValueError("ca_file and insecure_skip_verify exclude each other")
    if insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return None


async def probe_http(
    session: aiohttp.ClientSession,
    *,
    target: str,
    url: str,
    timeout_seconds: float,
    clock: Clock,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """GET ``url`` once, bounded by ``timeout_seconds`` (connect + headers + body).

    Redirects are not followed: a 3xx counts as ok, as a kubelet HTTP probe would.  The
    session's own timeout should be no shorter than ``timeout_seconds``.
    """
    started_at = clock.monotonic()
    status: int | None = None
    content_type = ""
    body = b""
    error = ""
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            session.get(
                url,
                headers=_REQUEST_HEADERS,
                allow_redirects=False,
                raise_for_status=False,
                ssl=ssl_context if ssl_context is not None else True,
            ) as response,
        ):
            status = response.status
            content_type = response.content_type
            body = await _read_capped(response.content, MAX_BODY_BYTES)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        error = _classify_exception(exc)
    finished_at = clock.monotonic()
    health = parse_health_body(content_type, body) if not error else _NO_HEALTH_BODY
    if not error:
        error = _response_error(status, health.status)
    return ProbeResult(
        target=target,
        ok=not error,
        status=status,
        latency_seconds=max(0.0, finished_at - started_at),
        error=error,
        keycloak_status=health.status,
        checks=health.checks,
        database_down=any(not c.up and "database" in c.name.lower() for c in health.checks),
        observed_at=finished_at,
    )


async def _read_capped(stream: aiohttp.StreamReader, limit_bytes: int) -> bytes:
    """Read up to ``limit_bytes`` of the body (``StreamReader.read(n)`` may return less)."""
    chunks: list[bytes] = []
    remaining = limit_bytes
    while remaining > 0:
        chunk = await stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _response_error(status: int | None, keycloak_status: str) -> str:
    """Kubernetes semantics (200-399 is success), then a health body saying DOWN."""
    if status is None or not 200 <= status < 400:
        return "http_status"
    if keycloak_status == "DOWN":
        return "body"
    return ""


def _classify_exception(exc: BaseException) -> str:
    """Map a client-side failure to the probe's error class.  Order matters: aiohttp's
    TLS errors are connector errors, and its timeout errors are connection errors."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused" if _is_refusal(exc.os_error) else "connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "transfer"
    return "connection"


def _is_refusal(os_error: OSError) -> bool:
    return isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED


def _is_json_like(content_type: str, body: bytes) -> bool:
    return (
        content_type == "application/json"
        or content_type.endswith("+json")
        or body.lstrip().startswith(b"{")
    )


def parse_health_body(content_type: str, body: bytes) -> HealthBody:
    """A SmallRye health body, or "no health body" for anything else (including bad JSON)."""
    if not _is_json_like(content_type, body):
        return _NO_HEALTH_BODY
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        return _NO_HEALTH_BODY
    if not isinstance(document, dict) or document.get("status") not in _HEALTH_STATUSES:
        return _NO_HEALTH_BODY
    raw_checks = document.get("checks")
    entries = raw_checks if isinstance(raw_checks, list) else []
    checks = tuple(_parse_check(entry) for entry in entries if isinstance(entry, dict))
    return HealthBody(status=document["status"], checks=checks)


def _parse_check(entry: dict[str, Any]) -> HealthCheck:
    return HealthCheck(name=str(entry.get("name", "")), up=entry.get("status") == "UP")
