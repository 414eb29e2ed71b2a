"""A local stand-in for Keycloak's HTTP endpoints, for unit and end-to-end tests.

It answers ``/health``, ``/health/started``, ``/health/live`` and ``/health/ready`` with
SmallRye health bodies like Keycloak 17+ does, and ``/auth/realms/master`` with realm JSON
like the WildFly era does.  A test switches what a path answers at runtime::

    async with KeycloakStandin() as keycloak:
        keycloak.set("/health/ready", down(failing={DATABASE_CHECK: "2024-03-01 10:00:00,123"}))
        ... probe keycloak.url("/health/ready") ...
        keycloak.set("/health/live", hang())      # no answer until keycloak.release()
        await keycloak.stop()                      # connections are now refused
        await keycloak.start()                     # same port again

HTTPS: ``make_tls_files(directory)`` creates a throw-away CA and a server certificate for
127.0.0.1/localhost with the ``openssl`` CLI; pass them as ``KeycloakStandin(tls=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from aiohttp import web

HOST: Final = "127.0.0.1"
HEALTH_PATHS: Final = ("/health", "/health/started", "/health/live", "/health/ready")
REALM_PATH: Final = "/auth/realms/master"
DATABASE_CHECK: Final = "Keycloak database connections async health check"
INITIALIZED_CHECK: Final = "Keycloak Initialized"
FAILING_SINCE: Final = "2024-03-01 10:00:00,123"
JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What one path answers.  ``delay_seconds`` = inf means "until released"."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    stall_body: bool = False
    """Send the headers and the first body byte, then stall until released."""
    drop: bool = False
    """Close the connection without any answer."""
    reset_body: bool = False
    """Send the status line, the headers and half the body, then reset the connection."""


def _health(status: str, checks: Mapping[str, str], failing_since: Mapping[str, str]) -> bytes:
    entries: list[dict[str, object]] = []
    for name, check_status in checks.items():
        entry: dict[str, object] = {"name": name, "status": check_status}
        if name in failing_since:
            entry["data"] = {"Failing since": failing_since[name]}
        entries.append(entry)
    return json.dumps({"status": status, "checks": entries}).encode()


def up(checks: tuple[str, ...] = (DATABASE_CHECK,)) -> Behaviour:
    """200 with an UP health body whose checks all pass."""
    return Behaviour(body=_health("UP", dict.fromkeys(checks, "UP"), {}))


def down(failing: Mapping[str, str] | None = None, passing: tuple[str, ...] = ()) -> Behaviour:
    """503 DOWN; ``failing`` maps check name -> "Failing since" ("" for no data)."""
    failing = {DATABASE_CHECK: FAILING_SINCE} if failing is None else failing
    checks = {**dict.fromkeys(passing, "UP"), **dict.fromkeys(failing, "DOWN")}
    since = {name: value for name, value in failing.items() if value}
    return Behaviour(status=503, body=_health("DOWN", checks, since))


def hang(then: Behaviour | None = None) -> Behaviour:
    """No answer until ``KeycloakStandin.release()``, then ``then`` (default: up)."""
    return _delayed(then or up(), math.inf)


def slow(delay_seconds: float, then: Behaviour | None = None) -> Behaviour:
    """``then`` (default: up) after ``delay_seconds`` (or earlier on release)."""
    return _delayed(then or up(), delay_seconds)


def _delayed(behaviour: Behaviour, delay_seconds: float) -> Behaviour:
    return Behaviour(
        status=behaviour.status,
        body=behaviour.body,
        content_type=behaviour.content_type,
        headers=behaviour.headers,
        delay_seconds=delay_seconds,
    )


def status(code: int, body: bytes = b"", location: str = "") -> Behaviour:
    """A bare status (e.g. 302 with ``location``, 404, 500)."""
    headers = {"Location": location} if location else {}
    return Behaviour(status=code, body=body, content_type="text/plain", headers=headers)


def garbage(code: int = 200) -> Behaviour:
    """JSON content type, truncated JSON body."""
    return Behaviour(status=code, body=b'{"status": "UP", "checks": [{"name"')


def raw(code: int, body: bytes, content_type: str = JSON) -> Behaviour:
    """Any body, e.g. one larger than the probe's read limit."""
    return Behaviour(status=code, body=body, content_type=content_type)


