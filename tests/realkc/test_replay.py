"""Replay what real Keycloak printed in each scenario through ``analyze --json`` (no Java).

The logs in ``tests/data/realkc/`` were written by real Keycloak servers in the scenarios of
``test_realkc.py`` (``REALKC_SAVE_FIXTURES=1``); their names are
``<keycloak version>-<scenario>-<node>.log``.  Each is judged against what that scenario
established on the live server.  Every saved log must have an expectation here, so a new
fixture cannot go unjudged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realkc_cluster import FIXTURES, analyze_json

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
    last_view_size: int | None = None


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
    # kc1 stopped, restarted, SIGKILLed: kc0 alone in the end, kc1's last boot started
    ("stop-and-kill", "kc0"): Expected(**OK_NO_FATAL, last_view_size=1),  # type: ignore[arg-type]
    ("stop-and-kill", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
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


@pytest.mark.parametrize("path", saved_logs(), ids=lambda p: p.stem)
def test_replay_concludes_what_the_live_run_did(path: Path) -> None:
    want = expectation(path)
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
