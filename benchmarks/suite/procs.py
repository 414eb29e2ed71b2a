"""Child processes (each in its own group), loopback HTTP, /proc readings."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from suite.config import REPO


class Processes:
    """Every child in its own process group; ``close()`` ends them all (TERM, then KILL)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: list[str],
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        out = log_path.open("ab") if log_path else subprocess.DEVNULL
        try:
            child = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out if stdout is None else stdout,
                stderr=out,
                start_new_session=True,
                env=None if env is None else {**os.environ, **env},
            )
        finally:
            if log_path and not isinstance(out, int):
                out.close()
        self.children.append(child)
        return child

    def stop(self, child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
        # whatever the leader left behind in its group goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        if child in self.children:
            self.children.remove(child)

    def close(self) -> None:
        for child in list(self.children):
            self.stop(child)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout_seconds: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_seconds)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_http(
    port: int,
    path: str,
    timeout_seconds: float,
    interval_seconds: float = 0.005,
    child: subprocess.Popen[bytes] | None = None,
) -> int:
    """Poll until the server answers anything; returns the status.

    Raises ``TimeoutError`` on timeout and ``RuntimeError`` at once if ``child`` exits.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            return http_get(port, path, 1.0)[0]
        except OSError:
            if child is not None and child.poll() is not None:
                raise RuntimeError(f"exited with rc {child.returncode} before answering") from None
            time.sleep(interval_seconds)
    raise TimeoutError(f"no answer on 127.0.0.1:{port}{path} within {timeout_seconds:g} s")


def stderr_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        return lines[-1][:100] if lines else ""
    return ""


def read_status(port: int) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        status, body = http_get(port, "/status")
        if status == 200:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
    return None


def dig(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: field 0 is the state, 7 minflt, 11 utime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = proc_stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    return int(proc_stat_fields(pid)[7])
