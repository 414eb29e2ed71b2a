"""probe_http against real sockets: the Keycloak stand-in, a closed port, HTTPS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from keycloak_standin import (
    DATABASE_CHECK,
    FAILING_SINCE,
    HOST,
    INITIALIZED_CHECK,
    REALM_PATH,
    KeycloakStandin,
    TlsFiles,
    down,
    drop,
    garbage,
    hang,
    make_tls_files,
    raw,
    reset_after_status,
    slow,
    stall_body,
    status,
    tls_tool_available,
    up,
)

from sidecar import __version__
from sidecar.clock import ManualClock, SystemClock
from sidecar.probe import (
    MAX_BODY_BYTES,
    HealthCheck,
    ProbeResult,
    make_ssl_context,
    parse_health_body,
    probe_http,
)

READY = "/health/ready"
GENEROUS_TIMEOUT_SECONDS = 5.0
SHORT_TIMEOUT_SECONDS = 0.1

needs_openssl = pytest.mark.skipif(not tls_tool_available(), reason="no openssl CLI")


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Runs around every other fixture: whatever the test started must be gone at the end."""
    before = asyncio.all_tasks()
    yield
    leaked = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture
async def keycloak() -> AsyncIterator[KeycloakStandin]:
    async with KeycloakStandin() as standin:
        yield standin


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if not tls_tool_available():
        pytest.skip("no openssl CLI")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_keycloak(tls_files: TlsFiles) -> AsyncIterator[KeycloakStandin]:
    async with KeycloakStandin(tls=tls_files) as standin:
        yield standin


