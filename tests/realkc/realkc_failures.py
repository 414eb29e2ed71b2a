"""Failures users really hit, produced for real on real Keycloak and PostgreSQL (issue 16).

``test_realkc.py`` covers the failures of the project's story (the schema race, a schema
conflict, a port taken, an invalid option, the database stopped, peers leaving, a partition,
a stalled boot).  This module produces more of them, the ones operators meet when they first
deploy or rotate something: a wrong database password, a missing database, a user without the
privileges it needs, a database that refuses connections, no hostname in production, HTTPS
without key material, a keystore or truststore that cannot be read, a malformed realm import,
build options changed at ``start --optimized``, a log directory that cannot be created, the
JGroups port taken, the database killed during the first migration, credentials rotated under
a running server...

Each scenario starts one real Keycloak node (the harness of ``realkc_cluster.py``) next to
the real sidecar, waits for what Keycloak does (it exits by itself after a fatal startup
error), and keeps what it printed.  Run as a script it records every scenario (or the named
ones) and saves the logs as ``tests/data/realkc/<version>-<scenario>-<node>.log``:

    .venv/bin/python tests/realkc/realkc_failures.py [--save] [NAME...]

``test_replay.py`` judges the saved logs without Java; ``test_realkc_failures.py`` runs the two
database ones live in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realkc_cluster import (
    DB_PASSWORD,
    DB_USER,
    FIXTURES,
    KeycloakNode,
    Partition,
    Postgres,
    Processes,
    Sidecar,
    alive,
    analyze_json,
    build_keycloak,
    check_tools,
    fetch_keycloak,
    free_port,
    kill_group,
    selected_version,
    wait_until,
)

#: loopback addresses of these scenarios' nodes (the pair and the suite's extras use 127.0.0.x)
ADDRESS_PREFIX = "127.0.16."
BOOT_TIMEOUT_SECONDS = 300.0
EXIT_TIMEOUT_SECONDS = 60.0
#: the database every booting scenario copies (migrated once: a boot then takes seconds)
TEMPLATE_DATABASE = "kc_template"


class PasswordPostgres(Postgres):
    """The harness's PostgreSQL, but the Keycloak user must give its password (scram).

    ``initdb -A trust`` lets every user in whatever password it gives; a wrong password can
    only fail where pg_hba.conf asks for one.  The ``postgres`` superuser (the tests' psql)
    stays trusted on loopback.
    """

    max_connections: int = 0

    def _as_owner(self, argv: list[str]) -> list[str]:
        if self.max_connections and argv[0].endswith("/postgres"):
            argv = [*argv, "-c", f"max_connections={self.max_connections}"]
        return super()._as_owner(argv)

    def init(self) -> None:
        super().init()
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

    def ensure_role(self) -> None:
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'").strip():
            self.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")


@dataclass
class FailingNode(KeycloakNode):
    """A node whose command line differs from the pair's: options replaced or dropped."""

    replace: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    env_extra: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        gone = set(self.drop) | set(self.replace)
        args = [a for a in super().argv() if a.partition("=")[0] not in gone]
        return [*args, *(f"{k}={v}" if v else k for k, v in self.replace.items())]

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.env_extra}

    def console_text(self) -> str:
        try:
            return self.console_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Outcome:
    """What one scenario produced: Keycloak's exit, its sidecar's verdicts, the real text."""

    scenario: str
    node: FailingNode
    returncode: int | None
    seconds: float
    livez: dict[str, Any]
    readyz: dict[str, Any]
    started: bool
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The log file, or kc.sh's console where the file stayed empty."""
        return self.node.log_text() or self.node.console_text()

    @property
    def source(self) -> str:
        return "file" if self.node.log_text() else "console"


