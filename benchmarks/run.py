"""Benchmark suite: the sidecar side by side with mtail, grep and a bare aiohttp handler.

One command runs every measurement of issue 6 in one go and prints a markdown table in
which every figure carries the command that produced it; the table is also written to
``benchmarks/out/results.md``::

    .venv/bin/python benchmarks/run.py            # full: 1M and 10M lines, 100 trials
    .venv/bin/python benchmarks/run.py --quick    # CI: 200k lines, 20 trials, < 3 min

It installs the tools it compares with (Debian's ``mtail``, ``wrk``, ``hyperfine`` and
``time``) with apt-get when they are missing, as root or through ``sudo -n``
(``--no-install`` only reports them); a measurement that still cannot run says
``n/a (reason)`` while the others go on.  Every process it starts runs in its own
process group and is killed on the way out.  Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import genlog  # noqa: E402

MTAIL_PROGRAM = HERE / "keycloak.mtail"
#: command (or path) -> the Debian package that provides it
TOOL_PACKAGES = {
    "mtail": "mtail",
    "wrk": "wrk",
    "hyperfine": "hyperfine",
    "grep": "grep",
    "/usr/bin/time": "time",
}
INSTALL_HINT = "apt-get install -y mtail wrk hyperfine time"
LOAD_LINES_PER_SECOND = 100_000


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    section: str
    metric: str
    figure: str
    goal: str = ""
    command: str = ""


def not_available(section: str, metric: str, reason: str, goal: str = "") -> Row:
    return Row(section, metric, f"n/a ({reason})", goal)


@dataclass(slots=True)
class Config:
    """What one run measures and where it keeps its data."""

    mode: str
    python: str
    data_dir: Path
    out_dir: Path
    sidecar: list[str]
    sidecar_shown: str
    throughput_sizes: tuple[int, ...]
    latency_trials: int
    wrk_seconds: int
    memory_lines: int
    hour_records: int
    idle_seconds: int
    cold_starts: int
    replay_bytes: int
    settle_seconds: float
    notes: list[str] = field(default_factory=list)


class ModeSizes(TypedDict):
    latency_trials: int
    wrk_seconds: int
    memory_lines: int
    hour_records: int
    idle_seconds: int
    cold_starts: int
    replay_bytes: int
    settle_seconds: float


#: RSS is read this long after the last line was read: the sidecar gives memory back once a
#: burst is over (sidecar/housekeeping.py: seen on its next verdict round, at most 1 s apart,
#: that finds no new bytes); the peak (VmHWM) covers the burst itself
SETTLE_SECONDS = 2.5


#: sizes per mode; "smoke" only proves the harness works (tests), its figures mean nothing
MODES: dict[str, ModeSizes] = {
    "full": {
        "latency_trials": 100,
        "wrk_seconds": 10,
        "memory_lines": 10_000_000,
        "hour_records": 3_600_000,
        "idle_seconds": 60,
        "cold_starts": 20,
        "replay_bytes": 100_000_000,
        "settle_seconds": SETTLE_SECONDS,
    },
    "quick": {
        "latency_trials": 20,
        "wrk_seconds": 3,
        "memory_lines": 1_000_000,
        "hour_records": 360_000,
        "idle_seconds": 10,
        "cold_starts": 5,
        "replay_bytes": 10_000_000,
        "settle_seconds": SETTLE_SECONDS,
    },
    "smoke": {
        "latency_trials": 3,
        "wrk_seconds": 1,
        "memory_lines": 20_000,
        "hour_records": 4 * 8192,
        "idle_seconds": 2,
        "cold_starts": 2,
        "replay_bytes": 1_000_000,
        "settle_seconds": 0.0,
    },
}
THROUGHPUT_SIZES = {"full": (1_000_000, 10_000_000), "quick": (200_000,), "smoke": (5_000,)}


def make_config(args: argparse.Namespace) -> Config:
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    venv_python = REPO / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    sidecar = shlex.split(args.sidecar) if args.sidecar else [python, "-m", "sidecar"]
    shown = args.sidecar or ".venv/bin/python -m sidecar"
    data_dir = Path(args.data_dir or Path(tempfile.gettempdir()) / "keycloak-sidecar-bench")
    sizes = tuple(args.lines) if args.lines else THROUGHPUT_SIZES[mode]
    return Config(
        mode=mode,
        python=python,
        data_dir=data_dir,
        out_dir=Path(args.out_dir),
        sidecar=sidecar,
        sidecar_shown=shown,
        throughput_sizes=sizes,
        **MODES[mode],
    )


# --- processes ------------------------------------------------------------------------------


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


# --- the daemon -----------------------------------------------------------------------------


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


# --- data -----------------------------------------------------------------------------------


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


# --- tools ----------------------------------------------------------------------------------


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    found = re.search(r"\d+\.\d+[\w.~+-]*", done.stdout or done.stderr)
    return found.group(0) if found else "?"


def tool_present(tool: str) -> bool:
    return Path(tool).exists() if tool.startswith("/") else shutil.which(tool) is not None


def install_packages(packages: list[str]) -> str:
    """apt-get install, as root or through passwordless sudo; empty, or why it failed."""
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return "not root and no sudo"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    )
    for step in steps:
        print(f"installing: {' '.join(prefix + step)}", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(
                prefix + step, env=env, capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:120]
    return ""


def check_tools(install: bool) -> dict[str, bool]:
    """Which peer tools are present (keyed by package), installing the missing ones."""
    missing = [package for tool, package in TOOL_PACKAGES.items() if not tool_present(tool)]
    if missing and install and shutil.which("apt-get"):
        problem = install_packages(missing)
        if problem:
            print(f"could not install {', '.join(missing)}: {problem}", file=sys.stderr)
    found = {package: tool_present(tool) for tool, package in TOOL_PACKAGES.items()}
    still = [package for package, ok in found.items() if not ok]
    if still:
        print(f"missing tools: {', '.join(still)}; install with: {INSTALL_HINT}", file=sys.stderr)
    return found


def sidecar_available(cfg: Config) -> str:
    """Empty when ``analyze`` works, else the reason it does not."""
    probe = data_file(cfg, genlog.PLAIN, 1000)
    argv = [*cfg.sidecar, "analyze", str(probe), "--quiet"]
    try:
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sidecar not available: {exc}"
    last = (done.stdout.strip().splitlines() or [""])[-1]
    try:
        parsed = json.loads(last)
    except ValueError:
        err = (done.stderr.strip().splitlines() or ["no output"])[-1][:80]
        return f"sidecar analyze not available yet: {err}"
    if done.returncode != 0 or not isinstance(parsed, dict) or "lines" not in parsed:
        return f"sidecar analyze gave rc {done.returncode} / unexpected output"
    return ""


def mtail_patterns() -> list[str]:
    """The regexes of keycloak.mtail (one per rule), for the grep reference."""
    text = MTAIL_PROGRAM.read_text()
    return re.findall(r"^/(.+)/ \{$", text, flags=re.MULTILINE)


# --- log throughput ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timed:
    mean_seconds: float
    runs: int
    command: str


def time_command(
    shell_command: str, runs: int, warmup: int, tools: dict[str, bool], out_dir: Path
) -> Timed:
    """Mean wall time of a shell command: hyperfine if installed, else a plain loop."""
    if tools["hyperfine"]:
        export = out_dir / "hyperfine.json"
        argv = [
            "hyperfine",
            "--warmup",
            str(warmup),
            "--runs",
            str(runs),
            "--output=pipe",
            "--export-json",
            str(export),
            shell_command,
        ]
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
        )
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or ["hyperfine failed"])[-1][:100])
        mean = float(json.loads(export.read_text())["results"][0]["mean"])
        how = f"hyperfine --warmup {warmup} --runs {runs} --output=pipe"
        return Timed(mean, runs, f"{shell_command}  (timed by {how})")
    samples = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        subprocess.run(
            shell_command,
            shell=True,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=1800,
            check=True,
        )
        if i >= warmup:
            samples.append(time.perf_counter() - started)
    return Timed(statistics.mean(samples), runs, f"{shell_command}  (mean of {runs} runs)")


def throughput_commands(
    cfg: Config, path: Path, sidecar_reason: str, tools: dict[str, bool]
) -> dict[str, str | None]:
    grep_re = "|".join(mtail_patterns())
    sidecar = " ".join(shlex.quote(a) for a in cfg.sidecar)
    return {
        "sidecar": None if sidecar_reason else f"{sidecar} analyze {path} --quiet",
        "mtail": (
            f"mtail --one_shot --logtostderr --progs {MTAIL_PROGRAM.relative_to(REPO)} "
            f"--logs {path}"
        )
        if tools["mtail"]
        else None,
        "grep": f"LC_ALL=C grep -c -E {shlex.quote(grep_re)} {path}",
    }


def shown_command(cfg: Config, command: str, path: Path) -> str:
    shown = command.replace(str(path), f"DATA/{path.name}")
    shown = shown.replace(shlex.quote("|".join(mtail_patterns())), '"$PATTERN"')
    return shown.replace(" ".join(shlex.quote(a) for a in cfg.sidecar), cfg.sidecar_shown)


def warm_page_cache(path: Path) -> None:
    """Read the file once, as ``cat FILE > /dev/null`` would: no tool pays for the disk."""
    with path.open("rb", buffering=0) as handle:
        while handle.read(8 << 20):
            pass


def measure_throughput_file(
    cfg: Config, tools: dict[str, bool], sidecar_reason: str, log_format: str, lines: int
) -> list[Row]:
    path = data_file(cfg, log_format, lines)
    label = f"{log_format} {human_lines(lines)}"
    runs, warmup = (1, 0) if lines >= 5_000_000 else (3, 1)
    commands = throughput_commands(cfg, path, sidecar_reason, tools)
    speeds: dict[str, float] = {}
    rows: list[Row] = []
    sidecar_goal = ">= 1 M lines/s"
    if lines < 1_000_000:  # quick mode: ~70 ms of process start weigh on a small file
        sidecar_goal += " (at 1M+ lines, full mode)"
    goals = {"sidecar": sidecar_goal, "mtail": "", "grep": "(hardware reference)"}
    for tool, command in commands.items():
        section = "Log throughput"
        if command is None:
            reason = sidecar_reason if tool == "sidecar" else f"{tool} missing: {INSTALL_HINT}"
            rows.append(not_available(section, f"{label}: {tool}", reason, goals[tool]))
            continue
        try:
            warm_page_cache(path)  # every tool starts from the same, cached, file
            timed = time_command(command, runs, warmup, tools, cfg.out_dir)
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            rows.append(not_available(section, f"{label}: {tool}", str(exc)[:100], goals[tool]))
            continue
        speeds[tool] = lines / timed.mean_seconds
        figure = f"{rate(speeds[tool])} ({timed.mean_seconds:.2f} s)"
        rows.append(
            Row(
                section,
                f"{label}: {tool}",
                figure,
                goals[tool],
                shown_command(cfg, timed.command, path),
            )
        )
    if lines < 5_000_000 and tools["time"]:
        rows.append(peak_rss_row(cfg, commands, path, label))
    for peer, goal in (("mtail", ">= 3x"), ("grep", "")):
        metric = f"{label}: sidecar / {peer}"
        if "sidecar" in speeds and peer in speeds:
            ratio = speeds["sidecar"] / speeds[peer]
            rows.append(
                Row("Log throughput", metric, f"{ratio:.2f}x", goal, "ratio of the rows above")
            )
        else:
            rows.append(not_available("Log throughput", metric, "a row above is n/a", goal))
    return rows


def peak_rss_row(cfg: Config, commands: dict[str, str | None], path: Path, label: str) -> Row:
    """One more run of each tool under GNU time: its maximum resident set size."""
    figures = []
    for tool, command in commands.items():
        if command is None:
            continue
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "sh", "-c", f"{command} > /dev/null 2>&1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        figures.append(f"{tool} {int(last) / 1024:.0f} MiB" if last.isdigit() else f"{tool} ?")
    shown = shown_command(cfg, "/usr/bin/time -f %M sh -c 'COMMAND'", path)
    return Row(
        "Log throughput",
        f"{label}: peak RSS while reading",
        ", ".join(figures),
        "",
        f"{shown} for each command above",
    )


def measure_throughput(cfg: Config, tools: dict[str, bool], sidecar_reason: str) -> list[Row]:
    rows: list[Row] = []
    for lines in cfg.throughput_sizes:
        for log_format in genlog.FORMATS:
            rows.extend(measure_throughput_file(cfg, tools, sidecar_reason, log_format, lines))
    rows.extend(event_counts(cfg, tools, sidecar_reason))
    return rows


def event_counts(cfg: Config, tools: dict[str, bool], sidecar_reason: str) -> list[Row]:
    """Same events counted by all three tools on the smallest file (a fairness check)."""
    path = data_file(cfg, genlog.PLAIN, min(cfg.throughput_sizes))
    commands = throughput_commands(cfg, path, sidecar_reason, tools)
    found: list[str] = []
    for tool, command in commands.items():
        if command is None:
            continue
        full = command + " --one_shot_format prometheus" if tool == "mtail" else command
        done = subprocess.run(
            full, shell=True, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
        )
        found.append(f"{tool}: {summarize_counts(tool, done.stdout)}")
    label = f"events found in plain {human_lines(min(cfg.throughput_sizes))}"
    return [Row("Log throughput", label, "; ".join(found), "same events", "the commands above")]


def summarize_counts(tool: str, output: str) -> str:
    if tool == "grep":
        return f"{output.strip()} matching lines"
    if tool == "mtail":
        pairs = re.findall(r"^keycloak_(\w+)_total\{[^}]*\} (\d+)", output, flags=re.MULTILINE)
        return ", ".join(f"{k}={v}" for k, v in pairs)
    with contextlib.suppress(ValueError, IndexError):
        events = json.loads(output.strip().splitlines()[-1]).get("events", {})
        return ", ".join(f"{k}={v}" for k, v in sorted(events.items()))
    return "unreadable output"


# --- detection latency ----------------------------------------------------------------------


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


@dataclass(slots=True)
class Trials:
    seconds: list[float] = field(default_factory=list)
    timeouts: int = 0
    mode: str = "re-armed by appending a new boot"


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
            took = fatal_trial(poller, path, gen)
            if took is None:
                trials.timeouts += 1
            else:
                trials.seconds.append(took)
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
            took = fatal_trial(poller, path, gen)
            if took is None:
                trials.timeouts += 1
            else:
                trials.seconds.append(took)
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


# --- endpoint cost --------------------------------------------------------------------------


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


# --- memory ---------------------------------------------------------------------------------


def append_file(src: Path, dst: Path) -> None:
    with src.open("rb") as source, dst.open("ab") as target:
        shutil.copyfileobj(source, target, 8 << 20)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    return proc_status_kib(pid, "VmRSS") / 1024, proc_status_kib(pid, "VmHWM") / 1024


def settled_rss_mib(cfg: Config, pid: int) -> tuple[float, float]:
    time.sleep(cfg.settle_seconds)
    return rss_mib(pid)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(8 << 20), b""))


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


def start_kube_double(cfg: Config, procs: Processes) -> dict[str, str]:
    """The tests' API-server double on loopback; the environment that points a sidecar at it."""
    directory = cfg.data_dir / "work" / "kube"
    directory.mkdir(parents=True, exist_ok=True)
    child = procs.start(
        [cfg.python, str(HERE / "kube_double.py"), str(directory)],
        cfg.out_dir / "kube-double.stderr",
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    kubeconfig = child.stdout.readline().decode().strip()
    if not kubeconfig:
        raise RuntimeError(
            f"API double did not start: {stderr_tail(cfg.out_dir / 'kube-double.stderr')}"
        )
    return {"KUBECONFIG": kubeconfig, "POD_NAME": "keycloak-0", "POD_NAMESPACE": "ns"}


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


# --- idle CPU, cold start, recovery replay ------------------------------------------------------


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


# --- report ---------------------------------------------------------------------------------


def machine_facts() -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"python: {platform.python_version()}",
        "tools: "
        + "; ".join(
            f"{name} {tool_version(argv)}"
            for name, argv in (
                ("mtail", ["mtail", "--version"]),
                ("wrk", ["wrk", "-v"]),
                ("hyperfine", ["hyperfine", "--version"]),
                ("grep", ["grep", "--version"]),
            )
        ),
    ]


