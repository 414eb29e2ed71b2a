"""The sidecar's own port under abuse (issue 15, item 4): probe latency and memory.

Starts the daemon (optionally inside a cgroup v1/v2 CPU quota, like the manifest's 200m
limit), then on 127.0.0.1 only:

1. ``idle``: opens ``--idle`` connections that never send a byte, then probes /livez; reports
   the daemon's RSS before, during and after, and how many idle connections are still open
   once ``--settle`` seconds have passed.
2. ``storm``: ``--storm`` clients request /metrics (or /status) back to back for
   ``--seconds`` while a kubelet-like prober opens a fresh connection to /livez every
   100 ms with a 3 s timeout; reports the probe latencies (p50, p99, max) and failures.

Every loop is bounded in count and time; the daemon is stopped at the end (and on errors).

    .venv/bin/python benchmarks/port_flood.py --cpu-millicores 200
    .venv/bin/python benchmarks/port_flood.py --source /path/to/other/checkout --no-limits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE_TIMEOUT_SECONDS = 3.0
PROBE_PERIOD_SECONDS = 0.1
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_cgroup(millicores: int) -> Path | None:
    """A CPU-quota cgroup of our own (v1 cpu controller or v2 cpu.max), or None."""
    name = f"keycloak-sidecar-bench-{os.getpid()}"
    try:
        if (CGROUP_V1 / "cpu.cfs_period_us").exists():
            group = CGROUP_V1 / name
            group.mkdir()
            (group / "cpu.cfs_quota_us").write_text(str(millicores * 100))
            (group / "cpu.cfs_period_us").write_text("100000")
            return group
        if (CGROUP_V2 / "cgroup.controllers").exists():
            group = CGROUP_V2 / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{millicores * 100} 100000")
            return group
    except OSError as error:
        print(f"no CPU cgroup ({error}); measuring without a limit", file=sys.stderr)
    return None


def start_daemon(
    source: Path, port: int, log_file: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [
        sys.executable, "-m", "sidecar", "--log-file", str(log_file),
        "--listen", f"127.0.0.1:{port}", "--no-kubernetes", "--keycloak-url", "", *extra,
    ]  # fmt: skip
    child = subprocess.Popen(
        command, cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return child
        time.sleep(0.05)
    child.kill()
    raise SystemExit("the daemon did not start")


async def probe_once(port: int) -> float | None:
    """One kubelet-like GET /livez on a fresh connection; seconds, or None on failure."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            await reader.read()
            writer.close()
    except (TimeoutError, OSError):
        return None
    return time.monotonic() - started if b" 200 " in status else None


async def hammer(port: int, path: str, stop: asyncio.Event, counter: list[int]) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while not stop.is_set():
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                counter[0] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
            await asyncio.sleep(0.01)


async def storm(port: int, path: str, clients: int, seconds: float) -> str:
    stop = asyncio.Event()
    counter = [0]
    workers = [asyncio.create_task(hammer(port, path, stop, counter)) for _ in range(clients)]
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    await asyncio.sleep(0.5)  # let the storm build up
    while time.monotonic() < deadline:
        result = await probe_once(port)
        if result is None:
            failures += 1
        else:
            latencies.append(result)
        await asyncio.sleep(PROBE_PERIOD_SECONDS)
    stop.set()
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    if not latencies:
        return f"{path} x{clients}: every probe failed ({failures})"
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{path} x{clients}: /livez p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
        f"max {ms[-1]:.1f} ms, failed {failures}/{failures + len(ms)}; "
        f"{counter[0] / seconds:.0f} {path} answers/s"
    )


def idle_flood(pid: int, port: int, count: int, settle_seconds: float) -> str:
    before = rss_mib(pid)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        probe = asyncio.run(probe_once(port))
        during = rss_mib(pid)
        time.sleep(settle_seconds)
        still_open = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        after = rss_mib(pid)
    finally:
        for sock in socks:
            sock.close()
    shown = "failed" if probe is None else f"{probe * 1000:.1f} ms"
    return (
        f"{count} idle connections: /livez {shown}; RSS {before:.1f} -> {during:.1f} MiB, "
        f"{after:.1f} MiB after {settle_seconds:.0f} s with {still_open} still open"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--cpu-millicores", type=int, default=200)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--storm", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-limits", action="store_true", help="a daemon without the flags")
    parser.add_argument("--daemon-arg", action="append", default=[], help="passed on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        extra = [] if args.no_limits else ["--http-idle-timeout", "5s", *args.daemon_arg]
        child = start_daemon(args.source, port, Path(tmp) / "keycloak.log", extra)
        group = cpu_cgroup(args.cpu_millicores) if args.cpu_millicores else None
        try:
            if group is not None:
                (group / "cgroup.procs").write_text(str(child.pid))
            limit = f"{args.cpu_millicores}m CPU" if group else "no CPU limit"
            print(f"# port flood, {limit}, source {args.source}")
            print(idle_flood(child.pid, port, args.idle, args.settle))
            for path in ("/metrics", "/status"):
                print(asyncio.run(storm(port, path, args.storm, args.seconds)))
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            if group is not None:
                with contextlib.suppress(OSError):
                    group.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
