"""Memory: RSS after start, after a burst, over time-compressed operation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import genlog

from suite.config import Config, Row, not_available
from suite.daemon import (
    Daemon,
    count_lines,
    daemon_shown,
    data_file,
    healthy_log,
    human_lines,
    rate,
    start_daemon,
    start_kube_double,
    wait_ingested,
    work_file,
)
from suite.procs import Processes, proc_status_kib


def append_file(src: Path, dst: Path) -> None:
    with src.open("rb") as source, dst.open("ab") as target:
        shutil.copyfileobj(source, target, 8 << 20)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    return proc_status_kib(pid, "VmRSS") / 1024, proc_status_kib(pid, "VmHWM") / 1024


def settled_rss_mib(cfg: Config, pid: int) -> tuple[float, float]:
    time.sleep(cfg.settle_seconds)
    return rss_mib(pid)


def hour_stream(cfg: Config) -> genlog.LogGenerator:
    """A simulated hour at 1,000 records/s (scaled down in quick mode): 9 boots, 1,800 views."""
    return genlog.LogGenerator(
        seed=23,
        records_per_second=1000,
        boot_every_records=max(1, cfg.hour_records // 9),
        view_change_every_records=max(1, cfg.hour_records // 1800),
    )


def feed_hour(cfg: Config, daemon: Daemon, total_lines: int) -> tuple[list[float], int]:
    """Append the hour in quarters; returns VmRSS after each quarter and the lines fed."""
    records = cfg.hour_records
    gen = hour_stream(cfg)
    samples: list[float] = []
    for _ in range(4):
        fd = os.open(daemon.log_file, os.O_WRONLY | os.O_APPEND)
        try:
            for _ in range(records // 4 // genlog.BATCH_RECORDS):
                chunk = gen.batch()
                total_lines += chunk.count("\n")
                os.write(fd, chunk.encode())
        finally:
            os.close(fd)
        wait_ingested(daemon, total_lines, 600)
        samples.append(settled_rss_mib(cfg, daemon.child.pid)[0])
    return samples, total_lines


def measure_memory(cfg: Config, procs: Processes) -> list[Row]:
    try:
        rows = memory_rows(cfg, procs, kube_env=None)
    finally:
        procs.close()
    try:
        kube_env = start_kube_double(cfg, procs)
        return rows + memory_rows(cfg, procs, kube_env)
    except (RuntimeError, TimeoutError) as exc:
        return [*rows, not_available("Memory", "with the Kubernetes side on", str(exc)[:160])]
    finally:
        procs.close()


def memory_rows(cfg: Config, procs: Processes, kube_env: dict[str, str] | None) -> list[Row]:
    kube = kube_env is not None
    path = work_file(cfg, "memory-kube.log" if kube else "memory.log")
    healthy_log(path)
    lines = count_lines(path)
    big = data_file(cfg, genlog.PLAIN, cfg.memory_lines)
    daemon = start_daemon(cfg, procs, path, "memory-kube" if kube else "memory", kube_env)
    label = human_lines(cfg.memory_lines)
    suffix = ", Kubernetes side on" if kube else ""
    shown = daemon_shown(cfg, kube=kube)
    shown += (
        f"; VmRSS/VmHWM from /proc/PID/status, {cfg.settle_seconds:g} s after the last line "
        "was read"
    )
    rows: list[Row] = []
    wait_ingested(daemon, lines, 60)
    rss, hwm = settled_rss_mib(cfg, daemon.child.pid)
    rows.append(
        Row(
            "Memory",
            f"after start{suffix}",
            f"RSS {rss:.1f} MiB (peak {hwm:.1f})",
            "< 50 MiB",
            shown,
        )
    )
    started = time.perf_counter()
    append_file(big, path)
    how = wait_ingested(daemon, lines + cfg.memory_lines, 900)
    elapsed = time.perf_counter() - started
    rss, hwm = settled_rss_mib(cfg, daemon.child.pid)
    rows.append(
        Row(
            "Memory",
            f"after {label} lines appended{suffix}",
            f"RSS {rss:.1f} MiB (peak {hwm:.1f})",
            "< 50 MiB",
            f"{shown}; cat DATA/{big.name} >> F",
        )
    )
    if not kube:
        rows.append(
            Row(
                "Log throughput",
                f"daemon tailing {label} appended lines",
                f"{rate(cfg.memory_lines / elapsed)} ({elapsed:.1f} s)",
                "",
                f"{daemon_shown(cfg)}; cat DATA/{big.name} >> F; done = {how}",
            )
        )
    samples, _ = feed_hour(cfg, daemon, lines + cfg.memory_lines)
    rss, hwm = rss_mib(daemon.child.pid)
    series = " / ".join(f"{s:.1f}" for s in samples)
    growth = samples[-1] - samples[0]
    hour = f"{cfg.hour_records / 3_600_000:.2g} h"
    rows.append(
        Row(
            "Memory",
            f"after {hour} of time-compressed operation (quarters){suffix}",
            f"RSS {series} MiB (peak {hwm:.1f}); growth {growth:+.1f} MiB",
            "flat, < 50 MiB",
            f"{shown}; genlog hour stream: 1,000 rec/s, 9 boots, 1,800 views",
        )
    )
    return rows