def escape_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(cfg: Config, rows: list[Row], facts: list[str], elapsed_seconds: float) -> str:
    mode = cfg.mode
    out = [f"# keycloak-sidecar benchmarks ({mode} mode)", ""]
    out += [f"- {fact}" for fact in facts]
    out += [
        f"- DATA = {cfg.data_dir}; F = the daemon's log file; P = a free loopback port",
        f"- total run time: {elapsed_seconds:.0f} s",
        "",
        "| section | measurement | figure | goal | command |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.section, r.metric, r.figure, r.goal, f"`{r.command}`" if r.command else "")
        out.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    if cfg.notes:
        out += ["", "Notes:", *[f"- {note}" for note in cfg.notes]]
    return "\n".join(out) + "\n"


# --- main -----------------------------------------------------------------------------------

SECTIONS = ("throughput", "latency", "endpoint", "memory", "idle", "cold", "replay")
SECTION_TITLES = {
    "throughput": "Log throughput",
    "latency": "Detection latency",
    "endpoint": "Endpoint cost",
    "memory": "Memory",
    "idle": "Idle CPU",
    "cold": "Cold start",
    "replay": "Recovery replay",
}


def run_section(
    name: str, cfg: Config, procs: Processes, tools: dict[str, bool], sidecar_reason: str
) -> list[Row]:
    if name == "throughput":
        return measure_throughput(cfg, tools, sidecar_reason)
    if name == "endpoint":
        return measure_endpoint(cfg, procs, tools, sidecar_reason)
    if sidecar_reason:
        return [not_available(SECTION_TITLES[name], "all", sidecar_reason)]
    measures: dict[str, Callable[[], list[Row]]] = {
        "latency": lambda: measure_latency(cfg, procs),
        "memory": lambda: measure_memory(cfg, procs),
        "idle": lambda: measure_idle_cpu(cfg, procs),
        "cold": lambda: measure_cold_start(cfg, procs),
        "replay": lambda: measure_replay(cfg, procs),
    }
    return measures[name]()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI mode: small inputs, < 3 minutes")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny inputs for the test suite only "
        "(proves the harness runs; the figures mean nothing)",
    )
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get install missing tools (mtail, wrk, hyperfine, time); report them",
    )
    p.add_argument("--lines", type=int, action="append", help="throughput sizes (repeatable)")
    p.add_argument(
        "--sidecar",
        default="",
        help="command that runs the sidecar (default: .venv/bin/python -m sidecar)",
    )
    p.add_argument(
        "--data-dir",
        default="",
        help="where generated logs are cached (default: $TMPDIR/keycloak-sidecar-bench)",
    )
    p.add_argument("--out-dir", default=str(HERE / "out"), help="results.md and daemon stderr")
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=0.0,
        help="skip the remaining sections past this (default: 170 quick, 1500 full)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    budget = args.budget_seconds or (1500.0 if cfg.mode == "full" else 170.0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tools = check_tools(install=not args.no_install and cfg.mode != "smoke")
    started = time.monotonic()
    procs = Processes()
    rows: list[Row] = []
    try:
        sidecar_reason = sidecar_available(cfg)
        for name in [s.strip() for s in args.only.split(",") if s.strip()]:
            title = SECTION_TITLES.get(name, name)
            if time.monotonic() - started > budget:
                rows.append(not_available(title, "all", f"time budget of {budget:.0f} s used up"))
                continue
            print(f"[{time.monotonic() - started:6.1f} s] {title} ...", file=sys.stderr, flush=True)
            try:
                rows.extend(run_section(name, cfg, procs, tools, sidecar_reason))
            except Exception as exc:  # one failing measurement must not stop the others
                rows.append(not_available(title, "all", f"{type(exc).__name__}: {str(exc)[:120]}"))
            finally:
                procs.close()
    finally:
        procs.close()
        shutil.rmtree(cfg.data_dir / "work", ignore_errors=True)
    report = render(cfg, rows, machine_facts(), time.monotonic() - started)
    (cfg.out_dir / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
