"""Cold start (to the first answer) and recovery replay (a sidecar restarted next to a
running Keycloak reads the file's history first)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import genlog

from suite.config import Config, Row, not_available
from suite.daemon import (
    daemon_argv,
    daemon_shown,
    data_file,
    healthy_log,
    work_file,
)
from suite.procs import Processes, dig, free_port, http_get, read_status, wait_http


def measure_cold_start(cfg: Config, procs: Processes) -> list[Row]:
    path = work_file(cfg, "cold.log")
    healthy_log(path)
    samples: list[float] = []
    for _ in range(cfg.cold_starts):
        port = free_port()
        started = time.perf_counter()
        child = procs.start(daemon_argv(cfg, path, port), cfg.out_dir / "daemon-cold.stderr")
        try:
            wait_http(port, "/livez", 20.0, interval_seconds=0.002, child=child)
            samples.append(time.perf_counter() - started)
        finally:
            procs.stop(child)
    samples.sort()
    figure = (
        f"median {statistics.median(samples) * 1000:.0f} ms, "
        f"max {samples[-1] * 1000:.0f} ms (n={len(samples)})"
    )
    command = f"{daemon_shown(cfg)}; Popen -> first answered /livez, {cfg.cold_starts} starts"
    return [Row("Cold start", "process start -> first /livez answer", figure, "< 1 s", command)]


def replay_file(cfg: Config) -> Path:
    lines = cfg.replay_bytes // 266  # the plain mix averages ~266 bytes a line
    return data_file(cfg, genlog.PLAIN, lines, boot_every_records=10_000)


def measure_replay(cfg: Config, procs: Processes) -> list[Row]:
    path = replay_file(cfg)
    size_mb = path.stat().st_size / 1e6
    port = free_port()
    started = time.perf_counter()
    child = procs.start(daemon_argv(cfg, path, port), cfg.out_dir / "daemon-replay.stderr")
    try:
        wait_http(port, "/livez", 30.0, interval_seconds=0.002, child=child)
        first_answer = time.perf_counter() - started
        how = "/status log.caught_up"
        caught_up = None
        while time.perf_counter() - started < 60:
            status = read_status(port)
            flag = dig(status, "log.caught_up")
            if flag is None:
                how = "first /livez answer (proxy: /status has no log.caught_up)"
                caught_up = first_answer
                break
            if flag is True:
                caught_up = time.perf_counter() - started
                break
            time.sleep(0.005)
        startupz = http_get(port, "/startupz")[0]
    finally:
        procs.stop(child)
    if caught_up is None:
        return [
            not_available(
                "Recovery replay", f"{size_mb:.0f} MB log", "not caught up in 60 s", "< 1 s"
            )
        ]
    figure = f"{caught_up * 1000:.0f} ms (then /startupz {startupz})"
    command = f"{daemon_shown(cfg)} next to DATA/{path.name}; done = {how}"
    return [
        Row("Recovery replay", f"restart next to a {size_mb:.0f} MB log", figure, "< 1 s", command)
    ]
