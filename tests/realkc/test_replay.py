"""Replay what real Keycloak printed in each scenario through ``analyze --json`` (no Java).

The logs in ``tests/data/realkc/`` were written by real Keycloak servers in the scenarios of
``test_realkc.py`` (``REALKC_SAVE_FIXTURES=1``); their names are
``<keycloak version>-<scenario>-<node>.log``.  Each is judged against what that scenario
established on the live server.  Every saved log must have an expectation here, so a new
fixture cannot go unjudged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realkc_cluster import FIXTURES, analyze_json

EXIT_UNUSABLE = 2  # analyze: no Keycloak record recognised
NAME = re.compile(r"^(?P<version>\d+\.\d+\.\d+)-(?P<scenario>[a-z-]+)-(?P<node>kc[\w-]*)\.log$")


#: Keycloak's own "started" line.  Keycloak 26.6+ with the health endpoints on prints it
#: before its bootstrap (server-async-bootstrap): a migration that fails or stalls then comes
#: after it, where 26.4/26.5 never printed it.  ``started=AS_LOGGED``: the sidecar's started
#: verdict follows whether that line is in the log, whichever the version.
STARTED_LINE = re.compile(r"on JVM \(powered by Quarkus [^()\n]{0,64}\) started in")
AS_LOGGED = None


@dataclass(frozen=True)
class Expected:
    live: bool
    started: bool | None  # None (AS_LOGGED): whether Keycloak printed its 'started' line
    reasons: frozenset[str] = frozenset()  # all of these in the final verdict's reasons
    fatal_causes: frozenset[str] = frozenset()  # all of these among the startup_fatal events
    no_fatal: bool = False  # no startup_fatal / runtime_fatal event at all
    runtime_causes: frozenset[str] = frozenset()  # all of these among the runtime_fatal events
    last_view_size: int | None = None
    unrecognised: bool = False  # analyze finds no Keycloak record in it (exit 2): no verdict


OK_NO_FATAL = {"live": True, "started": True, "no_fatal": True}
EXPECTED: dict[tuple[str, str], Expected] = {
    # both nodes at once on an empty database: both end started in a view of two
    ("story", "kc0"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    ("story", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    # a node that lost that race (relation "databasechangelog" already exists) and exited
    ("story-race-lost", "*"): Expected(
        live=False,
        started=AS_LOGGED,
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"liquibase"}),
    ),
    ("schema-conflict", "*"): Expected(
        live=False,
        started=AS_LOGGED,  # 26.7: 'started', then the migration fails
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"liquibase"}),
    ),
    ("port-taken", "*"): Expected(
        live=False,
        started=False,
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"port_in_use"}),
    ),
    ("invalid-option", "*"): Expected(
        live=False,
        started=False,
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"config"}),
    ),
    # the database frozen during the first migration: never started, no fatal line
    ("stalled-db-frozen", "*"): Expected(live=True, started=AS_LOGGED, no_fatal=True),
    # the database stopped and started again: never a liveness failure
    ("db-stopped", "kc0"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    ("db-stopped", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    # JGroups traffic dropped, then let through: split views, then a merged view of two
    ("partition", "kc0"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    ("partition", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    # SIGTERM: a clean shutdown, not a failure
    ("clean-stop", "kc1"): Expected(
        live=True, started=True, reasons=frozenset({"shutting_down"}), no_fatal=True
    ),
    # -Djboss.node.name given: Keycloak 26 refuses it as a configuration error
    ("node-name-property", "*"): Expected(
        live=False,
        started=False,
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"failed_to_start"}),
    ),
    # the heap exhausted with JAVA_OPTS overridden: the JVM survives and logs the error
    ("oom-survive", "kc-oom"): Expected(
        live=False,
        started=True,
        reasons=frozenset({"runtime_fatal"}),
        runtime_causes=frozenset({"out_of_memory"}),
    ),
    # kc.sh's defaults (-XX:+ExitOnOutOfMemoryError): only the console says why the JVM
    # exited; the log file just ends, a started server with nothing against it
    # (kc.sh's console with --log=file: kc.sh's own lines, then the JVM's last words)
    ("oom-exit", "kc-oom-exit-console"): Expected(
        live=False,
        started=False,
        reasons=frozenset({"runtime_fatal"}),
        runtime_causes=frozenset({"out_of_memory"}),
    ),
    ("oom-exit", "kc-oom-exit"): Expected(**OK_NO_FATAL),  # type: ignore[arg-type]
    # kc1 stopped, restarted, SIGKILLed: kc0 alone in the end, kc1's last boot started
    ("stop-and-kill", "kc0"): Expected(**OK_NO_FATAL, last_view_size=1),  # type: ignore[arg-type]
    ("stop-and-kill", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
}


# Failures users hit, produced by tests/realkc/realkc_failures.py (docs/realkc.md, "More
# failures").  The project's policy (README, "Causes of startup_fatal"): a configuration that
# a restart with the fixed Secret/ConfigMap repairs is startup_fatal (Keycloak exits on it
# anyway); the database being unusable is db_unavailable and never a kill.  A "console" log
# is kc.sh's output where Keycloak never opened its log file: what a sidecar reading the
# container's stream (--log-source=kubernetes, --log-file=-) sees.
FATAL_BEFORE_START = {"live": False, "started": False, "reasons": frozenset({"startup_fatal"})}
EXPECTED |= {
    # the datasource's configuration, read from the whole record (Caused by chain too)
    ("db-wrong-password", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"db_config"}),
    ),
    ("db-unknown-database", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"db_config"}),
    ),
    # nothing listening on the database's port: Keycloak exits (the kubelet restarts it), but
    # the sidecar never asks for a kill: the generic failure is suppressed by db_unavailable
    ("db-refused", "*"): Expected(live=True, started=False, reasons=frozenset({"db_unavailable"})),
    # console only: production start without --hostname
    ("hostname-missing", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"config"}),
    ),
    # console only: HTTPS (the production default) without a certificate
    ("https-no-key-material", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"tls"}),
    ),
    # console only: start --optimized with a build-time option (health, db) that differs
    ("build-option-differs", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"build"}),
    ),
    ("db-vendor-unknown", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"build"}),
    ),
    # the database refuses this user (no CONNECT grant, the role's connection limit, every
    # slot but the superusers' taken): fixed on the database, not by restarting the pod;
    # Keycloak exits by itself, the sidecar never asks for a kill
    ("db-no-connect-privilege", "*"): Expected(
        live=True, started=False, reasons=frozenset({"db_unavailable"})
    ),
    ("db-role-connection-limit", "*"): Expected(
        live=True, started=False, reasons=frozenset({"db_unavailable"})
    ),
    ("db-too-many-clients", "*"): Expected(
        live=True, started=False, reasons=frozenset({"db_unavailable"})
    ),
    # an empty database owned by another user (PostgreSQL 15+: no CREATE on public): the
    # first migration fails, a migration failure like the schema conflict
    ("db-no-create-privilege", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"liquibase"}),
    ),
    # console only: --truststore-paths names a file that does not exist
    ("truststore-missing", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"tls"}),
    ),
    # --https-key-store-file names a file that does not exist
    ("keystore-missing", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"tls"}),
    ),
    # --import-realm with a realm file that is not JSON: "Failed to run import"
    ("import-realm-malformed", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"config"}),
    ),
    # console only: start (auto-build) with --features=no-such-feature
    ("feature-unknown-auto-build", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"config"}),
    ),
    # console only: the log file's folder cannot be created.  Not a failure: Keycloak says
    # "LogManager error of type OPEN_FAILURE" and runs on without any log; nothing here is a
    # Keycloak record, so no verdict comes from it (the sidecar relies on its probes)
    ("log-directory-not-creatable", "*"): Expected(live=True, started=False, unrecognised=True),
    # a running node whose password is rotated under it (connections cut), then its role's
    # connection limit set to 0, then NOLOGIN, each undone: "password authentication failed"
    # after startup is db_unavailable "credentials", never a kill; it stays started and live
    ("db-runtime-access-lost", "*"): Expected(**OK_NO_FATAL),  # type: ignore[arg-type]
    # PostgreSQL SIGKILLed during the first migration: the failed changeset's record says
    # "terminating connection due to unexpected postmaster exit": the database, never a kill
    ("db-killed-mid-migration", "kc-fail"): Expected(
        live=True, started=False, reasons=frozenset({"db_unavailable"})
    ),
    # ...and the kubelet's restart once PostgreSQL is back: the half-made schema makes the
    # migration fail for real ("relation ... already exists"); a restart cannot repair it,
    # but it is the schema, like the schema conflict: startup_fatal liquibase
    ("db-killed-mid-migration", "kc-restarted"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"liquibase"}),
    ),
    # the JGroups ports of the node's address held by another process: "Unable to start
    # JGroups Channel" (ISPN000660): Infinispan could not start
    ("jgroups-port-taken", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"cache"}),
    ),
    # JGroups traffic dropped before the node starts: ten JOINs to the peer it found in the
    # database time out, it becomes a singleton and starts alone.  The log shows the
    # unreachable peer (cluster_degraded) and a view of one; no kill from the log alone: the
    # membership check against the API's ready peers says cluster_never_joined
    ("jgroups-blocked-from-start", "*"): Expected(
        live=True, started=True, no_fatal=True, last_view_size=1
    ),
    # console only: start (auto-build) with --db=nosuchdb: "Invalid value for option '--db'"
    # (start --optimized never checks it: see db-vendor-unknown)
    ("db-vendor-unknown-auto-build", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"config"}),
    ),
    # a PKCS#12 keystore opened with the wrong password: "Unable to start HTTP server"
    ("keystore-wrong-password", "*"): Expected(
        **FATAL_BEFORE_START,  # type: ignore[arg-type]
        fatal_causes=frozenset({"tls"}),
    ),
}


def saved_logs() -> list[Path]:
    return sorted(FIXTURES.glob("*.log"))


def expectation(path: Path) -> Expected:
    match = NAME.match(path.name)
    assert match, f"fixture name not <version>-<scenario>-<node>.log: {path.name}"
    scenario, node = match["scenario"], match["node"]
    found = EXPECTED.get((scenario, node)) or EXPECTED.get((scenario, "*"))
    assert found is not None, f"no expectation for {path.name}: add one to EXPECTED"
    return found


#: kept for every Keycloak version whose logs are here: a boot, and the real fatal startups
PER_VERSION = {"story", "schema-conflict", "port-taken", "stalled-db-frozen"}


def test_fixtures_exist() -> None:
    """The replay below is not vacuous: real logs are committed for every scenario, and for
    each version kept (the pin, the newest and the oldest line) its boot and fatal startups."""
    by_version: dict[str, set[str]] = {}
    for path in saved_logs():
        if match := NAME.match(path.name):
            by_version.setdefault(match["version"], set()).add(match["scenario"])
    scenarios = set().union(*by_version.values())
    assert {"story", "schema-conflict", "port-taken", "invalid-option", "partition"} <= scenarios
    assert len(by_version) >= 3, sorted(by_version)
    for version, kept in by_version.items():
        assert kept >= PER_VERSION, (version, sorted(PER_VERSION - kept))
    assert {"oom-survive", "oom-exit"} <= scenarios


@pytest.mark.parametrize("path", saved_logs(), ids=lambda p: p.stem)
def test_replay_concludes_what_the_live_run_did(path: Path) -> None:
    want = expectation(path)
    if want.unrecognised:
        assert analyze_exit_code(path) == EXIT_UNUSABLE
        return
    events, verdict = analyze_json(path)
    assert verdict["live"] is want.live, verdict
    started = want.started
    if started is AS_LOGGED:
        started = (
            STARTED_LINE.search(path.read_text(encoding="utf-8", errors="replace")) is not None
        )
    assert verdict["started"] is started, verdict
    assert want.reasons <= set(verdict["reasons"]), verdict
    causes = {e.get("reason") for e in events if e["event"] == "startup_fatal"}
    assert want.fatal_causes <= causes, causes
    runtime = {e.get("reason") for e in events if e["event"] == "runtime_fatal"}
    assert want.runtime_causes <= runtime, runtime
    if want.no_fatal:
        assert not [e for e in events if e["event"] in ("startup_fatal", "runtime_fatal")]
    if want.last_view_size is not None:
        assert last_view(events)["size"] == want.last_view_size


def last_view(events: list[dict[str, Any]]) -> dict[str, Any]:
    views = [e for e in events if e["event"] == "cluster_view"]
    assert views, "no cluster view"
    return views[-1]


@pytest.mark.parametrize(
    "name", ["26.5.6-node-name-property-kc0.log", "26.5.6-node-name-property-kc1.log"]
)
def test_refused_system_property_is_a_config_cause(name: str) -> None:
    events, _ = analyze_json(FIXTURES / name)
    causes = {e.get("reason") for e in events if e["event"] == "startup_fatal"}
    assert "config" in causes, causes


#: the database causes each failure's real log must show (db_unavailable reasons)
DB_CAUSES: dict[tuple[str, str], frozenset[str]] = {
    ("db-refused", "*"): frozenset({"refused"}),
    ("db-killed-mid-migration", "kc-fail"): frozenset({"unreachable"}),
    ("db-runtime-access-lost", "*"): frozenset({"credentials"}),
    ("db-no-connect-privilege", "*"): frozenset({"rejected"}),
    ("db-role-connection-limit", "*"): frozenset({"rejected"}),
    ("db-too-many-clients", "*"): frozenset({"rejected"}),
}


def db_causes(path: Path) -> frozenset[str] | None:
    match = NAME.match(path.name)
    if not match:
        return None
    scenario, node = match["scenario"], match["node"]
    return DB_CAUSES.get((scenario, node)) or DB_CAUSES.get((scenario, "*"))


@pytest.mark.parametrize(
    "path", [p for p in saved_logs() if db_causes(p) is not None], ids=lambda p: p.stem
)
def test_replay_names_the_database_cause(path: Path) -> None:
    want = db_causes(path)
    assert want is not None
    events, _ = analyze_json(path)
    causes = {e.get("reason") for e in events if e["event"] == "db_unavailable"}
    assert want <= causes, causes


def analyze_exit_code(path: Path) -> int:
    argv = [sys.executable, "-m", "sidecar", "analyze", str(path), "--quiet"]
    return subprocess.run(argv, capture_output=True, check=False, timeout=120).returncode
