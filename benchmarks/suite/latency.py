"""Detection latency: a fatal line appended -> /livez answers 503."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import genlog

from suite.config import LOAD_LINES_PER_SECOND, Config, Row, not_available
from suite.daemon import (
    Poller,
    append,
    daemon_shown,
    healthy_log,
    start_daemon,
    start_kube_double,
    start_writer,
    work_file,
)
from suite.procs import Processes


def wait_status(
    poller: Poller, path: str, wanted: int, timeout_seconds: float, interval_seconds: float = 0.001
) -> float | None:
    """Seconds until ``path`` answers ``wanted`` (None on timeout)."""
    started = time.perf_counter()
    while True:
        if poller.status(path) == wanted:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_seconds:
            return None
        time.sleep(interval_seconds)


@dataclass(slots=True)
class Trials:
    seconds: list[float] = field(default_factory=list)
    timeouts: int = 0
    mode: str = "re-armed by appending a new boot"

    def add(self, took: float | None) -> None:
        """One trial's fatal-line-to-503 seconds; ``None``: no 503 within 5 s."""
        if took is None:
            self.timeouts += 1
        else:
            self.seconds.append(took)


def fatal_trial(poller: Poller, path: Path, gen: genlog.LogGenerator) -> float | None:
    time.sleep(random.uniform(0.02, 0.08))
    fatal = gen.records(genlog.fatal_records()).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        started = time.perf_counter()
        os.write(fd, fatal)
    finally:
        os.close(fd)
    while time.perf_counter() - started < 5.0:
        if poller.status("/livez") == 503:
            return time.perf_counter() - started
        time.sleep(0.001)
    return None


def rearm(poller: Poller, path: Path, gen: genlog.LogGenerator) -> bool:
    append(path, gen.records(genlog.boot_start_records(gen.rng, gen.cluster)))
    return wait_status(poller, "/livez", 200, 3.0) is not None


def latency_rows(label: str, trials: Trials, goal: str, command: str) -> list[Row]:
    if not trials.seconds:
        return [
            not_available(
                "Detection latency", label, f"no trial succeeded ({trials.timeouts} timeouts)", goal
            )
        ]
    ms = sorted(s * 1000 for s in trials.seconds)
    p50 = ms[len(ms) // 2]
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    figure = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)}"
    figure += f", {trials.timeouts} timeouts > 5 s)" if trials.timeouts else ")"
    return [Row("Detection latency", label, figure, goal, f"{command}; {trials.mode}")]


def run_trials(cfg: Config, procs: Processes, under_load: bool, kube: bool = False) -> Trials:
    """``kube``: the Kubernetes side on, against the API double; /livez fails only once the
    sidecar holds a kill-budget slot (a Lease taken through the API)."""
    tag = ("load" if under_load else "idle") + ("-kube" if kube else "")
    trials = Trials()
    path = work_file(cfg, f"latency-{tag}.log")
    gen = healthy_log(path)
    kube_env = start_kube_double(cfg, procs) if kube else None
    daemon = start_daemon(cfg, procs, path, f"latency-{tag}", kube_env)
    poller = Poller(daemon.port)
    try:
        if wait_status(poller, "/livez", 200, 10.0) is None:
            raise RuntimeError("/livez not 200 on a healthy log")
        if under_load:
            start_writer(cfg, procs, path)
        for i in range(cfg.latency_trials):
            if i and not rearm(poller, path, gen):
                raise RuntimeError("a new boot did not turn /livez back to 200")
            trials.add(fatal_trial(poller, path, gen))
    finally:
        poller.close()
        procs.close()
    return trials


def run_fresh_trials(cfg: Config, procs: Processes, under_load: bool) -> Trials:
    """Fallback: a fresh file and daemon per trial; measures append -> 503 only."""
    trials = Trials(mode="fresh daemon per trial (re-arming by a new boot did not work)")
    for i in range(cfg.latency_trials):
        path = work_file(cfg, "latency-fresh.log")
        gen = healthy_log(path)
        daemon = start_daemon(cfg, procs, path, "latency-fresh")
        poller = Poller(daemon.port)
        try:
            wait_status(poller, "/livez", 200, 10.0)
            if under_load:
                start_writer(cfg, procs, path)
            elif i == 0:
                time.sleep(0.2)
            trials.add(fatal_trial(poller, path, gen))
        finally:
            poller.close()
            procs.close()
    return trials


def measure_latency(cfg: Config, procs: Processes) -> list[Row]:
    rows: list[Row] = []
    trial = (
        "append a Quarkus 'Failed to start server' block, "
        "poll /livez every 1 ms (keep-alive) until 503"
    )
    command = f"{daemon_shown(cfg)}; {trial}"
    for under_load, goal in ((False, "p99 < 50 ms"), (True, "p99 < 200 ms")):
        label = (
            f"fatal line -> /livez 503, while ingesting {LOAD_LINES_PER_SECOND:,} lines/s"
            if under_load
            else "fatal line -> /livez 503, idle"
        )
        try:
            trials = run_trials(cfg, procs, under_load)
        except RuntimeError as exc:
            cfg.notes.append(
                f"latency ({'load' if under_load else 'idle'}): {exc}; using fresh daemons"
            )
            trials = run_fresh_trials(cfg, procs, under_load)
        rows.extend(latency_rows(label, trials, goal, command))
    label = "fatal line -> /livez 503, idle, Kubernetes side on (kill-budget Lease taken first)"
    kube_command = f"{daemon_shown(cfg, kube=True)}; {trial}"
    try:
        rows.extend(latency_rows(label, run_trials(cfg, procs, False, kube=True), "", kube_command))
    except RuntimeError as exc:
        rows.append(not_available("Detection latency", label, str(exc)[:120]))
    return rows
