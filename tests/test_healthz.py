"""The sidecar's own health (issue 12): worker heartbeats and ``/healthz``.

``/healthz`` answers for the sidecar, never for Keycloak: a stalled worker fails it while
``/livez`` keeps passing, and a fatal Keycloak line fails ``/livez`` while ``/healthz``
keeps passing.  The runtime test runs the real daemon (``runtime.serve``) with its real
workers and one prober made to hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from daemon_harness import LIQUIBASE_LINE, STARTED_LINE, Harness, make_harness

from sidecar import runtime, workers
from sidecar.core.heartbeat import Heartbeats, Stall
from sidecar.http.app import create_app
from sidecar.log.rules import builtin_rules
from sidecar.settings import ConfigError, load_settings

Client = TestClient[web.Request, web.Application]


# --- the pure record --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("beats", "now", "expected"),
    [
        pytest.param({}, 100.0, (), id="nothing-watched-yet"),
        pytest.param({"tail-worker": 90.0}, 100.0, (), id="fresh"),
        pytest.param({"tail-worker": 70.0}, 100.0, (), id="exactly-the-threshold"),
        pytest.param(
            {"tail-worker": 99.0, "probe-worker": 69.0},
            100.0,
            (Stall("probe-worker", 31.0),),
            id="one-of-two-stalled",
        ),
        pytest.param({"kube-worker": 101.0}, 100.0, (), id="clock-behind-is-fresh"),
    ],
)
def test_stalled_workers(beats: dict[str, float], now: float, expected: tuple[Stall, ...]) -> None:
    heartbeats = Heartbeats()
    for worker, at in beats.items():
        heartbeats.beat(worker, at)
    assert heartbeats.stalled(now, threshold_seconds=30.0) == expected


def test_a_new_beat_clears_a_stall() -> None:
    heartbeats = Heartbeats()
    heartbeats.beat("verdict-worker", 0.0)
    assert heartbeats.stalled(100.0, 30.0)
    heartbeats.beat("verdict-worker", 100.0)
    assert heartbeats.stalled(100.0, 30.0) == ()


def test_stall_timeout_must_exceed_the_probers_longest_round() -> None:
    with pytest.raises(ConfigError, match="worker-stall-timeout"):
        load_settings({"worker_stall_timeout_seconds": "6s"}, {})  # 5 s + 2 s is longer
    assert load_settings({}, {}).worker_stall_timeout_seconds == 45.0


# --- the endpoint -----------------------------------------------------------------------------


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path)
    yield made
    made.source.close()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(harness.ctx))) as test_client:
        yield test_client


async def get_json(client: Client, path: str) -> tuple[int, Any]:
    async with client.get(path) as response:
        return response.status, await response.json()


async def test_healthz_passes_while_every_worker_beats(harness: Harness, client: Client) -> None:
    for worker in ("tail-worker", "probe-worker", "verdict-worker"):
        harness.ctx.beat(worker)
    harness.clock.advance(44.0)
    harness.ctx.beat("tail-worker")
    status, body = await get_json(client, "/healthz")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["workers"] == {"probe-worker": 44.0, "tail-worker": 0.0, "verdict-worker": 44.0}


async def test_healthz_names_the_stalled_worker_and_livez_still_passes(
    harness: Harness, client: Client
) -> None:
    harness.write_log(STARTED_LINE)
    for worker in ("tail-worker", "probe-worker", "verdict-worker"):
        harness.ctx.beat(worker)
    harness.clock.advance(46.0)
    harness.ctx.beat("tail-worker")
    harness.ctx.beat("verdict-worker")
    status, body = await get_json(client, "/healthz")
    assert (status, body["status"], body["stalled"]) == (503, "failing", ["probe-worker"])
    assert body["worker_stall_timeout_seconds"] == 45.0
    live_status, _ = await get_json(client, "/livez")
    assert live_status == 200, "the sidecar's trouble must not look like Keycloak's"


async def test_healthz_ignores_keycloak_being_broken(harness: Harness, client: Client) -> None:
    harness.write_log(LIQUIBASE_LINE)
    harness.ctx.beat("tail-worker")
    live_status, live = await get_json(client, "/livez")
    assert live_status == 503, live
    status, body = await get_json(client, "/healthz")
    assert (status, body["stalled"]) == (200, [])


# --- the running daemon -----------------------------------------------------------------------


def _settings(tmp_path: Path, closed_port: int) -> Any:
    log_file = tmp_path / "keycloak.log"
    log_file.write_text(STARTED_LINE + "\n", encoding="utf-8")
    return load_settings(
        {
            "log_file": str(log_file),
            "listen": f"127.0.0.1:{_free_port()}",
            "keycloak_url": f"http://127.0.0.1:{closed_port}",
            "probe_interval_seconds": "200ms",
            "probe_timeout_seconds": "100ms",
            "log_poll_interval_seconds": "100ms",
            "worker_stall_timeout_seconds": "1s",
            "no_kubernetes": "true",
        },
        {},
    )


@contextlib.asynccontextmanager
async def _daemon(tmp_path: Path, closed_port: int) -> AsyncIterator[runtime.Daemon]:
    daemons: list[runtime.Daemon] = []
    task = asyncio.create_task(
        runtime.serve(_settings(tmp_path, closed_port), builtin_rules(), daemon_out=daemons),
        name="daemon-under-test",
    )
    try:
        while not (daemons and daemons[0].ready.is_set()):
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield daemons[0]
    finally:
        if daemons:
            daemons[0].request_stop()
        await asyncio.wait_for(task, 10)


async def _wait_healthz(port: int, status: int, **body_has: Any) -> dict[str, Any]:
    last: tuple[int, Any] = (0, None)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):  # bounded: 30 s at most
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                last = (response.status, await response.json())
            if last[0] == status and all(last[1].get(k) == v for k, v in body_has.items()):
                return dict(last[1])
            await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never answered {status} {body_has}; last {last}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    return _free_port()


async def test_real_workers_beat(tmp_path: Path, closed_port: int) -> None:
    async with _daemon(tmp_path, closed_port) as daemon:
        body = await _wait_healthz(daemon.port, 200, stalled=[])
        await asyncio.sleep(1.5)  # longer than the stall timeout: the workers keep beating
        body = await _wait_healthz(daemon.port, 200, stalled=[])
        assert set(body["workers"]) == {"probe-worker", "tail-worker", "verdict-worker"}


async def test_a_hung_prober_fails_healthz_but_not_livez(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang(self: workers.Prober, stop: asyncio.Event, session: object) -> None:
        self._ctx.beat("probe-worker")
        await stop.wait()  # stuck (until the test ends): the loop serves, the prober is stuck

    monkeypatch.setattr(workers.Prober, "run", hang)
    async with _daemon(tmp_path, closed_port) as daemon:
        body = await _wait_healthz(daemon.port, 503, stalled=["probe-worker"])
        assert body["status"] == "failing"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{daemon.port}/livez") as response,
        ):
            assert response.status == 200, await response.text()
