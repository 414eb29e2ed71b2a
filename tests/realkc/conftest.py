"""Fixtures of the real-Keycloak suite: one PostgreSQL and one two-node cluster per session.

The cluster is started once (the story scenario is its boot) and shared by the scenarios that
leave it as they found it; scenarios that need a broken database or a failing node start an
extra node on its own loopback address.  Everything runs below one directory
(``REALKC_ROOT``, default a fresh ``/tmp/realkc-*``), kept after the run for its logs; the
PostgreSQL data folder is removed.  No process survives the session: every one runs in its
own process group, killed at teardown, and ``test_zz_no_process_left`` checks.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from realkc_cluster import (
    Exit,
    KeycloakNode,
    LivezWatch,
    Missing,
    Postgres,
    Processes,
    RealCluster,
    Sidecar,
    Unserved,
    alive,
    build_keycloak,
    check_tools,
    fetch_keycloak,
    selected_version,
    unavailable,
)

# the kubelet emulator of tests/e2e (harness, kubelet, manifest) runs real Keycloak pods too
sys.path.append(str(Path(__file__).resolve().parents[1] / "e2e"))

#: what the terminal summary tells (the version is visible without -s)
SEEN: dict[str, str] = {}
BOOT_TIMEOUT_SECONDS = 840.0  # a loaded 2-core machine: 50 s to 6 min seen
MAX_RESTARTS = 3


@pytest.fixture(scope="session")
def keycloak_home() -> tuple[str, Path]:
    version = selected_version()
    SEEN["version"] = f"real Keycloak {version} (not started)"
    unserved = ""
    try:
        check_tools()
        home = fetch_keycloak(version)
        build_keycloak(home)
    except Unserved as error:
        unserved = str(error)
    except Missing as missing:
        unavailable(str(missing))
    if unserved:  # asked for by name: a skip would pass for a run of that version
        pytest.fail(f"real-Keycloak suite: {unserved}", pytrace=False)
    print(f"\n[realkc] real Keycloak {version} from {home}")
    SEEN["version"] = f"real Keycloak {version} ({home})"
    return version, home


@pytest.fixture(scope="session")
def realkc_root() -> Path:
    wanted = os.environ.get("REALKC_ROOT", "")
    root = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="realkc-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"\n[realkc] logs of this run under {root}")
    SEEN["logs"] = f"real Keycloak logs of this run under {root}"
    return root


@pytest.fixture(scope="session")
def cluster(keycloak_home: tuple[str, Path], realkc_root: Path) -> Iterator[RealCluster]:
    """PostgreSQL, then both nodes started at the same moment on its empty database."""
    version, home = keycloak_home
    processes = Processes()
    postgres = Postgres(processes)
    watch = LivezWatch({})
    try:
        postgres.init()
        postgres.start()
        postgres.create_database("keycloak")
        nodes = [
            KeycloakNode(
                f"kc{i}",
                home,
                f"127.0.0.{i + 2}",
                postgres.jdbc_url("keycloak"),
                realkc_root / f"kc{i}",
                processes,
                json_log=i == 1,  # one node logs plain text, the other JSON
                node_name=f"kc{i}",  # as a pod's host name: the peers' names in the API
            )
            for i in range(2)
        ]
        sidecars = [Sidecar(node, processes) for node in nodes]
        for sidecar in sidecars:
            sidecar.start()
            watch.sidecars[sidecar.node.name] = sidecar
        watch.start()
        real = RealCluster(version, home, realkc_root, processes, postgres, nodes, sidecars, watch)
        started = time.monotonic()
        for node in nodes:
            node.start()
        boot_like_a_kubelet(real)
        real.boot_seconds = time.monotonic() - started
        yield real
    finally:
        watch.stop()
        processes.close()
        postgres.remove()
        left = leftover_processes((realkc_root, postgres.root))
        assert not left, f"processes left behind: {left}"


def boot_like_a_kubelet(real: RealCluster) -> None:
    """Wait until both started and ready; a node whose JVM exits is restarted (restartPolicy
    Always).

    Keycloak 26 exits by itself after a fatal startup error: when both nodes race on the
    empty database, the loser may die on "relation databasechangelog already exists".  The
    kubelet restarts such a container; nothing else (and never the sidecar) kills anything.
    """
    deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
    # ready, not just started: Keycloak 26.6+ (async bootstrap) prints 'started' before it
    # migrates, so the loser of the schema race exits after its 'started' line there
    while not all(
        has_started(s) and alive(s.node.proc) and s.status("/readyz") == 200 for s in real.sidecars
    ):
        assert time.monotonic() < deadline, "the two nodes did not both start"
        for sidecar in real.sidecars:
            node = sidecar.node
            if node.proc is not None and node.proc.poll() is not None:
                assert len(real.exits) < MAX_RESTARTS, f"restarted {MAX_RESTARTS} times"
                body = sidecar.get("/livez")[1]
                real.exits.append(Exit(node.name, node.proc.returncode, body, node.log_text()))
                node.start()
        time.sleep(0.5)


def has_started(sidecar: Sidecar) -> bool:
    """The sidecar's ``started`` verdict (``/startupz`` is 200 after a failed boot too)."""
    verdicts = sidecar.get("/status")[1].get("verdicts", {})
    return bool(verdicts.get("started", {}).get("ok"))


def leftover_processes(roots: tuple[Path, ...]) -> list[str]:
    """Live processes whose command line names one of the suite's folders."""
    markers = [str(root).encode() for root in roots]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(marker in cmdline for marker in markers):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command[:160]}")
    return found


def pytest_report_header(config: pytest.Config) -> str:
    """The version in the header (read when tests/realkc is named on the command line)."""
    asked = os.environ.get("KEYCLOAK_VERSION", "")
    how = f"KEYCLOAK_VERSION={asked}" if asked else "the pin of tests/realkc/versions.txt"
    return f"realkc: real Keycloak {selected_version()} ({how})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SEEN.values():
        terminalreporter.write_line(f"[realkc] {line}")
