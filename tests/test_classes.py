"""Issue 11's classes of records, each tested in general form over every real record of the
class (../shared/corpus and tests/data/corpus) and the variations the class allows: layouts,
levels, before and after startup, wraps.  No test here rests on one copied line."""

from __future__ import annotations

import re
from typing import Any

import pytest
from corpus import load_corpus
from corpus_extra import load_extra, run
from test_classify import DATABASE_RELABELLED
from test_corpus_extra import as_kubectl, as_quarkus_json

SHARED = load_corpus()
EXTRA = load_extra()
EVERY = SHARED + EXTRA
FATAL = {"startup_fatal", "runtime_fatal"}
DOWN_REASONS = {"refused", "timeout", "unreachable", "rejected", "connection_failed"}
#: a real Quarkus start, written before a record to put it after startup (without a time of
#: its own: the record's time is the log's time)
STARTED = ("Keycloak 26.0.7 on JVM (powered by Quarkus 3.15.1) started in 9.145s. Listening on: "
           "http://0.0.0.0:8080")


def kinds(events: list[dict[str, Any]]) -> set[str]:
    return {e["event"] for e in events}


def layouts(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The record as printed, behind ``kubectl logs --timestamps`` and, for the Quarkus era,
    in Keycloak's JSON layout."""
    out = [("as-printed", record["text"])]
    if record["format"] == "plain":
        out.append(("kubectl", as_kubectl(record["text"])))
        rendered = as_quarkus_json(record["text"])
        if rendered is not None and record.get("era") != "wildfly":
            out.append(("json", rendered))
    return out


# --- the database cannot be used: db_unavailable with a reason, never fatal, never a kill ------
DATABASE_DOWN = [r for r in EVERY if r["label"] == "db_unavailable" or r["id"] in DATABASE_RELABELLED]


def _database_cases() -> list[Any]:
    return [pytest.param(text, id=f"{r['id']}-{name}")
            for r in DATABASE_DOWN for name, text in layouts(r)]


@pytest.mark.parametrize("text", _database_cases())
def test_database_unavailable_class_at_startup(text: str) -> None:
    events, verdict = run(text)
    assert "db_unavailable" in kinds(events) and not kinds(events) & FATAL
    reasons = {e["reason"] for e in events if e["event"] == "db_unavailable"}
    assert reasons <= DOWN_REASONS
    assert verdict["live"] is True


def looked_for_after_startup(text: str) -> bool:
    """By design (rules.RUNTIME_ANCHORS_*) the runtime scan skips HHH000342 (the JPA startup
    thread prints it) and database warnings other than Agroal's "Datasource" ones (each comes
    with an ERROR or an Agroal warning)."""
    warning = re.search(r' WARN |"level":"WARN"', text) is not None
    return "HHH000342" not in text and not (warning and "Datasource" not in text)


@pytest.mark.parametrize("text", [c for c in _database_cases() if looked_for_after_startup(
    str(c.values[0]))])
def test_database_unavailable_class_after_startup(text: str) -> None:
    """The same records under a running server: readiness only, never a kill."""
    events, verdict = run(f"{STARTED}\n{text}")
    assert "db_unavailable" in kinds(events) and not kinds(events) & FATAL
    assert verdict["live"] is True and verdict["ready"] is False


def _with_cause(cause: str) -> str:
    handler = ("2022-08-24 13:47:11,508 ERROR [org.keycloak.quarkus.runtime.cli."
               "ExecutionExceptionHandler] (main) ")
    return (f"{handler}ERROR: Failed to start server in (production) mode\n"
            f"{handler}ERROR: Failed to obtain JDBC connection\n{handler}ERROR: {cause}")


@pytest.mark.parametrize(("cause", "event", "reason"), [
    ("No suitable driver found for jdbc:postgresql://db:5432/keycloak", "startup_fatal",
     "db_config"),
    ("FATAL: password authentication failed for user \"keycloak\"", "startup_fatal", "db_config"),
    ("Access denied for user 'keycloak'@'10.0.0.7' (using password: YES)", "startup_fatal",
     "db_config"),
    ("Login failed for user 'keycloak'.", "startup_fatal", "db_config"),
    ("Connection to db:5432 refused. Check that the hostname and port are correct and that the "
     "postmaster is accepting TCP/IP connections.", "db_unavailable", "refused"),
    ("Acquisition timeout while waiting for new connection", "db_unavailable", "timeout"),
    ("The connection attempt failed.", "db_unavailable", "unreachable"),
    ("Communications link failure", "db_unavailable", "unreachable"),
])
def test_wrapped_database_failure_is_told_apart_by_its_cause(cause: str, event: str,
                                                             reason: str) -> None:
    """"Failed to obtain JDBC connection" wraps both a wrong URL/driver and a database that is
    down; the cause chain says which, and only the configuration error is worth a restart."""
    events, verdict = run(_with_cause(cause))
    assert (event, reason) in {(e["event"], e["reason"]) for e in events}
    assert verdict["live"] is (event == "db_unavailable")


# --- JGroups failure detection: cluster_degraded at any level -----------------------------------
SUSPICION = [r for r in EVERY if r["label"] == "cluster_degraded"
             and re.search(r"FD_|VERIFY_SUSPECT", r["text"])]
LEVEL = re.compile(r" (TRACE|DEBUG|INFO |INFO|WARN |WARN|ERROR|FATAL) ")


@pytest.mark.parametrize("level", ["TRACE", "DEBUG", "INFO ", "WARN ", "ERROR"])
@pytest.mark.parametrize("record", SUSPICION, ids=[r["id"] for r in SUSPICION])
def test_failure_detection_class_at_any_level(record: dict[str, Any], level: str) -> None:
    text = LEVEL.sub(f" {level} ", record["text"], count=1)
    events, verdict = run(f"{STARTED}\n{text}")
    degraded = [e for e in events if e["event"] == "cluster_degraded"]
    assert [e["reason"] for e in degraded] == ["peer_suspected"]
    assert verdict["live"] is True


def test_the_failure_detection_class_has_real_records_of_several_protocols() -> None:
    protocols = {m.group() for r in SUSPICION for m in [re.search(r"FD_\w+|VERIFY_SUSPECT\w*",
                                                                  r["text"])] if m}
    assert len(protocols) >= 2, protocols


# --- remote request timeouts: every one an event, readiness after two ----------------------------
TIMEOUTS = [r for r in EVERY if re.search(r"ISPN000(476|427)", r["text"])]


@pytest.mark.parametrize("record", TIMEOUTS, ids=[r["id"] for r in TIMEOUTS])
def test_each_request_timeout_is_an_event_and_two_fail_readiness(record: dict[str, Any]) -> None:
    once = f"{STARTED}\n{record['text']}"
    events, verdict = run(once)
    assert [e["reason"] for e in events if e["event"] == "cluster_degraded"] == [
        "request_timeout"]
    assert verdict["ready"] is True  # one is routine
    events, verdict = run(f"{once}\n{record['text']}")  # the same again, at the same time
    assert [e["event"] for e in events].count("cluster_degraded") == 2
    assert verdict["ready"] is False and verdict["live"] is True


def test_the_timeout_class_has_records_inside_and_outside_request_errors() -> None:
    assert any("Uncaught server error" in r["text"] for r in TIMEOUTS)
    assert any("Uncaught server error" not in r["text"] for r in TIMEOUTS)


# --- fatal starts without "Failed to start server" -----------------------------------------------
HEADERLESS = [r for r in EVERY if r["label"] == "startup_failed_fatal"
              and "Failed to start server" not in r["text"]
              and r["id"] not in DATABASE_RELABELLED]


@pytest.mark.parametrize("record", HEADERLESS, ids=[r["id"] for r in HEADERLESS])
def test_fatal_start_without_the_header_in_every_layout(record: dict[str, Any]) -> None:
    for name, text in layouts(record):
        events, verdict = run(text)
        assert "startup_fatal" in kinds(events), name
        assert all(e.get("reason") for e in events if e["event"] == "startup_fatal"), name
        assert verdict["live"] is False, name


# --- shutdown records of both eras ----------------------------------------------------------------
SHUTDOWN = [r for r in EVERY if r["label"] == "shutdown"]


def test_the_shutdown_class_covers_both_eras() -> None:
    assert {r["era"] for r in SHUTDOWN if "era" in r} >= {"wildfly", "quarkus"}


@pytest.mark.parametrize("record", SHUTDOWN, ids=[r["id"] for r in SHUTDOWN])
def test_shutdown_class_in_every_layout(record: dict[str, Any]) -> None:
    for name, text in layouts(record):
        events, _ = run(text)
        assert "shutdown" in kinds(events) and not kinds(events) & FATAL, name


# --- lines hard-wrapped by a terminal ------------------------------------------------------------
COMPLETIONS = [r for r in EVERY if r["label"] == "startup_complete" and "\n" not in r["text"]
               and r["format"] == "plain"]
STOPS = [r for r in EVERY if r["label"] == "shutdown" and "\n" not in r["text"]
         and re.search(r"stopped in", r["text"])]


def hard_wrap(line: str, width: int) -> str:
    return "\n".join(line[i:i + width] for i in range(0, len(line), width))


def _wrap_cases(records: list[dict[str, Any]]) -> list[Any]:
    cases = []
    for record in records:
        header_end = record["text"].find(") ") + 2
        for width in (64, 80, 100, 120, 132):
            if header_end < width < len(record["text"]):
                cases.append(pytest.param(record["text"], hard_wrap(record["text"], width),
                                          id=f"{record['id']}-{width}"))
    return cases


@pytest.mark.parametrize(("line", "wrapped"), _wrap_cases(COMPLETIONS))
def test_hard_wrapped_completion_still_counts(line: str, wrapped: str) -> None:
    """Read the same as the line before the wrap: completion found, same verdict."""
    events, verdict = run(wrapped)
    assert "startup_complete" in kinds(events)
    assert verdict == run(line)[1]


@pytest.mark.parametrize(("line", "wrapped"), _wrap_cases(STOPS))
def test_hard_wrapped_shutdown_still_counts(line: str, wrapped: str) -> None:
    events, verdict = run(wrapped)
    assert "shutdown" in kinds(events)
    assert verdict == run(line)[1]


def test_a_stack_trace_is_not_read_as_a_wrapped_line() -> None:
    """Unwrapping is for plain text split by a terminal, never for frames or causes."""
    text = ("2024-12-07 17:52:23,717 ERROR [org.acme.Thing] (main) Keycloak 26.0.7 on JVM (pow\n"
            "\tat ered.by(Quarkus.java:1)\n"
            "Caused by: x) started in 9.145s")
    events, verdict = run(text)
    assert "startup_complete" not in kinds(events)
    assert verdict["started"] is False


def test_there_are_enough_real_records_per_class() -> None:
    sizes = {"database": len(DATABASE_DOWN), "suspicion": len(SUSPICION),
             "timeouts": len(TIMEOUTS), "headerless fatal": len(HEADERLESS),
             "shutdown": len(SHUTDOWN), "completions": len(COMPLETIONS)}
    assert min(sizes.values()) >= 2, sizes


@pytest.mark.parametrize("message", [
    "Datasource '<default>': JDBC resources leaked: 3 ResultSet(s) and 0 Statement(s)",
    "Datasource '<default>': Closing connection in incorrect state VALIDATION",
])
def test_harmless_pool_warnings_are_not_database_trouble(message: str) -> None:
    """Agroal warns about more than failed connections: only a cause makes it db_unavailable."""
    events, verdict = run(f"{STARTED}\n2026-03-02 07:00:00,405 WARN  [io.agroal.pool] "
                          f"(agroal-13) {message}")
    assert "db_unavailable" not in kinds(events)
    assert verdict["ready"] is True


@pytest.mark.parametrize(("prop", "option"), [
    ("jboss.node.name", "spi-cache-embedded-default-node-name"),
    ("jboss.site.name", "spi-cache-embedded-default-site-name"),
])
@pytest.mark.parametrize("prefix", [
    "2026-12-06 02:48:17,783 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler]"
    " (main) ",
    "",  # kc.sh's bare line
])
def test_refused_system_property_class_is_a_config_cause(prop: str, option: str,
                                                         prefix: str) -> None:
    """Keycloak refuses a system property it replaced by an option (tests/data/realkc)."""
    events, verdict = run(f"{prefix}ERROR: System property {prop} is in use. Use --{option} "
                          "config option instead")
    assert ("startup_fatal", "config") in {(e["event"], e.get("reason")) for e in events}
    assert verdict["live"] is False
