"""Endpoint cost: /livez under wrk, against a bare aiohttp handler."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from suite.config import HERE, LOAD_LINES_PER_SECOND, Config, Row, not_available
from suite.daemon import daemon_shown, healthy_log, start_daemon, start_writer, work_file
from suite.procs import Processes, free_port, minor_faults, wait_http
from suite.tools import INSTALL_HINT


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_second: float
    p99_ms: float
    non_2xx: int


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, flags=re.MULTILINE)
    if not rps or not p99:
        raise RuntimeError("unreadable wrk output")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkResult(
        float(rps.group(1)), float(p99.group(1)) * scale, int(non_2xx.group(1)) if non_2xx else 0
    )


def run_wrk(port: int, seconds: int) -> tuple[WrkResult, str]:
    argv = ["wrk", "-t1", "-c10", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/livez"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    shown = " ".join(argv).replace(f":{port}/", ":P/")
    return parse_wrk(done.stdout), shown


def wrk_row(metric: str, server: Server, goal: str, command: str) -> Row:
    result = server.best()
    faults = min(server.faults_per_request)
    figure = f"{result.requests_per_second:,.0f} req/s, p99 {result.p99_ms:.2f} ms"
    figure += f", {faults:.2f} page faults/request"
    if result.non_2xx:
        figure += f" ({result.non_2xx} non-2xx)"
    return Row("Endpoint cost", metric, figure, goal, command)


@dataclass(slots=True)
class Server:
    """A process answering /livez, with what wrk measured against it."""

    name: str
    pid: int
    port: int
    shown: str
    results: list[WrkResult] = field(default_factory=list)
    faults_per_request: list[float] = field(default_factory=list)

    def measure(self, seconds: int) -> str:
        faults = minor_faults(self.pid)
        result, shown = run_wrk(self.port, seconds)
        requests = max(1.0, result.requests_per_second * seconds)
        self.faults_per_request.append((minor_faults(self.pid) - faults) / requests)
        self.results.append(result)
        return f"{self.shown}; {shown}"

    def best(self) -> WrkResult:
        """The run with the most requests/s (noise only ever slows a run down)."""
        return max(self.results, key=lambda r: r.requests_per_second)


def endpoint_rounds(cfg: Config) -> int:
    return 1 if cfg.mode == "smoke" else 3


def measure_endpoint(
    cfg: Config, procs: Processes, tools: dict[str, bool], sidecar_reason: str
) -> list[Row]:
    if not tools["wrk"]:
        return [not_available("Endpoint cost", "/livez with wrk", f"wrk missing: {INSTALL_HINT}")]
    if sidecar_reason:
        return [not_available("Endpoint cost", "sidecar /livez", sidecar_reason)]
    path = work_file(cfg, "endpoint.log")
    healthy_log(path)
    bare_port = free_port()
    bare_child = procs.start(
        [cfg.python, str(HERE / "bare_aiohttp.py"), "--listen", f"127.0.0.1:{bare_port}"]
    )
    wait_http(bare_port, "/livez", 20.0)
    bare = Server("bare", bare_child.pid, bare_port, "python benchmarks/bare_aiohttp.py")
    try:
        daemon = start_daemon(cfg, procs, path, "endpoint")
    except RuntimeError as exc:
        return [not_available("Endpoint cost", "sidecar /livez", str(exc))]
    sidecar = Server("sidecar", daemon.child.pid, daemon.port, daemon_shown(cfg))
    try:
        return endpoint_rows(cfg, procs, bare, sidecar, path)
    finally:
        procs.close()


def endpoint_rows(
    cfg: Config, procs: Processes, bare: Server, sidecar: Server, path: Path
) -> list[Row]:
    """Alone: bare and sidecar alternate for a few rounds (the best of each is kept, so a
    neighbour's burst on this shared machine cannot decide the ratio); then under load."""
    rounds = endpoint_rounds(cfg)
    commands = {}
    for _ in range(rounds):
        for server in (bare, sidecar):
            commands[server.name] = server.measure(cfg.wrk_seconds)
    how = f" (best of {rounds} alternating runs)" if rounds > 1 else ""
    rows = [
        wrk_row("bare aiohttp /livez, alone", bare, "(ceiling)", commands["bare"] + how),
        wrk_row("sidecar /livez, alone", sidecar, "", commands["sidecar"] + how),
    ]
    share = sidecar.best().requests_per_second / bare.best().requests_per_second
    runs = ", ".join(
        f"{s.requests_per_second / b.requests_per_second:.0%}"
        for b, s in zip(bare.results, sidecar.results, strict=True)
    )
    rows.append(
        Row(
            "Endpoint cost",
            "sidecar / bare throughput, alone",
            f"{share:.0%} (round by round: {runs})",
            ">= 70%",
            "ratio of the rows above",
        )
    )
    start_writer(cfg, procs, path)
    for server in (sidecar, bare):
        server.results.clear()
        server.faults_per_request.clear()
        commands[server.name] = server.measure(cfg.wrk_seconds)
    load = f"genlog.py append --rate {LOAD_LINES_PER_SECOND}; "
    rows.append(
        wrk_row(
            f"sidecar /livez, ingesting {LOAD_LINES_PER_SECOND:,} lines/s",
            sidecar,
            "p99 < 5 ms",
            commands["sidecar"].replace("; wrk", f"; {load}wrk"),
        )
    )
    rows.append(
        wrk_row("bare aiohttp /livez, same writer running", bare, "(reference)", commands["bare"])
    )
    return rows
