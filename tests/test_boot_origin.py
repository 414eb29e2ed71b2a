"""A native sidecar starts before Keycloak (issue 12): with an empty log at its start, the
first boot's clock (the startup deadline) starts at Keycloak's first line, not earlier.

The real daemon (``runtime.serve``) on a manual clock: the sidecar starts, ten minutes pass
(init containers, pulling the image), then Keycloak writes its first line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

from daemon_harness import STARTED_LINE

from sidecar import runtime
from sidecar.clock import ManualClock
from sidecar.http.app import rfc3339
from sidecar.log.rules import builtin_rules
from sidecar.settings import load_settings

BOOTING = (
    "2024-12-07 17:51:50,001 INFO  [org.keycloak.quarkus.runtime.hostname.DefaultHostname"
    "Provider] (main) Hostname settings: Base URL: <unset>, Hostname: <request>"
)
WALL_OFFSET = 1_733_590_000.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _status(port: int) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            return dict(json.loads(response.read()))

    return await asyncio.to_thread(get)


async def _until(port: int, predicate: Any) -> dict[str, Any]:
    for _ in range(300):  # bounded: about 30 s
        status = await _status(port)
        if predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached; last status {status}")


async def _run(tmp_path: Path, first_lines: list[str]) -> dict[str, Any]:
    log_file = tmp_path / "keycloak.log"
    if first_lines:
        log_file.write_text("".join(line + "\n" for line in first_lines), encoding="utf-8")
    settings = load_settings(
        {
            "log_file": str(log_file),
            "listen": f"127.0.0.1:{_free_port()}",
            "keycloak_url": "",
            "log_poll_interval_seconds": "100ms",
            "no_kubernetes": "true",
        },
        {},
    )
    clock = ManualClock(start=1000.0, wall_offset=WALL_OFFSET)
    daemons: list[runtime.Daemon] = []
    task = asyncio.create_task(
        runtime.serve(settings, builtin_rules(), clock=clock, daemon_out=daemons), name="daemon"
    )
    try:
        while not (daemons and daemons[0].ready.is_set()):
            assert not task.done(), task
            await asyncio.sleep(0.01)
        port = daemons[0].port
        await _until(port, lambda s: s["log"]["caught_up"] or not first_lines)
        clock.advance(600.0)  # the other init containers, the image pull ...
        with log_file.open("a", encoding="utf-8") as handle:
            handle.write(BOOTING + "\n")
        lines_before = len(first_lines)
        return await _until(port, lambda s: s["log"]["lines_total"] > lines_before)
    finally:
        if daemons:
            daemons[0].request_stop()
        await asyncio.wait_for(task, 10)


async def test_the_first_boot_starts_with_keycloaks_first_line(tmp_path: Path) -> None:
    status = await _run(tmp_path, [])
    assert status["boot"]["started_at"] == rfc3339(1600.0 + WALL_OFFSET)


async def test_a_log_with_history_keeps_its_boot_origin(tmp_path: Path) -> None:
    """A sidecar restarted next to a running Keycloak: the replayed boot is not moved."""
    status = await _run(tmp_path, [BOOTING, STARTED_LINE])
    assert status["boot"]["started_at"] != rfc3339(1600.0 + WALL_OFFSET)
    assert status["verdicts"]["started"]["ok"] is True
