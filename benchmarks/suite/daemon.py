"""The sidecar under test and what runs around it: its command line, start and ingest
wait; the generated logs, the load writer, the /livez poller and the Kubernetes API double."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import genlog

from suite.config import HERE, LOAD_LINES_PER_SECOND, REPO, Config
from suite.procs import Processes, cpu_seconds, dig, free_port, read_status, stderr_tail, wait_http


@dataclass(slots=True)
class Daemon:
    """A running ``keycloak-sidecar`` on a log file."""

    child: subprocess.Popen[bytes]
    port: int
    log_file: Path
    argv: list[str]


def daemon_argv(cfg: Config, log_file: Path, port: int) -> list[str]:
    return [
        *cfg.sidecar,
        "--log-file",
        str(log_file),
        "--listen",
        f"127.0.0.1:{port}",
        "--no-kubernetes",
        "--keycloak-url",
        "",
    ]


def daemon_shown(cfg: Config, *, kube: bool = False) -> str:
    """The daemon's command line as the table shows it; ``kube``: as ``start_daemon`` runs
    it with ``start_kube_double``'s environment."""
    if kube:
        return (
            f'{cfg.sidecar_shown} --log-file F --listen 127.0.0.1:P --keycloak-url "" with '
            "KUBECONFIG=(benchmarks/kube_double.py: 2 ready pods) POD_NAME=keycloak-0"
        )
    return (
        f'{cfg.sidecar_shown} --log-file F --listen 127.0.0.1:P --no-kubernetes --keycloak-url ""'
    )


def start_daemon(
    cfg: Config, procs: Processes, log_file: Path, tag: str, kube_env: dict[str, str] | None = None
) -> Daemon:
    """``kube_env`` (KUBECONFIG, POD_NAME, POD_NAMESPACE) turns the Kubernetes side on."""
    port = free_port()
    argv = daemon_argv(cfg, log_file, port)
    if kube_env is not None:
        argv.remove("--no-kubernetes")
    stderr_path = cfg.out_dir / f"daemon-{tag}.stderr"
    stderr_path.unlink(missing_ok=True)
    child = procs.start(argv, stderr_path, env=kube_env)
    try:
        wait_http(port, "/livez", 20.0, child=child)
    except (TimeoutError, RuntimeError) as exc:
        procs.stop(child)
        tail = stderr_tail(stderr_path)
        raise RuntimeError(f"daemon {exc}: {tail or 'no stderr'}") from None
    return Daemon(child, port, log_file, argv)


def wait_ingested(d: Daemon, expected_lines: int | None, timeout_seconds: float) -> str:
    """Wait until the daemon has read everything; returns how that was decided."""
    deadline = time.monotonic() + timeout_seconds
    status = read_status(d.port)
    counter = next(
        (k for k in ("log.lines", "log.lines_total", "lines") if isinstance(dig(status, k), int)),
        None,
    )
    if counter and expected_lines is not None:
        while time.monotonic() < deadline:
            if (dig(read_status(d.port), counter) or 0) >= expected_lines:
                return f"/status {counter}"
            time.sleep(0.02)
        raise TimeoutError(f"/status {counter} never reached {expected_lines}")
    # No line counter: the daemon is done when its CPU time stops moving.
    last = cpu_seconds(d.child.pid)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now_cpu = cpu_seconds(d.child.pid)
        if now_cpu - last > 0.02:
            last, still_since = now_cpu, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            return "CPU time settled (no line counter in /status)"
    raise TimeoutError("daemon still busy")


def data_file(cfg: Config, log_format: str, lines: int, boot_every_records: int = 0) -> Path:
    """A generated log, cached in the data dir (same seed and size give the same bytes)."""
    suffix = f"-boots{boot_every_records}" if boot_every_records else ""
    version = hashlib.sha256((HERE / "genlog.py").read_bytes()).hexdigest()[:8]
    path = cfg.data_dir / f"kc-{log_format}-{lines}{suffix}-{version}.log"
    if path.exists():
        return path
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    gen = genlog.LogGenerator(log_format=log_format, boot_every_records=boot_every_records)
    started = time.monotonic()
    genlog.write_log(tmp, lines, gen)
    tmp.rename(path)
    elapsed = time.monotonic() - started
    cfg.notes.append(
        f"generated {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {elapsed:.1f} s"
    )
    return path


def work_file(cfg: Config, name: str) -> Path:
    """A daemon's log file: next to the cached data (it can be GBs), removed at exit."""
    work_dir = cfg.data_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir / name


def human_lines(lines: int) -> str:
    return f"{lines // 1_000_000}M" if lines % 1_000_000 == 0 else f"{lines // 1000}k"


def rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M lines/s"
    return f"{value / 1e3:.0f} k lines/s"


class Poller:
    """GET on one keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def status(self, path: str) -> int:
        for _ in range(2):
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            else:
                return response.status
        return 0

    def close(self) -> None:
        self.conn.close()


def healthy_log(path: Path) -> genlog.LogGenerator:
    """A file holding one complete boot (wall-clock stamps); returns its generator."""
    gen = genlog.LogGenerator(wall_clock=True, seed=random.randrange(1 << 30))
    path.write_text(gen.batch(200))
    return gen


def append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def start_writer(cfg: Config, procs: Processes, path: Path) -> subprocess.Popen[bytes]:
    argv = [
        cfg.python,
        str(HERE / "genlog.py"),
        "append",
        str(path),
        "--rate",
        str(LOAD_LINES_PER_SECOND),
        "--no-boot",
        "--seed",
        "11",
    ]
    writer = procs.start(argv)
    time.sleep(1.0)
    if writer.poll() is not None:
        raise RuntimeError("background writer exited")
    return writer


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(8 << 20), b""))


def start_kube_double(cfg: Config, procs: Processes) -> dict[str, str]:
    """The tests' API-server double on loopback; the environment that points a sidecar at it."""
    directory = cfg.data_dir / "work" / "kube"
    directory.mkdir(parents=True, exist_ok=True)
    tests_path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    child = procs.start(
        [cfg.python, str(HERE / "kube_double.py"), str(directory)],
        cfg.out_dir / "kube-double.stderr",
        env={"PYTHONPATH": tests_path},
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    kubeconfig = child.stdout.readline().decode().strip()
    if not kubeconfig:
        raise RuntimeError(
            f"API double did not start: {stderr_tail(cfg.out_dir / 'kube-double.stderr')}"
        )
    return {"KUBECONFIG": kubeconfig, "POD_NAME": "keycloak-0", "POD_NAMESPACE": "ns"}
