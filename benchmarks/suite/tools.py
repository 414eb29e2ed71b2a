"""The tools compared with (mtail, wrk, hyperfine, grep, time): versions, install."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import genlog

from suite.config import HERE, REPO, Config
from suite.daemon import data_file

MTAIL_PROGRAM = HERE / "keycloak.mtail"
#: mtail serves HTTP even in --one_shot and --compile_only runs, on 3903 unless told: a free
#: loopback port instead, so that two runs (a benchmark, a test, another checkout) never collide
MTAIL_FREE_PORT = ("--address", "127.0.0.1", "--port", "0")
#: command (or path) -> the Debian package that provides it
TOOL_PACKAGES = {
    "mtail": "mtail",
    "wrk": "wrk",
    "hyperfine": "hyperfine",
    "grep": "grep",
    "/usr/bin/time": "time",
}
INSTALL_HINT = "apt-get install -y mtail wrk hyperfine time"


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