@dataclass
class Bench:
    """One PostgreSQL (passwords checked) and a migrated template database for the scenarios."""

    version: str
    home: Path
    root: Path
    processes: Processes
    postgres: PasswordPostgres
    _next_address: int = 10

    def address(self) -> str:
        self._next_address += 1
        return f"{ADDRESS_PREFIX}{self._next_address}"

    def node(self, name: str, database: str, **kwargs: Any) -> FailingNode:
        address = kwargs.pop("address", "") or self.address()
        postgres = kwargs.pop("postgres", None) or self.postgres
        return FailingNode(
            name,
            kwargs.pop("home", None) or self.home,
            address,
            postgres.jdbc_url(database),
            self.root / f"{name}-{address.rsplit('.', 1)[-1]}-{time.monotonic_ns()}",
            self.processes,
            **kwargs,
        )

    def empty_database(self, name: str, owner: str = DB_USER) -> None:
        """For a failure expected before the schema is touched (no migration to wait for)."""
        self.postgres.ensure_role()
        self.postgres.psql(f"CREATE DATABASE {name} OWNER {owner}")

    def migrated_database(self, name: str, owner: str = DB_USER) -> None:
        """A copy of the migrated template (the node's boot migrates nothing)."""
        if not self.postgres.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE_DATABASE}'"
        ).strip():
            self.migrate_template()
        self.postgres.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE} OWNER {owner}")

    def migrate_template(self) -> None:
        """Boot one node on an empty database until started, stop it: the template."""
        self.postgres.ensure_role()
        self.postgres.psql(f"CREATE DATABASE {TEMPLATE_DATABASE} OWNER {DB_USER}")
        node = self.node("kc-template", TEMPLATE_DATABASE)
        node.start()
        try:
            wait_until("the template migrated", lambda: started(node), BOOT_TIMEOUT_SECONDS * 2)
        finally:
            if alive(node.proc):
                node.stop()

    def run(
        self,
        scenario: str,
        node: FailingNode,
        *,
        until: Callable[[FailingNode, Sidecar], bool] | None = None,
        sidecar_overrides: dict[str, str] | None = None,
        timeout_seconds: float = BOOT_TIMEOUT_SECONDS,
    ) -> Outcome:
        """Start the node beside its sidecar; wait for its exit (or ``until``, or started)."""
        sidecar = Sidecar(node, self.processes, overrides=sidecar_overrides or {})
        sidecar.start()
        node.start()
        began = time.monotonic()
        done = until or (lambda n, s: started(n))
        try:
            wait_until(
                f"{scenario}: {node.name} exits or gets there",
                lambda: not alive(node.proc) or done(node, sidecar),
                timeout_seconds,
            )
            seconds = time.monotonic() - began
            if not alive(node.proc):
                time.sleep(1.5)  # the sidecar reads the last lines (it polls the file)
            livez, readyz = sidecar.get("/livez")[1], sidecar.get("/readyz")[1]
            is_started = bool(sidecar.get("/status")[1]["verdicts"]["started"]["ok"])
            returncode = node.proc.poll() if node.proc else None
            return Outcome(scenario, node, returncode, seconds, livez, readyz, is_started)
        finally:
            for proc in (node.proc, sidecar.proc):
                if alive(proc):
                    assert proc is not None
                    kill_group(proc, signal.SIGKILL)
                    proc.wait(timeout=30)


def started(node: KeycloakNode) -> bool:
    return "started in" in node.log_text() and "Keycloak" in node.log_text()


# --------------------------------------------------------------------------- scenarios


def wrong_db_password(bench: Bench) -> list[Outcome]:
    bench.empty_database("kc_wrong_password")
    node = bench.node("kc-fail", "kc_wrong_password", replace={"--db-password": "not-the-password"})
    return [bench.run("db-wrong-password", node)]


def unknown_database(bench: Bench) -> list[Outcome]:
    bench.postgres.ensure_role()
    node = bench.node("kc-fail", "no_such_database")
    return [bench.run("db-unknown-database", node)]


def no_connect_privilege(bench: Bench) -> list[Outcome]:
    """A database the Keycloak user may not connect to (CONNECT revoked from PUBLIC)."""
    bench.empty_database("kc_no_connect", owner="postgres")
    bench.postgres.psql("REVOKE CONNECT ON DATABASE kc_no_connect FROM PUBLIC")
    node = bench.node("kc-fail", "kc_no_connect")
    return [bench.run("db-no-connect-privilege", node)]


