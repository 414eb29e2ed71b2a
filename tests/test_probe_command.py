"""The Keycloak container's fail-open exec probes, run for real (issue 12).

The command is taken from the manifests as the kubelet would run it (argv, no shell around
it, no standard input) and pointed at a real sidecar process: it must pass unless the
sidecar explicitly answers 503, and it must finish within the probe's ``timeoutSeconds``
(an exec probe that outlives it counts as failed), whatever state the sidecar is in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = [
    ROOT / "k8s" / "base" / "keycloak.yaml",
    ROOT / "k8s" / "examples" / "wildfly-legacy-patch.yaml",
]
STARTED = (
    "2024-12-07 17:52:23,717 INFO  [io.quarkus] (main) Keycloak 26.0.7 on JVM (powered by "
    "Quarkus 3.15.1) started in 39.709s. Listening on: http://0.0.0.0:8080.\n"
)
FATAL = (
    "2024-12-07 17:52:01,100 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionException"
    "Handler] (main) ERROR: Failed to start server in (production) mode\n"
)
BOOTING = (
    "2024-12-07 17:51:50,001 INFO  [org.keycloak.quarkus.runtime.hostname.DefaultHostname"
    "Provider] (main) Hostname settings: Base URL: <unset>, Hostname: <request>\n"
)
#: the probes' port in the manifests
SIDECAR_PORT = 9095
HANG_GUARD_SECONDS = 20.0


def keycloak_probes(path: Path) -> dict[str, dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    statefulset = next(d for d in documents if d["kind"] == "StatefulSet")
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    keycloak = next(c for c in containers if c["name"] == "keycloak")
    return {kind: keycloak[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}


BASE = keycloak_probes(MANIFESTS[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_probe(probe: dict[str, Any], port: int) -> int:
    """Run the exec probe against ``port`` as the kubelet does; its exit status."""
    command = [
        part.replace(f"/127.0.0.1/{SIDECAR_PORT}", f"/127.0.0.1/{port}")
        for part in probe["exec"]["command"]
    ]
    assert command != probe["exec"]["command"], "the probe does not name the sidecar's port"
    completed = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=probe["timeoutSeconds"],  # exceeding it is a failed probe for the kubelet
        check=False,
        env={"PATH": os.environ["PATH"]},
    )
    return completed.returncode


def status_of(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


class Sidecar:
    """The real daemon on a log file, without Keycloak URL and Kubernetes."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--log-file", str(log), "--no-kubernetes",
             "--keycloak-url", "", "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            cwd=ROOT,
        )  # fmt: skip

    def wait_for(self, path: str, status: int) -> None:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = status_of(self.port, path)
                if last == status:
                    return
            except OSError as error:
                last = error
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status}: {last}")

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)


@pytest.fixture
def sidecar_on(tmp_path: Path) -> Iterator[Any]:
    started: list[Sidecar] = []

    def start(*lines: str) -> Sidecar:
        log = tmp_path / f"keycloak-{len(started)}.log"
        log.write_text("".join(lines), encoding="utf-8")
        started.append(sidecar := Sidecar(log))
        return sidecar

    yield start
    for sidecar in started:
        if sidecar.process.poll() is None:
            os.killpg(sidecar.process.pid, signal.SIGKILL)
            sidecar.process.wait()


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.stem)
def test_every_manifest_uses_the_same_fail_open_probes(manifest: Path) -> None:
    probes = keycloak_probes(manifest)
    for kind, path in (("startup", "/startupz"), ("liveness", "/livez")):
        assert probes[kind]["exec"]["command"] == BASE[kind]["exec"]["command"], kind
        assert probes[kind]["timeoutSeconds"] == BASE[kind]["timeoutSeconds"], kind
        assert f"GET {path} " in probes[kind]["exec"]["command"][2]
    assert probes["readiness"]["httpGet"]["path"] == "/readyz", "readiness stays fail-closed"


def test_the_probes_run_under_bash_with_a_timeout_above_the_read_timeout() -> None:
    for kind in ("startup", "liveness"):
        command = BASE[kind]["exec"]["command"]
        assert command[:2] == ["/bin/bash", "-c"], "/dev/tcp is a bash feature"
        assert BASE[kind]["timeoutSeconds"] >= 2 + 2, "read -t 2 plus room for bash to start"
        assert "read -r -t 2 " in command[2]


