"""Failures operators meet on their first deploy, live on real Keycloak (issue 16).

The three most telling of ``realkc_failures.py`` (the others are replayed from their saved real
logs by ``test_replay.py``): a wrong database password (a configuration a restart with the
fixed Secret repairs: ``startup_fatal``/``db_config``), a database that refuses connections
at boot (Keycloak exits, but the sidecar never asks for a kill: the database is not the pod's
fault), and a production start without ``--hostname`` (kc.sh says so on its console only).
Each uses a PostgreSQL of its own that checks passwords; none needs a migrated schema, so a
node fails within seconds of its JVM's start.  The fourth kills the database during the first
migration: the failed changeset is the database's doing, never a kill.  Runs after ``test_realkc.py`` (file order) and
needs none of its cluster.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from realkc_cluster import DB_USER, Processes, Sidecar, alive, analyze_json, kill_group, wait_until
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
    """A PostgreSQL that checks the Keycloak user's password, with an empty database."""
    version, home = keycloak_home
    processes = Processes()
    postgres = PasswordPostgres(processes)
    root = realkc_root / "failures"
    try:
        postgres.init()
        postgres.start()
        postgres.ensure_role()
        postgres.psql(f"CREATE DATABASE keycloak OWNER {DB_USER}")
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


def test_wrong_database_password_is_a_config_fatal(bench: Bench) -> None:
    """``password authentication failed`` at boot: /livez 503 ``startup_fatal``/``db_config``
    (a restart re-reads the fixed Secret); Keycloak exits by itself."""
    node = bench.node("kc-fail", "keycloak", replace={"--db-password": "not-the-password"})
    returncode, samples = boot_until_exit(bench, node)
    assert returncode != 0
    last = samples[-1]
    assert "startup_fatal" in last["reasons"], last  # type: ignore[operator]
    causes = [c.get("detail") for c in last["checks"] if c["reason"] == "startup_fatal"]  # type: ignore[attr-defined]
    assert causes == ["db_config"], last
    events, _ = analyze_json(node.log_path)
    assert "db_config" in {e.get("reason") for e in events if e["event"] == "startup_fatal"}


def test_database_refusing_at_boot_is_never_a_kill(bench: Bench) -> None:
    """Nothing listens on the database's port: Keycloak gives up and exits (1), after
    "Failed to start server"; the sidecar says ``db_unavailable`` and /livez never fails."""
    node = bench.node("kc-fail", "keycloak")
    node.database_url = node.database_url.replace(f":{bench.postgres.port}/", ":1/")
    returncode, samples = boot_until_exit(bench, node)
    assert returncode != 0
    assert node.has_logged("Failed to start server"), node.log_text()[-800:]
    assert all(s["status"] == "ok" for s in samples), [s for s in samples if s["status"] != "ok"]
    assert "db_unavailable" in samples[-1]["readyz"], samples[-1]  # type: ignore[operator]
    events, verdict = analyze_json(node.log_path)
    assert "refused" in {e.get("reason") for e in events if e["event"] == "db_unavailable"}
    assert verdict["live"], verdict


def test_production_start_without_hostname(bench: Bench) -> None:
    """``start`` without ``--hostname`` (hostname-strict defaults to true): kc.sh prints the
    refusal on its console and exits before opening the log file; a sidecar reading that
    stream (``--log-file=-``) says ``startup_fatal``/``config``."""
    node = bench.node("kc-fail", "keycloak", drop=("--hostname-strict",))
    bench.root.mkdir(parents=True, exist_ok=True)
    keycloak = bench.processes.spawn(
        node.argv(), env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    node.proc = keycloak
    sidecar = Sidecar(node, bench.processes, overrides={"--log-file": "-"})
    tee = bench.processes.spawn(
        ["tee", str(node.console_path)], stdin=keycloak.stdout, stdout=subprocess.PIPE
    )
    assert keycloak.stdout is not None and tee.stdout is not None
    keycloak.stdout.close()
    sidecar.proc = bench.processes.spawn(
        sidecar.argv(),
        stdin=tee.stdout,
        stdout=sidecar.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    tee.stdout.close()
    try:
        wait_until("the sidecar serves", sidecar.serves, 30)
        wait_until("/livez 503", lambda: sidecar.status("/livez") == 503, EXIT_TIMEOUT_SECONDS)
        body = sidecar.get("/livez")[1]
        causes = [c.get("detail") for c in body["checks"] if c["reason"] == "startup_fatal"]
        assert "config" in causes, body
        assert keycloak.wait(timeout=60) != 0
        assert not node.log_path.exists()  # a sidecar following only the file sees nothing
    finally:
        kill_group(sidecar.proc, 9)
        sidecar.proc.wait(timeout=30)


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