def no_create_privilege(bench: Bench) -> list[Outcome]:
    """An empty database owned by someone else: PostgreSQL 15+ grants no CREATE on public."""
    bench.empty_database("kc_no_create", owner="postgres")
    node = bench.node("kc-fail", "kc_no_create")
    return [bench.run("db-no-create-privilege", node)]


def nothing_listening(bench: Bench) -> list[Outcome]:
    """The database URL's port has nothing listening (PostgreSQL not up yet, wrong port)."""
    node = bench.node("kc-fail", "keycloak")
    node.database_url = f"jdbc:postgresql://127.0.0.1:{free_port()}/keycloak"
    return [bench.run("db-refused", node)]


def role_connection_limit(bench: Bench) -> list[Outcome]:
    """The user's connection limit reached (a managed database's per-role limit)."""
    bench.empty_database("kc_limit")
    bench.postgres.psql(f"ALTER ROLE {DB_USER} CONNECTION LIMIT 0")
    try:
        node = bench.node("kc-fail", "kc_limit")
        return [bench.run("db-role-connection-limit", node)]
    finally:
        bench.postgres.psql(f"ALTER ROLE {DB_USER} CONNECTION LIMIT -1")


def too_many_clients(bench: Bench) -> list[Outcome]:
    """PostgreSQL's max_connections used up by other clients before Keycloak starts (a
    server of its own with 8 slots, 3 of them reserved for superusers)."""
    small = PasswordPostgres(bench.processes)
    small.max_connections = 8
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        small.init()
        small.start()
        small.ensure_role()
        small.psql(f"CREATE DATABASE keycloak OWNER {DB_USER}")
        env = {**os.environ, "PGPASSWORD": DB_PASSWORD}
        url = f"postgresql://{DB_USER}@127.0.0.1:{small.port}/keycloak"
        argv = [str(small.bindir / "psql"), url, "-c", "SELECT pg_sleep(900)"]
        for _ in range(5):
            sleepers.append(bench.processes.spawn(argv, env=env, stdout=subprocess.DEVNULL))
        count = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'keycloak'"
        wait_until("every slot held", lambda: small.psql(count).strip() == "5", 60)
        node = bench.node("kc-fail", "keycloak", postgres=small)
        return [bench.run("db-too-many-clients", node)]
    finally:
        for proc in sleepers:
            kill_group(proc, signal.SIGKILL)
        if small.proc is not None and alive(small.proc):
            small.kill()
        small.remove()


def hostname_missing(bench: Bench) -> list[Outcome]:
    """Production ``start`` without ``--hostname`` (hostname-strict is true by default)."""
    bench.empty_database("kc_hostname")
    node = bench.node("kc-fail", "kc_hostname", drop=("--hostname-strict",))
    return [bench.run("hostname-missing", node)]


def https_without_key_material(bench: Bench) -> list[Outcome]:
    """HTTP disabled (the production default) and no certificate given."""
    bench.empty_database("kc_https")
    node = bench.node("kc-fail", "kc_https", drop=("--http-enabled",))
    return [bench.run("https-no-key-material", node)]


def truststore_missing(bench: Bench) -> list[Outcome]:
    bench.empty_database("kc_truststore")
    node = bench.node(
        "kc-fail", "kc_truststore", replace={"--truststore-paths": "/nonexistent/ca.pem"}
    )
    return [bench.run("truststore-missing", node)]


def keystore_wrong_password(bench: Bench) -> list[Outcome]:
    """A PKCS#12 keystore (openssl) opened with the wrong password."""
    bench.empty_database("kc_keystore")
    address = bench.address()
    directory = bench.root / "kc-keystore-material"
    store = pkcs12(directory, address, "right-password")
    node = bench.node(
        "kc-fail",
        "kc_keystore",
        address=address,
        replace={
            "--https-key-store-file": str(store),
            "--https-key-store-password": "wrong-password",
            "--https-port": str(free_port(address)),
        },
    )
    return [bench.run("keystore-wrong-password", node)]


def keystore_missing(bench: Bench) -> list[Outcome]:
    bench.empty_database("kc_keystore_missing")
    address = bench.address()
    node = bench.node(
        "kc-fail",
        "kc_keystore_missing",
        address=address,
        replace={
            "--https-key-store-file": "/nonexistent/keystore.p12",
            "--https-port": str(free_port(address)),
        },
    )
    return [bench.run("keystore-missing", node)]


