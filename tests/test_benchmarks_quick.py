"""Smoke tests of the benchmark suite: realistic generated logs, and the harness runs.

No timing is asserted here: the figures come from ``benchmarks/run.py`` itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from suite import endpoints, procs, tools

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
#: the port mtail binds unless told another
MTAIL_DEFAULT_PORT = 3903

PLAIN_HEADER = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} (INFO |WARN |ERROR) \[[\w.$]+\] \([^)]*\) \S"
)
CONTINUATION = re.compile(
    r"^(\tat \S+\(\S+\)|Caused by: \S+.*|\t\.\.\. \d+ more|[\w.]+(Exception|Error)\b.*)$"
)
JSON_KEYS = {
    "timestamp",
    "sequence",
    "loggerClassName",
    "loggerName",
    "level",
    "message",
    "threadName",
    "threadId",
    "mdc",
    "ndc",
    "hostName",
    "processName",
    "processId",
}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def genlog() -> ModuleType:
    return load("genlog")


def write(genlog: ModuleType, path: Path, lines: int, **kw: object) -> str:
    genlog.write_log(path, lines, genlog.LogGenerator(**kw))
    return path.read_text()


def test_same_seed_gives_same_bytes_and_another_seed_does_not(
    genlog: ModuleType, tmp_path: Path
) -> None:
    first = write(genlog, tmp_path / "a.log", 20_000, seed=3)
    again = write(genlog, tmp_path / "b.log", 20_000, seed=3)
    other = write(genlog, tmp_path / "c.log", 20_000, seed=4)
    assert first == again
    assert first != other


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_exact_line_count(genlog: ModuleType, tmp_path: Path, log_format: str) -> None:
    text = write(genlog, tmp_path / "x.log", 12_345, log_format=log_format)
    assert text.count("\n") == 12_345
    assert text.endswith("\n")


def test_plain_lines_are_headers_or_stack_trace_continuations(
    genlog: ModuleType, tmp_path: Path
) -> None:
    text = write(genlog, tmp_path / "p.log", 60_000)
    stamps = []
    for line in text.splitlines():
        header = PLAIN_HEADER.match(line)
        if header:
            stamps.append(header.group(1))
        else:
            assert CONTINUATION.match(line), line
    assert stamps == sorted(stamps)
    assert len(stamps) > 40_000


def test_json_lines_have_quarkus_fields_and_increasing_sequence(
    genlog: ModuleType, tmp_path: Path
) -> None:
    text = write(genlog, tmp_path / "j.log", 30_000, log_format="json")
    sequences = []
    for line in text.splitlines():
        record = json.loads(line)
        assert record.keys() >= JSON_KEYS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
        sequences.append(record["sequence"])
    assert sequences == list(range(1, len(sequences) + 1))
    with_trace = [json.loads(x) for x in text.splitlines() if '"exception":' in x]
    assert with_trace and all(r["exception"]["frames"] for r in with_trace)


def test_mix_is_info_heavy_with_traces_views_and_harmless_errors(
    genlog: ModuleType, tmp_path: Path
) -> None:
    text = write(genlog, tmp_path / "m.log", 200_000)
    lines = text.splitlines()
    levels = [x[24:29] for x in lines if PLAIN_HEADER.match(x)]
    info, warn, error = (levels.count(level) for level in ("INFO ", "WARN ", "ERROR"))
    assert info > 0.4 * len(lines)
    assert info > warn > error > 0
    frames = sum(x.startswith("\tat ") for x in lines)
    assert 0.05 * len(lines) < frames < 0.35 * len(lines)
    for needle in (
        "started in",
        "ISPN000094",
        "ISPN100000",
        "ISPN100001",
        "Caused by:",
        'type="LOGIN_ERROR"',
        'type="REFRESH_TOKEN_ERROR"',
        "KC-SERVICES0010",
        "ISPN100002",
        "io.agroal.pool",
        "org.hibernate",
    ):
        assert needle in text, needle
    for fatal in ("Failed to start server", "OutOfMemoryError", "ISPN000314"):
        assert fatal not in text, fatal


def test_boots_repeat_with_a_shutdown_between_them(genlog: ModuleType, tmp_path: Path) -> None:
    text = write(genlog, tmp_path / "b.log", 50_000, boot_every_records=8192)
    assert text.count(") started in ") >= 4
    assert text.count("Keycloak stopped in") == text.count(") started in ") - 1


def test_every_mtail_rule_matches_its_event_and_nothing_in_healthy_traffic(
    genlog: ModuleType, tmp_path: Path
) -> None:
    patterns = [re.compile(p) for p in tools.mtail_patterns()]
    assert len(patterns) >= 10
    gen = genlog.LogGenerator(seed=5)
    fatal = gen.records(genlog.fatal_records())
    assert any(p.search(fatal) for p in patterns)
    healthy = write(genlog, tmp_path / "h.log", 20_000, view_change_every_records=0)
    matching = [x for x in healthy.splitlines() if any(p.search(x) for p in patterns)]
    assert len(matching) == 2  # the boot's first view and its "started in" line
    assert "ISPN000094" in matching[0]
    assert "started in" in matching[1]


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("mtail") is None, reason="mtail not installed")
def test_mtail_program_compiles() -> None:
    """mtail binds its HTTP port even with --compile_only: with its default (3903) the test
    failed whenever another mtail ran (the benchmark's, another checkout's test).  It gets a
    free loopback port; 3903 is held here to prove it."""
    with contextlib.ExitStack() as stack:
        try:
            holder = stack.enter_context(socket.socket())
            holder.bind(("127.0.0.1", MTAIL_DEFAULT_PORT))
            holder.listen()
        except OSError:
            pass  # busy already: the very case
        done = subprocess.run(
            ["mtail", "--compile_only", "--logtostderr", *tools.MTAIL_FREE_PORT,
             "--progs", str(BENCH / "keycloak.mtail")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr


def test_append_mode_writes_whole_lines_of_a_running_server(tmp_path: Path) -> None:
    target = tmp_path / "live.log"
    target.write_text("")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "genlog.py"),
            "append",
            str(target),
            "--rate",
            "5000",
            "--seconds",
            "0.3",
            "--no-boot",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    assert text.endswith("\n") and text.count("\n") > 10
    assert "started in" not in text
    assert all(PLAIN_HEADER.match(x) or CONTINUATION.match(x) for x in text.splitlines())


def test_wrk_output_is_parsed() -> None:
    sample = """Running 1s test @ http://127.0.0.1:9/livez
  1 threads and 10 connections
  Latency Distribution
     50%  336.00us
     75%  400.00us
     90%  700.00us
     99%    1.66ms
  28263 requests in 1.00s, 4.10MB read
  Non-2xx or 3xx responses: 7
