"""The markdown report."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from pathlib import Path

from suite.config import Config, Row
from suite.tools import tool_version


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
