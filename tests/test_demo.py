"""``keycloak-sidecar demo`` as a user runs it: a subprocess on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sidecar.tools.demo import STORIES, load_story


def demo(*args: str, timeout_seconds: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def free_port_pair() -> int:
    """A port P with P and P+1 free right now (the demo's two sidecars)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free pair of ports")


@pytest.mark.parametrize("offset", [0, 1])
def test_a_taken_port_is_one_line_naming_it_and_the_flag(taken_port: int, offset: int) -> None:
    result = demo("--listen", f"127.0.0.1:{taken_port - offset}")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"port {taken_port} on 127.0.0.1 is not available" in result.stderr
    assert "--listen HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_listen_value_is_one_line() -> None:
    result = demo("--listen", "nowhere")

    assert (result.returncode, result.stderr) == (
        2,
        "keycloak-sidecar demo: --listen='nowhere': not HOST:PORT: 'nowhere'\n",
    )


@pytest.mark.parametrize("story", sorted(STORIES))
def test_each_story_restarts_the_broken_replica_and_names_pods(story: str) -> None:
    names = STORIES[story].replicas
    result = demo("--story", story, "--speed", "25", "--listen", f"127.0.0.1:{free_port_pair()}")

    assert result.returncode == 0, result.stderr
    assert f"kubelet: liveness probe failed, restarting Keycloak in {names['B']}" in result.stdout
    assert f"restarts: {names['A']} 0, {names['B']} 1" in result.stdout
    assert "{'A'" not in result.stdout
    assert "CONTEXT.md" not in result.stdout


def test_the_keycloak_26_story_is_json_records() -> None:
    lines = load_story(STORIES["26"])

    assert lines
    assert all(line.text.startswith('{"timestamp":') for line in lines)
    assert {line.replica for line in lines} == {"A", "B"}
