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


@dataclass(frozen=True)
class Expected:
    live: bool
    started: bool
    reasons: frozenset[str] = frozenset()  # all of these in the final verdict's reasons
    fatal_causes: frozenset[str] = frozenset()  # all of these among the startup_fatal events
    no_fatal: bool = False  # no startup_fatal / runtime_fatal event at all
    runtime_causes: frozenset[str] = frozenset()  # all of these among the runtime_fatal events
    last_view_size: int | None = None


OK_NO_FATAL = {"live": True, "started": True, "no_fatal": True}
EXPECTED: dict[tuple[str, str], Expected] = {
    # both nodes at once on an empty database: both end started in a view of two
    ("story", "kc0"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    ("story", "kc1"): Expected(**OK_NO_FATAL, last_view_size=2),  # type: ignore[arg-type]
    # a node that lost that race (relation "databasechangelog" already exists) and exited
    ("story-race-lost", "*"): Expected(
        live=False,
        started=False,
        reasons=frozenset({"startup_fatal"}),
        fatal_causes=frozenset({"liquibase"}),
    ),
    ("schema-conflict", "*"): Expected(
        live=False,
        started=False,
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
    ("stalled-db-frozen", "*"): Expected(live=True, started=False, no_fatal=True),
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


def saved_logs() -> list[Path]:
    return sorted(FIXTURES.glob("*.log"))


def expectation(path: Path) -> Expected:
    match = NAME.match(path.name)
    assert match, f"fixture name not <version>-<scenario>-<node>.log: {path.name}"
    scenario, node = match["scenario"], match["node"]
    found = EXPECTED.get((scenario, node)) or EXPECTED.get((scenario, "*"))
    assert found is not None, f"no expectation for {path.name}: add one to EXPECTED"
    return found


def test_fixtures_exist() -> None:
    """The replay below is not vacuous: real logs are committed for every scenario."""
    scenarios = {m["scenario"] for p in saved_logs() if (m := NAME.match(p.name))}
    assert {"story", "schema-conflict", "port-taken", "invalid-option", "partition"} <= scenarios
    assert {"oom-survive", "oom-exit"} <= scenarios


@pytest.mark.parametrize("path", saved_logs(), ids=lambda p: p.stem)
def test_replay_concludes_what_the_live_run_did(path: Path) -> None:
    want = expectation(path)
    events, verdict = analyze_json(path)
    assert verdict["live"] is want.live, verdict
    assert verdict["started"] is want.started, verdict
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
