"""The real daemon as a process: endpoints, recovery after a sidecar restart, stdin, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTED = ("2024-12-07 17:52:23,717 INFO  [io.quarkus] (main) Keycloak 26.0.7 on JVM (powered by "
           "Quarkus 3.15.1) started in 39.709s. Listening on: http://0.0.0.0:8080. Management "
           "interface listening on http://0.0.0.0:9000.\n")
BOOT = ("2024-12-07 17:51:50,001 INFO  [org.keycloak.quarkus.runtime.hostname.DefaultHostname"
        "Provider] (main) Hostname settings: Base URL: <unset>, Hostname: <request>\n")
FATAL = ("2024-12-07 17:52:01,100 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionException"
         "Handler] (main) ERROR: Failed to start server in (production) mode\n"
         "2024-12-07 17:52:01,101 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionException"
         "Handler] (main) ERROR: Failed to start caches\n")
DEADLINE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(port: int, path: str, status: int) -> dict[str, object]:
    """Poll until ``path`` answers ``status`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, body = get(port, path)
            if code == status:
                return body
            last = (code, body)
        except OSError as error:
            last = error
        time.sleep(0.02)
    raise AssertionError(f"{path} never answered {status}; last: {last}")


class Daemon:
    def __init__(self, log_file: str, *, stdin: int | None = None,
                 command: tuple[str, ...] = (sys.executable, "-m", "sidecar"),
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*command, "--log-file", log_file, "--listen",
             f"127.0.0.1:{self.port}", "--no-kubernetes", "--keycloak-url", "", *extra],
            stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        wait_for(self.port, "/status", 200)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=DEADLINE_SECONDS)
        return self.process.returncode, err.decode()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            os.killpg(daemon.process.pid, signal.SIGKILL)
            daemon.process.wait()


def test_fatal_line_turns_livez_503_and_sigterm_stops_cleanly(tmp_path: Path,
                                                                daemons: list[Daemon]) -> None:
    log = tmp_path / "keycloak.log"
    log.write_text(BOOT)
    daemons.append(daemon := Daemon(str(log)))
    with log.open("a") as handle:
        handle.write(FATAL)
    body = wait_for(daemon.port, "/livez", 503)
    assert body["reasons"] == ["startup_fatal"]
    wait_for(daemon.port, "/startupz", 200)
    code, err = daemon.stop()
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(e["msg"] == "Verdict changed" and e["verdict"] == "live" and not e["ok"]
               for e in lines)


def test_sidecar_restart_keeps_a_started_keycloak_alive(tmp_path: Path,
                                                         daemons: list[Daemon]) -> None:
    """A sidecar that restarts next to a running Keycloak must not miss 'started'."""
    log = tmp_path / "keycloak.log"
    log.write_text(BOOT + STARTED + "2024-12-07 18:00:00,000 INFO  [org.x] (main) other\n" * 500)
    daemons.append(daemon := Daemon(str(log)))
    wait_for(daemon.port, "/startupz", 200)
    wait_for(daemon.port, "/readyz", 200)
    assert get(daemon.port, "/livez")[0] == 200
    status = get(daemon.port, "/status")[1]
    assert status["log"]["caught_up"] is True  # type: ignore[index]


def test_sidecar_restart_remembers_a_fatal_condition(tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    log = tmp_path / "keycloak.log"
    log.write_text(BOOT + FATAL)
    daemons.append(daemon := Daemon(str(log)))
    body = wait_for(daemon.port, "/livez", 503)
    assert body["reasons"] == ["startup_fatal"]


def test_stdin_source_and_end_of_input(tmp_path: Path, daemons: list[Daemon]) -> None:
    read_end, write_end = os.pipe()
    try:
        daemons.append(daemon := Daemon("-", stdin=read_end))
        os.write(write_end, (BOOT + FATAL).encode())
        wait_for(daemon.port, "/livez", 503)
    finally:
        os.close(write_end)
        os.close(read_end)
    # end of input: the daemon keeps serving what it knows
    time.sleep(0.2)
    assert get(daemon.port, "/livez")[0] == 503
    assert daemon.stop()[0] == 0


def test_missing_log_file_is_not_keycloaks_death(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemons.append(daemon := Daemon(str(tmp_path / "absent" / "keycloak.log")))
    assert get(daemon.port, "/livez")[0] == 200
    status = get(daemon.port, "/status")[1]
    assert status["log"]["present"] is False  # type: ignore[index]


def test_bad_setting_is_a_clear_error() -> None:
    result = subprocess.run([sys.executable, "-m", "sidecar", "--listen", "0.0.0.0:8080",
                             "--probe-timeout", "soon", "--check-config"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "collides with Keycloak HTTP" in result.stderr
    assert "not a duration" in result.stderr


def daemon_settings(tmp_path: Path, port: int) -> object:
    from sidecar.settings import load_settings

    (tmp_path / "k.log").write_text("")
    return load_settings({"log_file": str(tmp_path / "k.log"), "listen": f"127.0.0.1:{port}",
                          "no_kubernetes": "true", "keycloak_url": ""}, {})


def test_a_taken_port_is_reported_as_cannot_serve(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from sidecar import runtime

    monkeypatch.setattr(runtime.logjson, "configure", lambda level: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = daemon_settings(tmp_path, int(taken.getsockname()[1]))
        assert runtime.main(settings, ()) == 1  # type: ignore[arg-type]
    failures = [r.__dict__.get("error", "") for r in caplog.records if r.msg == "Sidecar failed"]
    assert len(failures) == 1 and failures[0].startswith("cannot serve: ")


def test_a_workers_os_error_is_not_labelled_cannot_serve(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from sidecar import runtime

    async def broken(*args: object) -> None:
        raise PermissionError("a worker's own trouble")

    monkeypatch.setattr(runtime.logjson, "configure", lambda level: None)
    monkeypatch.setattr(runtime, "verdict_worker", broken)
    with pytest.raises(BaseExceptionGroup) as raised:
        runtime.main(daemon_settings(tmp_path, free_port()), ())  # type: ignore[arg-type]
    assert raised.group_contains(PermissionError)
    assert not [r for r in caplog.records if "cannot serve" in str(r.__dict__.get("error", ""))]


def test_keycloak_url_secrets_never_leave_the_daemon(tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    """Userinfo and query of --keycloak-url: not in the start-up line, not in /status."""
    port = free_port()
    url = f"http://admin:s3cret@127.0.0.1:{port}/kc?access_token=t0ken"
    daemons.append(daemon := Daemon(str(tmp_path / "keycloak.log"),
                                    extra=("--keycloak-url", url)))
    status = get(daemon.port, "/status")[1]
    code, err = daemon.stop()
    shown = status["settings"]["keycloak_url"]  # type: ignore[index]
    assert shown == f"http://127.0.0.1:{port}/kc?REDACTED"
    assert code == 0 and "Serving" in err
    for secret in ("s3cret", "t0ken", "admin:"):
        assert secret not in err and secret not in json.dumps(status)


def _metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"keycloak_sidecar_{name} "):
                return float(line.split()[1])
    return None


def _wait_metric(port: int, name: str, value: float) -> float | None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    seen = _metric(port, name)
    while seen != value and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _metric(port, name)
    return seen


def test_log_path_turned_directory_and_back_is_followed(tmp_path: Path,
                                                        daemons: list[Daemon]) -> None:
    """log_source_up tells the truth, and the file that comes back is read (issue 15)."""
    log = tmp_path / "keycloak.log"
    log.write_text(BOOT)
    daemons.append(daemon := Daemon(str(log)))
    assert _wait_metric(daemon.port, "log_source_up", 1.0) == 1.0
    log.unlink()
    log.mkdir()
    time.sleep(1.5)  # more than the 1 s fallback poll: the follower has met the directory
    assert _wait_metric(daemon.port, "log_source_up", 0.0) == 0.0
    log.rmdir()
    log.write_text(BOOT + STARTED)
    assert wait_for(daemon.port, "/readyz", 200)["status"] == "ok"
    assert _metric(daemon.port, "log_source_up") == 1.0
