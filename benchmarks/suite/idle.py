"""Idle CPU: two daemons (with and without the Kubernetes side) on a quiet healthy log."""

from __future__ import annotations

import time

import genlog

from suite.config import Config, Row, not_available
from suite.daemon import (
    Daemon,
    Poller,
    append,
    count_lines,
    daemon_shown,
    healthy_log,
    start_daemon,
    start_kube_double,
    wait_ingested,
    work_file,
)
from suite.procs import Processes, cpu_seconds


def measure_idle_cpu(cfg: Config, procs: Processes) -> list[Row]:
    """Two daemons at the same time, one with the Kubernetes side on (against the API double),
    each on its own healthy log getting one line a second and one /livez every 10 s."""
    kube_env: dict[str, str] | None = None
    kube_problem = ""
    try:
        kube_env = start_kube_double(cfg, procs)
    except RuntimeError as exc:
        kube_problem = str(exc)[:120]
    idlers = []
    try:
        for tag, env in (("idle", None), ("idle-kube", kube_env)):
            if tag == "idle-kube" and env is None:
                continue
            path = work_file(cfg, f"{tag}.log")
            gen = healthy_log(path)
            gen.skip_pending()
            daemon = start_daemon(cfg, procs, path, tag, env)
            wait_ingested(daemon, count_lines(path), 60)
            idlers.append((daemon, gen, Poller(daemon.port)))
        used, elapsed = idle_window(cfg, idlers)
    finally:
        for _daemon, _gen, poller in idlers:
            poller.close()
        procs.close()
    rows = [idle_row(cfg, used[0], elapsed, kube=False)]
    if kube_env is None:
        rows.append(not_available("Idle CPU", "Kubernetes side on", kube_problem))
    else:
        rows.append(idle_row(cfg, used[1], elapsed, kube=True))
    return rows


def idle_window(
    cfg: Config, idlers: list[tuple[Daemon, genlog.LogGenerator, Poller]]
) -> tuple[list[float], float]:
    """CPU seconds each daemon used over ``cfg.idle_seconds``, and the window's length."""
    before = [cpu_seconds(d.child.pid) for d, _, _ in idlers]
    started = time.monotonic()
    for second in range(cfg.idle_seconds):
        for daemon, gen, poller in idlers:
            append(daemon.log_file, gen.batch(1))
            if second % 10 == 0:
                poller.status("/livez")
        time.sleep(max(0.0, started + second + 1 - time.monotonic()))
    used = [cpu_seconds(d.child.pid) - b for (d, _, _), b in zip(idlers, before, strict=True)]
    return used, time.monotonic() - started


def idle_row(cfg: Config, used: float, elapsed: float, *, kube: bool) -> Row:
    figure = f"{used:.2f} CPU s over {elapsed:.0f} s = {100 * used / elapsed:.2f}% of a core"
    shown = daemon_shown(cfg, kube=kube)
    command = f"{shown}; 1 line/s appended, /livez every 10 s; utime+stime from /proc/PID/stat"
    suffix = ", Kubernetes side on" if kube else ""
    return Row(
        "Idle CPU",
        f"{cfg.idle_seconds} s healthy, 1 line/s{suffix}",
        figure,
        "< 0.5% of a core",
        command,
    )
