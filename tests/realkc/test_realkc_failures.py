"""Database failures at boot, live on real Keycloak: never a kill (issue 16).

Two of ``realkc_failures.py``'s scenarios, the ones where the sidecar's restraint matters
most (every other one is replayed from its saved real log by ``test_replay.py``): nothing
listening on the database's port at boot, and the database killed during the first schema
migration.  In both Keycloak gives up and exits by itself; the cause is the database, which
every replica shares, so the sidecar says ``db_unavailable`` and /livez never fails.  Each
uses a PostgreSQL of its own (``realkc_failures.PasswordPostgres``), so it runs after
``test_realkc.py`` (file order) and needs none of its cluster.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from realkc_cluster import DB_USER, Processes, Sidecar, alive, analyze_json, kill_group
from realkc_failures import Bench, FailingNode, PasswordPostgres

pytestmark = [pytest.mark.realkc, pytest.mark.timeout(600)]

EXIT_TIMEOUT_SECONDS = 240.0


def leftover_check() -> Callable[[tuple[Path, ...]], list[str]]:
    """``leftover_processes`` of this folder's conftest (a module name tests/ shares)."""
    spec = importlib.util.spec_from_file_location(
        "realkc_conftest", Path(__file__).with_name("conftest.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check: Callable[[tuple[Path, ...]], list[str]] = module.leftover_processes
    return check


@pytest.fixture(scope="module")
def bench(keycloak_home: tuple[str, Path], realkc_root: Path) -> Iterator[Bench]:
    """Nodes beside their sidecars under one folder.  Its PostgreSQL is never started: its
    port is one where nothing listens (each test that needs a database starts its own)."""
    version, home = keycloak_home
    processes = Processes()
    postgres = PasswordPostgres(processes)
    root = realkc_root / "failures"
    try:
        yield Bench(version, home, root, processes, postgres)
    finally:
        processes.close()
        postgres.remove()
        left = leftover_check()((root, postgres.root))
        assert not left, f"processes left behind: {left}"


def boot_until_exit(
    bench: Bench, node: FailingNode, during: Callable[[], None] | None = None
) -> tuple[int, list[dict[str, object]]]:
    """Start the node beside its sidecar, sample /livez every 0.2 s until the JVM exits
    (``during`` is called before each sample)."""
    sidecar = Sidecar(node, bench.processes)
    sidecar.start()
    node.start()
    samples: list[dict[str, object]] = []
    deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
    try:
        while alive(node.proc):
            assert time.monotonic() < deadline, f"{node.name} neither failed nor exited"
            if during is not None:
                during()
            samples.append(sidecar.get("/livez")[1] | {"readyz": sidecar.reasons("/readyz")})
            time.sleep(0.2)
        time.sleep(1.0)  # the sidecar polls the file: its last lines
        samples.append(sidecar.get("/livez")[1] | {"readyz": sidecar.reasons("/readyz")})
        assert node.proc is not None
        return node.proc.returncode, samples
    finally:
        for proc in (node.proc, sidecar.proc):
            if alive(proc):
                assert proc is not None
                kill_group(proc, 9)
                proc.wait(timeout=30)


def test_database_refusing_at_boot_is_never_a_kill(bench: Bench) -> None:
    """Nothing listens on the database's port: Keycloak gives up and exits (1), after
    "Failed to start server"; the sidecar says ``db_unavailable`` and /livez never fails."""
    node = bench.node("kc-fail", "keycloak")  # the bench's PostgreSQL never runs
    returncode, samples = boot_until_exit(bench, node)
    assert returncode != 0
    assert node.has_logged("Failed to start server"), node.log_text()[-800:]
    assert all(s["status"] == "ok" for s in samples), [s for s in samples if s["status"] != "ok"]
    assert "db_unavailable" in samples[-1]["readyz"], samples[-1]  # type: ignore[operator]
    events, verdict = analyze_json(node.log_path)
    assert "refused" in {e.get("reason") for e in events if e["event"] == "db_unavailable"}
    assert verdict["live"], verdict


def test_database_killed_during_the_first_migration_is_never_a_kill(bench: Bench) -> None:
    """A PostgreSQL of its own SIGKILLed once the first migration has begun: the changeset
    fails on "terminating connection due to unexpected postmaster exit" and Keycloak exits;
    that is the database (``db_unavailable``), not the schema: /livez never fails."""
    own = PasswordPostgres(bench.processes)
    try:
        own.init()
        own.start()
        own.ensure_role()
        own.psql(f"CREATE DATABASE keycloak OWNER {DB_USER}")
        node = bench.node("kc-fail", "keycloak", postgres=own)

        def kill_once_migrating() -> None:
            if alive(own.proc) and node.has_logged("Initializing database schema"):
                time.sleep(1.0)  # a few changesets in
                own.kill()

        returncode, samples = boot_until_exit(bench, node, during=kill_once_migrating)
        assert not alive(own.proc), "the migration never began"
        assert returncode != 0
        gone = "unexpected postmaster exit" if node.has_logged("postmaster exit") else "?"
        print(f"\n[realkc] database killed mid-migration: Keycloak exited {returncode} ({gone})")
        failing = [s for s in samples if s["status"] != "ok"]
        assert failing == [], failing
        assert "db_unavailable" in samples[-1]["readyz"], samples[-1]  # type: ignore[operator]
        events, verdict = analyze_json(node.log_path)
        assert verdict["live"], verdict
        assert "liquibase" not in {e.get("reason") for e in events if e["event"] == "startup_fatal"}
    finally:
        if alive(own.proc):
            own.kill()
        own.remove()