def stall_body() -> Behaviour:
    """Headers arrive, the body never completes until released."""
    return Behaviour(body=b"{}", stall_body=True)


def reset_after_status(code: int = 200) -> Behaviour:
    """``200 OK`` and half a body, then a reset: a broken transfer, not an answer."""
    body = b'{"status": "UP", "checks": []}'
    return Behaviour(status=code, body=body, reset_body=True)


def drop() -> Behaviour:
    """The connection is closed without an answer."""
    return Behaviour(drop=True)


def realm(name: str = "master") -> Behaviour:
    """The WildFly-era realm page: realm JSON that is not a health body."""
    document = {
        "realm": name,
        "public_key": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        "token-service": f"http://{HOST}/auth/realms/{name}/protocol/openid-connect",
        "account-service": f"http://{HOST}/auth/realms/{name}/account",
        "tokens-not-before": 0,
    }
    return Behaviour(body=json.dumps(document).encode())


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


class KeycloakStandin:
    """The stand-in server; behaviours can be switched while it runs."""

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._behaviours: dict[str, Behaviour] = {path: up() for path in HEALTH_PATHS}
        self._behaviours[REALM_PATH] = realm()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def set(self, path: str, behaviour: Behaviour) -> None:
        self._behaviours[path] = behaviour

    def release(self) -> None:
        """Let every hanging or slow request finish now; later ones hang again."""
        self._release.set()
        self._release = asyncio.Event()

    def url(self, path: str) -> str:
        assert self.port, "start the stand-in first"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}{path}"

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    async def start(self) -> None:
        """Listen on an ephemeral port, or on the previous port after ``stop()``."""
        assert self._runner is None, "already running"
        runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self.port, ssl_context=self._server_ssl_context())
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner)

    async def stop(self) -> None:
        """Stop listening (new connections are refused); pending requests are released."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self.release()
            await runner.cleanup()

    async def __aenter__(self) -> KeycloakStandin:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _server_ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        return context

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.headers)))
        behaviour = self._behaviours.get(request.path)
        if behaviour is None:
            return web.Response(status=404, text="not found")
        if behaviour.drop:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        release = self._release
        if behaviour.delay_seconds > 0:
            await _wait(release, behaviour.delay_seconds)
        response = web.StreamResponse(status=behaviour.status, headers=behaviour.headers)
        response.content_type = behaviour.content_type
        with contextlib.suppress(ConnectionResetError):  # the client gave up (its timeout)
            await _answer(request, response, behaviour, release)
        return response


async def _answer(
    request: web.Request,
    response: web.StreamResponse,
    behaviour: Behaviour,
    release: asyncio.Event,
) -> None:
    if behaviour.reset_body:
        response.content_length = len(behaviour.body)
    await response.prepare(request)
    body = behaviour.body
    if behaviour.reset_body:
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.abort()
        return
    if behaviour.stall_body:
        await response.write(body[:1])
        await release.wait()
        body = body[1:]
    await response.write(body)
    await response.write_eof()


async def _wait(release: asyncio.Event, delay_seconds: float) -> None:
    if math.isinf(delay_seconds):
        await release.wait()
        return
    try:
        async with asyncio.timeout(delay_seconds):
            await release.wait()
    except TimeoutError:
        pass


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the stand-in is not listening on TCP")


def build_app(standin: KeycloakStandin) -> web.Application:
    """The aiohttp app factory: one catch-all route answered from the stand-in's table."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin.handle)
    return app


def tls_tool_available() -> bool:
    return shutil.which("openssl") is not None


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost (openssl CLI)."""
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    _openssl(
        directory,
        f"req -x509 {new_key} -keyout ca.key -out ca.pem -days 2 -subj /CN=standin-CA",
        "-addext basicConstraints=critical,CA:TRUE",
        "-addext keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl(
        directory, f"req -new {new_key} -keyout server.key -out server.csr -subj /CN=localhost"
    )
    _openssl(
        directory,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2",
        "-extfile server.ext -out server.pem",
    )
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def _openssl(directory: Path, *arguments: str) -> None:
    """Run openssl in ``directory``; arguments are space-separated words without spaces."""
    command = ["openssl", *" ".join(arguments).split()]
    subprocess.run(command, cwd=directory, check=True, capture_output=True, timeout=30)
