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

This file is the entry: the options, the order of the sections and the report.  Each section
is a module of ``benchmarks/suite/`` (``throughput``, ``latency``, ``endpoints``, ``memory``,
``idle``, ``startup``), on top of ``config`` (rows, modes, sizes), ``procs`` (process groups,
loopback HTTP, ``/proc``), ``daemon`` (the sidecar under test and what runs around it),
``tools`` (the compared tools, installed when missing) and ``report``.  They are imported as
``suite.*``: Python puts this file's folder first on the import path.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Callable

from suite.config import HERE, Config, Row, make_config, not_available
from suite.endpoints import measure_endpoint
from suite.idle import measure_idle_cpu
from suite.latency import measure_latency
from suite.memory import measure_memory
from suite.procs import Processes
from suite.report import machine_facts, render
from suite.startup import measure_cold_start, measure_replay
from suite.throughput import measure_throughput
from suite.tools import check_tools, sidecar_available

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
