"""The sidecar's own port under abuse, with real sockets on loopback (issue 15, item 4).

Every loop is bounded in count and in time; the daemon is a real process.  Speed is not
asserted here (benchmarks/port_flood.py measures it under a CPU limit): these tests check
that idle and trickling connections are closed, that their number is capped, that the
memory they cost stays bounded, and that oversized requests are logged in one short line.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runtime import Daemon, get

MAX_CONNECTIONS = 64
IDLE_TIMEOUT = "1s"
DEADLINE_SECONDS = 60.0  # a hang guard: generous for a loaded 2-core CI machine
LIMITS = ("--http-idle-timeout", IDLE_TIMEOUT, "--http-max-connections", str(MAX_CONNECTIONS))


def flood_size() -> int:
    """Thousands of connections, within the file descriptor limit of both ends."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(200, min(1000, (soft - 200) // 2))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def still_open(socks: list[socket.socket]) -> int:
    return sum(not closed_by_server(s) for s in socks)


def wait_until_open_at_most(socks: list[socket.socket], limit: int) -> int:
    deadline = time.monotonic() + DEADLINE_SECONDS
    count = still_open(socks)
    while count > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        count = still_open(socks)
    return count


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    started = Daemon(str(tmp_path / "keycloak.log"), extra=LIMITS)
    yield started
    if started.process.poll() is None:
        started.stop()


@pytest.fixture
def patient_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """Idle connections are kept a minute: only the cap closes them."""
    started = Daemon(
        str(tmp_path / "keycloak.log"),
        extra=("--http-idle-timeout", "60s", "--http-max-connections", str(MAX_CONNECTIONS)),
    )
    yield started
    if started.process.poll() is None:
        started.stop()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        with contextlib.suppress(OSError):
            sock.close()


def test_idle_flood_is_capped_and_probes_get_in(
    patient_daemon: Daemon, sockets: list[socket.socket]
) -> None:
    daemon = patient_daemon
    before_kib = rss_kib(daemon.process.pid)
    for _ in range(flood_size()):
        sockets.append(connect(daemon.port))
    # the kubelet's probe: a new connection while thousands are open
    assert get(daemon.port, "/livez")[0] == 200
    assert wait_until_open_at_most(sockets, MAX_CONNECTIONS) <= MAX_CONNECTIONS
    assert rss_kib(daemon.process.pid) - before_kib < 8 * 1024


def test_idle_and_trickling_connections_are_closed(
    daemon: Daemon, sockets: list[socket.socket]
) -> None:
    sockets.extend(connect(daemon.port) for _ in range(20))
    trickle = connect(daemon.port)
    trickle.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    deadline = time.monotonic() + DEADLINE_SECONDS
    for _ in range(int(DEADLINE_SECONDS / 0.1)):  # one header byte every 100 ms
        if closed_by_server(trickle) or time.monotonic() > deadline:
            break
        with contextlib.suppress(OSError):
            trickle.send(b"a")
        time.sleep(0.1)
    sockets.append(trickle)
    assert closed_by_server(trickle)
    assert wait_until_open_at_most(sockets, 0) == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n",
    ],
    ids=["64 KiB URL", "64 KiB header"],
)
def test_oversized_request_is_one_short_log_line(daemon: Daemon, request_bytes: bytes) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(request_bytes)
        answer = sock.recv(64)
    assert answer.split(b" ", 2)[1] == b"400"
    assert get(daemon.port, "/livez")[0] == 200
    code, err = daemon.stop()
    assert code == 0
    assert err.count("Bad HTTP request") == 1
    assert "Traceback" not in err and "aaaaaaaa" not in err
