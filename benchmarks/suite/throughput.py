"""Log throughput: the sidecar's analyze, mtail and grep over the same file."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import genlog

from suite.config import REPO, Config, Row, not_available
from suite.daemon import data_file, human_lines, rate
from suite.tools import INSTALL_HINT, MTAIL_FREE_PORT, MTAIL_PROGRAM, mtail_patterns


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
            f"mtail --one_shot --logtostderr {' '.join(MTAIL_FREE_PORT)} "
            f"--progs {MTAIL_PROGRAM.relative_to(REPO)} --logs {path}"
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