Requests/sec:  28255.72
Transfer/sec:      4.10MB
"""
    result = endpoints.parse_wrk(sample)
    assert result.requests_per_second == pytest.approx(28255.72)
    assert result.p99_ms == pytest.approx(1.66)
    assert result.non_2xx == 7


def test_processes_are_ended_with_their_whole_group() -> None:
    children = procs.Processes()
    child = children.start(["sh", "-c", "sleep 60 & sleep 60"])
    time.sleep(0.05)
    children.close()
    assert child.poll() is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the orphaned sleep is reaped asynchronously
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    pytest.fail("a process of the group survived")


def leaked(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline)
    return found


@pytest.mark.slow
def test_suite_runs_end_to_end_and_reports_every_section(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--smoke",
            "--out-dir",
            str(out_dir),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = (out_dir / "results.md").read_text()
    assert report in done.stdout
    rows = [x for x in report.splitlines() if x.startswith("| ") and not x.startswith("| section")]
    sections = {x.split(" | ")[0].removeprefix("| ") for x in rows}
    assert {
        "Log throughput",
        "Detection latency",
        "Endpoint cost",
        "Memory",
        "Idle CPU",
        "Cold start",
        "Recovery replay",
    } <= sections
    for row in rows:
        figure = row.split(" | ")[2]
        assert figure.startswith("n/a (") or re.search(r"\d", figure), row
    grep_row = next(x for x in rows if ": grep |" in x)
    assert "lines/s" in grep_row
    kube_row = next(x for x in rows if "after start, Kubernetes side on" in x)
    assert kube_row.split(" | ")[2].startswith("RSS "), kube_row  # measured against the double
    if Path("/usr/bin/time").exists():  # .ci/run installs it
        rss_row = next(x for x in rows if "peak RSS while reading" in x)
        assert re.search(r"sidecar \d+ MiB, mtail \d+ MiB, grep \d+ MiB", rss_row), rss_row
    ratio_row = next(x for x in rows if "sidecar / bare throughput" in x)
    assert re.search(r"\d+% \(round by round: \d+%", ratio_row), ratio_row
    assert leaked(str(tmp_path)) == []


FAKE_APT_GET = """#!/bin/sh
# a stand-in for apt-get: records its arguments; 'install' creates the packages' commands
echo "$@" >> "{log}"
[ "$1" = install ] || exit 0
for word in "$@"; do
    case "$word" in -*|install) continue ;; esac
    printf '#!/bin/sh\\necho fake\\n' > "{bin}/$word" && /bin/chmod +x "{bin}/$word"
done
"""


def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH that holds nothing but a stand-in apt-get; tools are looked up in it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt_log = tmp_path / "apt.log"
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT_GET.format(log=apt_log, bin=bin_dir))
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(tools.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        tools, "TOOL_PACKAGES", {"mtail": "mtail", "wrk": "wrk", "hyperfine": "hyperfine"}
    )
    return apt_log


def test_suite_installs_the_missing_peer_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt_log = fake_tools(tmp_path, monkeypatch)
    found = tools.check_tools(install=True)
    assert found == {"mtail": True, "wrk": True, "hyperfine": True}
    calls = apt_log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y")
    assert calls[1].split()[-3:] == ["mtail", "wrk", "hyperfine"]


def test_suite_only_reports_missing_tools_with_no_install(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apt_log = fake_tools(tmp_path, monkeypatch)
    found = tools.check_tools(install=False)
    assert found == {"mtail": False, "wrk": False, "hyperfine": False}
    assert not apt_log.exists()
    assert "apt-get install -y mtail wrk hyperfine" in capsys.readouterr().err