@pytest.mark.parametrize("kind", ["liveness", "startup"])
def test_passes_while_the_sidecar_answers_200(kind: str, sidecar_on: Any) -> None:
    sidecar = sidecar_on(BOOTING, STARTED)
    sidecar.wait_for("/livez", 200)
    sidecar.wait_for("/startupz", 200)
    assert run_probe(BASE[kind], sidecar.port) == 0


@pytest.mark.parametrize(
    ("kind", "lines", "path"),
    [("liveness", (BOOTING, FATAL), "/livez"), ("startup", (BOOTING,), "/startupz")],
    ids=["livez-fatal-line", "startupz-still-starting"],
)
def test_fails_on_an_explicit_503(
    kind: str, lines: tuple[str, ...], path: str, sidecar_on: Any
) -> None:
    sidecar = sidecar_on(*lines)
    sidecar.wait_for(path, 503)
    assert run_probe(BASE[kind], sidecar.port) != 0


@pytest.mark.parametrize("kind", ["liveness", "startup"])
def test_passes_when_nothing_listens(kind: str) -> None:
    """A failed ``exec 3<>/dev/tcp/...`` must not end the script with a failure."""
    assert run_probe(BASE[kind], free_port()) == 0


@pytest.mark.parametrize("kind", ["liveness", "startup"])
def test_passes_when_the_sidecar_is_stopped(kind: str, sidecar_on: Any) -> None:
    """SIGSTOP: the kernel still accepts the connection (backlog); the read times out."""
    sidecar = sidecar_on(BOOTING, FATAL)
    sidecar.wait_for("/livez", 503)
    sidecar.signal(signal.SIGSTOP)
    try:
        assert run_probe(BASE[kind], sidecar.port) == 0
    finally:
        sidecar.signal(signal.SIGCONT)


def test_passes_when_the_answer_comes_after_the_read_timeout(sidecar_on: Any) -> None:
    """A 503 that arrives 5 s late (a throttled or paused sidecar) is no verdict."""
    sidecar = sidecar_on(BOOTING, FATAL)
    sidecar.wait_for("/livez", 503)
    sidecar.signal(signal.SIGSTOP)
    resume = threading.Timer(5.0, sidecar.signal, (signal.SIGCONT,))
    resume.start()
    try:
        assert run_probe(BASE["liveness"], sidecar.port) == 0
    finally:
        resume.cancel()
        sidecar.signal(signal.SIGCONT)


def test_passes_when_the_connection_is_reset() -> None:
    """A peer that accepts and resets (a dying process) is no verdict either."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]

        def reset_each() -> None:
            server.settimeout(HANG_GUARD_SECONDS)
            for _ in range(1):
                connection, _ = server.accept()
                connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                connection.close()

        thread = threading.Thread(target=reset_each, name="reset-server")
        thread.start()
        try:
            assert run_probe(BASE["liveness"], port) == 0
        finally:
            thread.join(HANG_GUARD_SECONDS)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 1), (b"HTTP/1.1 500 Oops\r\n\r\n", 0),
     (b"garbage\r\n", 0), (b"", 0)],
    ids=["503-fails", "500-passes", "garbage-passes", "closed-passes"],
)  # fmt: skip
def test_only_503_is_a_verdict(answer: bytes, expected: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(HANG_GUARD_SECONDS)
        port = server.getsockname()[1]

        def answer_once() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(answer)

        thread = threading.Thread(target=answer_once, name="answer-server")
        thread.start()
        try:
            assert (run_probe(BASE["liveness"], port) != 0) == bool(expected)
        finally:
            thread.join(HANG_GUARD_SECONDS)


def test_posix_mode_bash_keeps_failing_open() -> None:
    """In POSIX mode a failed redirection of ``exec`` ends the shell: the subshell keeps
    that on the passing side too (e.g. with POSIXLY_CORRECT in the container's env)."""
    command = [
        part.replace("/9095", f"/{free_port()}") for part in BASE["liveness"]["exec"]["command"]
    ]
    completed = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False,
        env={"PATH": os.environ["PATH"], "POSIXLY_CORRECT": "1"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
