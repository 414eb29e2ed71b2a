"""What a run is: its rows, its mode and sizes, where its files go."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent
LOAD_LINES_PER_SECOND = 100_000


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