def pkcs12(directory: Path, address: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, store = directory / "tls.crt", directory / "tls.key", directory / "ks.p12"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={address}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
         "-out", str(store), "-passout", f"pass:{password}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return store


@contextlib.contextmanager
def private_home(bench: Bench) -> Iterator[Path]:
    """A copy of the Keycloak home (hard links) to put files into, removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="realkc-home-", dir=bench.root)) / "keycloak"
    subprocess.run(["cp", "-al", str(bench.home), str(home)], check=True, timeout=120)
    try:
        yield home
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)


def import_malformed_realm(bench: Bench) -> list[Outcome]:
    """``--import-realm`` with a realm file that is not valid JSON."""
    bench.migrated_database("kc_import")
    with private_home(bench) as home:
        imports = home / "data" / "import"
        imports.mkdir(parents=True, exist_ok=True)
        (imports / "broken-realm.json").write_text(
            '{"realm": "broken", "enabled": true, "clients": [ {"clientId": ', encoding="utf-8"
        )
        node = bench.node("kc-fail", "kc_import", home=home, replace={"--import-realm": ""})
        return [bench.run("import-realm-malformed", node)]


@contextlib.contextmanager
def copied_home(bench: Bench) -> Iterator[Path]:
    """A full copy of the Keycloak home, for a ``start`` that may run the auto-build (which
    rewrites lib/quarkus: hard links would let it write into the shared cache)."""
    home = Path(tempfile.mkdtemp(prefix="realkc-home-", dir=bench.root)) / "keycloak"
    subprocess.run(["cp", "-a", str(bench.home), str(home)], check=True, timeout=300)
    try:
        yield home
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)


def invalid_values_auto_build(bench: Bench) -> list[Outcome]:
    """``start`` without ``--optimized`` (the auto-build) with a feature and a database
    vendor that do not exist: the values are checked before anything is built."""
    outcomes = []
    with copied_home(bench) as home:
        for scenario, option, value in (
            ("feature-unknown-auto-build", "--features", "no-such-feature"),
            ("db-vendor-unknown-auto-build", "--db", "nosuchdb"),
        ):
            node = bench.node(
                "kc-fail", "keycloak", home=home, drop=("--optimized",), replace={option: value}
            )
            outcomes.append(bench.run(scenario, node))
    return outcomes


def unknown_feature(bench: Bench) -> list[Outcome]:
    bench.empty_database("kc_feature")
    node = bench.node("kc-fail", "kc_feature", replace={"--features": "no-such-feature"})
    return [bench.run("feature-unknown", node)]


def unknown_db_vendor(bench: Bench) -> list[Outcome]:
    node = bench.node("kc-fail", "keycloak", replace={"--db": "nosuchdb"})
    return [bench.run("db-vendor-unknown", node)]


def build_option_changed(bench: Bench) -> list[Outcome]:
    """``start --optimized`` with a build-time option other than the build's."""
    bench.empty_database("kc_build_option")
    node = bench.node("kc-fail", "kc_build_option", replace={"--health-enabled": "false"})
    return [bench.run("build-option-differs", node)]


def log_directory_not_creatable(bench: Bench) -> list[Outcome]:
    """The log file's folder cannot be created (a regular file is in the way)."""
    bench.empty_database("kc_logdir")
    node = bench.node("kc-fail", "kc_logdir")
    blocker = node.directory / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    node.replace = {"--log-file": str(blocker / "keycloak.log")}

    def started_by_probe(_: FailingNode, sidecar: Sidecar) -> bool:
        # Keycloak runs on without any log: only the sidecar's probes can tell it started
        verdicts = sidecar.get("/status")[1].get("verdicts", {})
        return bool(verdicts.get("started", {}).get("ok"))

    return [bench.run("log-directory-not-creatable", node, until=started_by_probe)]


def jgroups_port_taken(bench: Bench) -> list[Outcome]:
    """Another process holds the JGroups ports of the node's address (7800 and its range)."""
    bench.migrated_database("kc_jgroups_port")
    address = bench.address()
    holders = []
    try:
        for port in (*range(7800, 7811), 57800):
            holder = socket.socket()
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind((address, port))
            holder.listen()
            holders.append(holder)
        node = bench.node("kc-fail", "kc_jgroups_port", address=address)
        return [bench.run("jgroups-port-taken", node)]
    finally:
        for holder in holders:
            holder.close()


def jgroups_blocked_from_start(bench: Bench) -> list[Outcome]:
    """A second node whose JGroups traffic is dropped from before its start (a network
    policy without port 7800): it finds its peer through the database but cannot reach it."""
    if Partition.available():
        raise RuntimeError(Partition.available())
    bench.migrated_database("kc_alone")
    peer = bench.node("kc-peer", "kc_alone", node_name="kc-peer")
    peer.start()
    wait_until("the peer started", lambda: started(peer), BOOT_TIMEOUT_SECONDS)
    lonely = bench.node("kc-alone", "kc_alone", node_name="kc-alone")
    partition = Partition(peer.address, lonely.address)
    partition.cut()
    began = time.monotonic()

    def settled(node: FailingNode, _: Sidecar) -> bool:
        # started (alone) and 60 s more of whatever it logs about the unreachable peer
        return started(node) and time.monotonic() - began > 60

    try:
        outcome = bench.run("jgroups-blocked-from-start", lonely, until=settled)
    finally:
        partition.heal()
        peer.stop()
    return [outcome]


def db_killed_mid_migration(bench: Bench) -> list[Outcome]:
    """A PostgreSQL of its own SIGKILLed during the first migration, then started again and
    the node restarted as a kubelet would (the second boot finds a half-made schema)."""
    own = PasswordPostgres(bench.processes)
    own.init()
    own.start()
    own.ensure_role()
    own.psql(f"CREATE DATABASE keycloak OWNER {DB_USER}")

    def migrating(node: FailingNode, _: Sidecar) -> bool:
        return node.has_logged("Initializing database schema")

    try:
        first = bench.node("kc-fail", "keycloak", postgres=own)
        sidecar = Sidecar(first, bench.processes)
        sidecar.start()
        first.start()
        wait_until("the first migration begins", lambda: migrating(first, sidecar), 300)
        time.sleep(3)  # some changesets in
        own.kill()
        wait_until("Keycloak exits", lambda: not alive(first.proc), 300)
        time.sleep(1.5)
        outcome = Outcome(
            "db-killed-mid-migration",
            first,
            first.proc.poll() if first.proc else None,
            0.0,
            sidecar.get("/livez")[1],
            sidecar.get("/readyz")[1],
            False,
        )
        kill_group(sidecar.proc, signal.SIGKILL) if sidecar.proc else None
        own.start()  # crash recovery, then the kubelet's restart of the container
        second = bench.node("kc-restarted", "keycloak", postgres=own)
        return [outcome, bench.run("db-killed-mid-migration", second)]
    finally:
        if own.proc is not None and alive(own.proc):
            own.kill()
        own.remove()


def runtime_credentials(bench: Bench) -> list[Outcome]:
    """A running node whose database password is changed and connections cut (a rotation
    that forgot the Secret), then the role's connection limit hit, then login refused."""
    bench.migrated_database("kc_runtime")
    node = bench.node("kc-runtime", "kc_runtime")
    pg = bench.postgres
    cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'keycloak'"

    def steps(n: FailingNode, sidecar: Sidecar) -> bool:
        if not started(n) or sidecar.status("/readyz") != 200:
            return False
        for breaking, healing in (
            (f"ALTER ROLE {DB_USER} PASSWORD 'rotated-password'",
             f"ALTER ROLE {DB_USER} PASSWORD '{DB_PASSWORD}'"),
            (f"ALTER ROLE {DB_USER} CONNECTION LIMIT 0", f"ALTER ROLE {DB_USER} CONNECTION LIMIT -1"),
            (f"ALTER ROLE {DB_USER} NOLOGIN", f"ALTER ROLE {DB_USER} LOGIN"),
        ):  # fmt: skip
            pg.psql(breaking)
            pg.psql(cut)
            wait_until(
                f"db_unavailable after {breaking}",
                lambda: "db_unavailable" in sidecar.reasons("/readyz"),
                120,
            )
            print(f"[failures] {breaking}: /livez {sidecar.get('/livez')[1]}", flush=True)
            assert sidecar.status("/livez") == 200, sidecar.get("/livez")[1]
            pg.psql(healing)
            wait_until("ready again", lambda: sidecar.status("/readyz") == 200, 180)
        return True

    return [bench.run("db-runtime-access-lost", node, until=steps, timeout_seconds=900)]


SCENARIOS: dict[str, Callable[[Bench], list[Outcome]]] = {
    "db-wrong-password": wrong_db_password,
    "db-unknown-database": unknown_database,
    "db-no-connect-privilege": no_connect_privilege,
    "db-no-create-privilege": no_create_privilege,
    "db-refused": nothing_listening,
    "db-role-connection-limit": role_connection_limit,
    "db-too-many-clients": too_many_clients,
    "hostname-missing": hostname_missing,
    "https-no-key-material": https_without_key_material,
    "truststore-missing": truststore_missing,
    "keystore-wrong-password": keystore_wrong_password,
    "keystore-missing": keystore_missing,
    "import-realm-malformed": import_malformed_realm,
    "feature-unknown": unknown_feature,
    "db-vendor-unknown": unknown_db_vendor,
    "build-option-differs": build_option_changed,
    "invalid-values-auto-build": invalid_values_auto_build,
    "log-directory-not-creatable": log_directory_not_creatable,
    "jgroups-port-taken": jgroups_port_taken,
    "jgroups-blocked-from-start": jgroups_blocked_from_start,
    "db-killed-mid-migration": db_killed_mid_migration,
    "db-runtime-access-lost": runtime_credentials,
}


@contextlib.contextmanager
def bench_of(root: Path) -> Iterator[Bench]:
    version = selected_version()
    check_tools()
    home = fetch_keycloak(version)
    build_keycloak(home)
    root.mkdir(parents=True, exist_ok=True)
    processes = Processes()
    postgres = PasswordPostgres(processes)
    try:
        postgres.init()
        postgres.start()
        yield Bench(version, home, root, processes, postgres)
    finally:
        processes.close()
        postgres.remove()


def summary(outcome: Outcome, path: Path) -> dict[str, Any]:
    events, verdict = analyze_json(path)
    return {
        "scenario": outcome.scenario,
        "node": outcome.node.name,
        "source": outcome.source,
        "exit": outcome.returncode,
        "seconds": round(outcome.seconds, 1),
        "livez": outcome.livez.get("reasons"),
        "livez_detail": [c.get("detail") for c in outcome.livez.get("checks", []) if not c["ok"]],
        "readyz": outcome.readyz.get("reasons"),
        "analyze": {k: verdict[k] for k in ("live", "ready", "started", "reasons")},
        "events": sorted(
            {
                f"{e['event']}/{e.get('reason', '')}"
                for e in events
                if e["event"] != "startup_progress"
            }
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"scenarios (default all): {', '.join(SCENARIOS)}")
    parser.add_argument("--save", action="store_true", help="copy the logs to tests/data/realkc")
    parser.add_argument("--root", default="", help="folder of the run (default a new /tmp one)")
    options = parser.parse_args()
    names = options.names or list(SCENARIOS)
    root = Path(options.root or tempfile.mkdtemp(prefix="realkc-failures-"))
    print(f"[failures] logs under {root}", flush=True)
    with bench_of(root) as bench:
        for name in names:
            try:
                outcomes = SCENARIOS[name](bench)
            except Exception as error:
                print(f"[failures] {name}: {type(error).__name__}: {error}", flush=True)
                continue
            for outcome in outcomes:
                fname = f"{bench.version}-{outcome.scenario}-{outcome.node.name}.log"
                kept = root / "fixtures" / fname
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(outcome.text, encoding="utf-8")
                if options.save:
                    shutil.copyfile(kept, FIXTURES / fname)
                try:
                    print("[failures]", json.dumps(summary(outcome, kept)), flush=True)
                except subprocess.CalledProcessError as error:  # analyze found nothing
                    print(f"[failures] {outcome.scenario}: {error.stderr}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