async def probe(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_seconds: float = GENEROUS_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    return await probe_http(
        session,
        target="ready",
        url=url,
        timeout_seconds=timeout_seconds,
        clock=SystemClock(),
        ssl_context=ssl_context,
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        port: int = listener.getsockname()[1]
    return port


class TestHealthBodies:
    async def test_up_is_ok_with_parsed_checks(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        result = await probe(session, keycloak.url(READY))

        assert result.ok
        assert result.status == 200
        assert result.error == ""
        assert result.keycloak_status == "UP"
        assert result.checks == (HealthCheck(DATABASE_CHECK, up=True),)
        assert not result.database_down
        assert result.target == "ready"

    async def test_down_503_parses_checks_and_database_down(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, down({DATABASE_CHECK: FAILING_SINCE}, passing=("Other check",)))

        result = await probe(session, keycloak.url(READY))

        assert not result.ok
        assert result.status == 503
        assert result.error == "http_status"
        assert result.keycloak_status == "DOWN"
        assert result.database_down
        assert HealthCheck(DATABASE_CHECK, up=False) in result.checks
        assert HealthCheck("Other check", up=True) in result.checks

    async def test_initializing_is_down_but_not_database(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, down({INITIALIZED_CHECK: ""}, passing=(DATABASE_CHECK,)))

        result = await probe(session, keycloak.url(READY))

        assert not result.ok
        assert result.keycloak_status == "DOWN"
        assert not result.database_down
        assert HealthCheck(INITIALIZED_CHECK, up=False) in result.checks

    async def test_down_body_on_200_is_not_ok(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, raw(200, down().body))

        result = await probe(session, keycloak.url(READY))

        assert not result.ok
        assert result.status == 200
        assert result.error == "body"
        assert result.database_down

    async def test_garbage_json_on_200_is_ok_without_keycloak_status(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, garbage())

        result = await probe(session, keycloak.url(READY))

        assert result.ok
        assert result.error == ""
        assert result.keycloak_status == ""
        assert result.checks == ()

    async def test_wildfly_realm_page_is_ok_without_keycloak_status(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        result = await probe(session, keycloak.url(REALM_PATH))

        assert result.ok
        assert result.status == 200
        assert result.keycloak_status == ""
        assert result.checks == ()

    async def test_body_larger_than_limit_is_cut_and_still_ok(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        padding = b" " * (4 * MAX_BODY_BYTES)
        keycloak.set(READY, raw(200, b'{"status": "DOWN", "checks": []' + padding + b"}"))

        result = await probe(session, keycloak.url(READY))

        assert result.ok, "the JSON was cut at the limit, so its DOWN must not be seen"
        assert result.keycloak_status == ""

    async def test_body_within_limit_is_parsed(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        padding = b" " * (MAX_BODY_BYTES - 100)
        keycloak.set(READY, raw(200, b'{"status": "DOWN", "checks": []' + padding + b"}"))

        result = await probe(session, keycloak.url(READY))

        assert result.keycloak_status == "DOWN"

    async def test_sends_user_agent_and_accept(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        await probe(session, keycloak.url(READY))

        (request,) = keycloak.requests_to(READY)
        assert request.method == "GET"
        assert request.headers["User-Agent"] == f"keycloak-sidecar/{__version__}"
        assert request.headers["Accept"] == "application/json"


class TestHttpStatus:
    @pytest.mark.parametrize("code", [301, 302, 307])
    async def test_redirect_is_ok_and_not_followed(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession, code: int
    ) -> None:
        keycloak.set(READY, status(code, location="/health/elsewhere"))
        keycloak.set("/health/elsewhere", down())

        result = await probe(session, keycloak.url(READY))

        assert result.ok
        assert result.status == code
        assert keycloak.requests_to("/health/elsewhere") == []

    @pytest.mark.parametrize("code", [400, 404, 500])
    async def test_status_outside_200_399_is_http_status(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession, code: int
    ) -> None:
        keycloak.set(READY, status(code))

        result = await probe(session, keycloak.url(READY))

        assert not result.ok
        assert result.status == code
        assert result.error == "http_status"

    async def test_session_raise_for_status_does_not_change_the_answer(
        self, keycloak: KeycloakStandin
    ) -> None:
        keycloak.set(READY, down())

        async with aiohttp.ClientSession(raise_for_status=True) as strict_session:
            result = await probe(strict_session, keycloak.url(READY))

        assert (result.status, result.error, result.keycloak_status) == (503, "http_status", "DOWN")

    async def test_unknown_path_is_404(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        result = await probe(session, keycloak.url("/health/nothing-here"))

        assert (result.ok, result.status, result.error) == (False, 404, "http_status")


class TestNetworkTrouble:
    async def test_slow_answer_past_timeout_is_timeout(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, slow(30.0))

        result = await probe(session, keycloak.url(READY), timeout_seconds=SHORT_TIMEOUT_SECONDS)

        assert (result.ok, result.status, result.error) == (False, None, "timeout")

    async def test_slow_answer_within_timeout_is_ok(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, slow(0.02))

        result = await probe(session, keycloak.url(READY))

        assert result.ok

    async def test_hang_is_timeout_and_release_answers_again(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, hang())
        hung = await probe(session, keycloak.url(READY), timeout_seconds=SHORT_TIMEOUT_SECONDS)
        keycloak.release()
        keycloak.set(READY, up())

        answered = await probe(session, keycloak.url(READY))

        assert hung.error == "timeout"
        assert answered.ok

    async def test_stalled_body_is_timeout_with_status(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, stall_body())

        result = await probe(session, keycloak.url(READY), timeout_seconds=SHORT_TIMEOUT_SECONDS)

        assert (result.ok, result.status, result.error) == (False, 200, "timeout")

    async def test_closed_port_is_refused(self, session: aiohttp.ClientSession) -> None:
        result = await probe(session, f"http://{HOST}:{closed_port()}/health/ready")

        assert (result.ok, result.status, result.error) == (False, None, "refused")

    async def test_stopped_standin_is_refused_and_restart_answers(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        await keycloak.stop()
        refused = await probe(session, keycloak.url(READY))
        await keycloak.start()

        answered = await probe(session, keycloak.url(READY))

        assert refused.error == "refused"
        assert answered.ok

    async def test_dropped_connection_is_connection(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        keycloak.set(READY, drop())

        result = await probe(session, keycloak.url(READY))

        assert (result.ok, result.status, result.error) == (False, None, "connection")


    async def test_reset_after_200_status_line_is_transfer_not_an_answer(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        """A broken transfer is "unknown": neither ok nor a failing answer of Keycloak."""
        keycloak.set(READY, reset_after_status())

        result = await probe(session, keycloak.url(READY))

        assert (result.ok, result.status, result.error) == (False, 200, "transfer")
        assert result.keycloak_status == ""


class TestTls:
    @needs_openssl
    async def test_ca_file_verifies(
        self, tls_keycloak: KeycloakStandin, tls_files: TlsFiles, session: aiohttp.ClientSession
    ) -> None:
        context = make_ssl_context(ca_file=str(tls_files.ca_file), insecure_skip_verify=False)

        result = await probe(session, tls_keycloak.url(READY), ssl_context=context)

        assert result.ok
        assert result.keycloak_status == "UP"

    @needs_openssl
    async def test_unknown_ca_is_tls(
        self, tls_keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        context = make_ssl_context(ca_file="", insecure_skip_verify=False)

        result = await probe(session, tls_keycloak.url(READY), ssl_context=context)

        assert (result.ok, result.status, result.error) == (False, None, "tls")

    @needs_openssl
    async def test_skip_verify_is_ok(
        self, tls_keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        context = make_ssl_context(ca_file="", insecure_skip_verify=True)

        result = await probe(session, tls_keycloak.url(READY), ssl_context=context)

        assert result.ok

    @needs_openssl
    async def test_plain_http_to_tls_port_is_connection(
        self, tls_keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        url = tls_keycloak.url(READY).replace("https://", "http://")

        result = await probe(session, url)

        assert (result.ok, result.status, result.error) == (False, None, "connection")

    def test_both_options_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="exclude each other"):
            make_ssl_context(ca_file="/some/ca.pem", insecure_skip_verify=True)

    def test_missing_ca_file_raises_at_start_up(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            make_ssl_context(ca_file=str(tmp_path / "absent.pem"), insecure_skip_verify=False)


class TestClock:
    async def test_latency_and_observed_at_come_from_the_injected_clock(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        clock = ManualClock(start=500.0)

        result = await probe_http(
            session, target="live", url=keycloak.url(READY), timeout_seconds=5.0, clock=clock
        )

        assert result.latency_seconds == 0.0
        assert result.observed_at == 500.0
        assert result.target == "live"

    async def test_latency_with_the_system_clock_is_not_negative(
        self, keycloak: KeycloakStandin, session: aiohttp.ClientSession
    ) -> None:
        result = await probe(session, keycloak.url(READY))

        assert result.latency_seconds >= 0.0


class TestParseHealthBody:
    """Edge cases of the pure parser that a server would rarely send."""

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("text/plain", b"UP"),
            ("application/json", b"[1, 2]"),
            ("application/json", b'{"status": "MAYBE"}'),
            ("application/json", b"\xff\xfe{"),
            ("application/json", b"[" * 50_000 + b"]" * 50_000),
            ("text/html", b""),
        ],
    )
    def test_not_a_health_body(self, content_type: str, body: bytes) -> None:
        assert parse_health_body(content_type, body).status == ""

    def test_json_without_json_content_type_is_parsed(self) -> None:
        parsed = parse_health_body("text/plain", b' {"status": "UP"}')

        assert parsed.status == "UP"

    def test_health_plus_json_content_type_is_parsed(self) -> None:
        parsed = parse_health_body("application/health+json", b'  \n {"status": "DOWN"}')

        assert parsed.status == "DOWN"

    def test_malformed_checks_are_skipped_or_defaulted(self) -> None:
        body = b'{"status": "DOWN", "checks": [1, {"status": "DOWN", "data": "x"}, {"name": 7}]}'

        parsed = parse_health_body("application/json", body)

        assert parsed.checks == (
            HealthCheck(name="", up=False),
            HealthCheck(name="7", up=False),
        )
