"""Every entry of the labelled real-line corpus, classified by label (golden-file style)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from corpus import load_corpus
from corpus_extra import load_extra, run

from sidecar.log.classify import parse_view

CORPUS = load_corpus()
#: corpus label -> the event the sidecar must emit for that record
EXPECTED_EVENT = {
    "startup_failed_fatal": "startup_fatal",
    "runtime_fatal": "runtime_fatal",
    "startup_complete": "startup_complete",
    "startup_progress": "startup_progress",
    "shutdown": "shutdown",
    "cluster_view": "cluster_view",
    "cluster_merge": "cluster_view",
    "node_joined": "node_joined",
    "node_left": "node_left",
    "cluster_degraded": "cluster_degraded",
}
ALARMING = {"startup_fatal", "runtime_fatal", "cluster_degraded", "shutdown", "db_unavailable"}
#: Shared-corpus records labelled before issue 11 made the vocabulary honest: each says the
#: database cannot be used (so: a ``db_unavailable`` event, never fatal, never a kill).  The
#: labels in ../shared stay as they are; these ids are read under the new contract.
DATABASE_RELABELLED = {
    "kc-092": "Failed to obtain JDBC connection (the excerpt holds no cause)",
    "kc-093": "Agroal: connection refused at boot",
    "kc-129": "IronJacamar IJ031084: unable to create connection",
    "kc-130": "IronJacamar IJ031084: unable to create connection",
    "kc-133": "IronJacamar IJ031084: unable to create connection",
    "kc-134": "IronJacamar IJ031084: unable to create connection",
    "kc-226": "IronJacamar IJ000470: the datasource was shut down",
    "kc-284": "the changelog lock cannot be released: the connection is gone (IJ031040)",
}



@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_corpus_entry(entry: dict[str, Any]) -> None:
    events, verdict = run(entry["text"])
    kinds = [e["event"] for e in events]
    label = entry["label"]
    if entry["id"] in DATABASE_RELABELLED:
        assert "db_unavailable" in kinds and not {"startup_fatal", "runtime_fatal"} & set(kinds)
        assert verdict["live"] is True
        return
    if label in ("benign_error", "cluster_other"):
        assert not set(kinds) & ALARMING, f"{label} line raised {kinds}"
        assert verdict["live"] is True
        return
    assert EXPECTED_EVENT[label] in kinds, f"{label}: got {kinds}"
    if label in ("startup_failed_fatal", "runtime_fatal"):
        fatal = next(e for e in events if e["event"] == EXPECTED_EVENT[label])
        assert fatal["reason"], "fatal events carry a reason code"
        assert verdict["started"] is False or label == "runtime_fatal"
    if label == "cluster_merge":
        assert next(e for e in events if e["event"] == "cluster_view")["merged"] is True


VIEWS = [e for e in CORPUS if e["label"] == "cluster_view"]


@pytest.mark.parametrize("entry", VIEWS, ids=[e["id"] for e in VIEWS])
def test_corpus_view_is_parsed(entry: dict[str, Any]) -> None:
    view = parse_view(entry["text"])
    assert view is not None
    assert view.view_id == entry["expected_view_id"]
    assert view.coordinator == entry["expected_coordinator"]
    assert view.size == entry["expected_size"]
    assert list(view.members) == entry["expected_members"]
    assert view.channel == entry.get("channel", view.channel) or not view.channel


def test_db_unreachable_at_startup_never_kills() -> None:
    """A database that is down is not Keycloak's fault: ready false, live true."""
    entry = next(e for e in CORPUS if e["id"] == "kc-093")
    events, verdict = run(entry["text"])
    assert [(e["event"], e["reason"]) for e in events] == [("db_unavailable", "refused")]
    assert verdict == {"started": False, "live": True, "ready": False,
                       "reasons": ["not_started", "db_unavailable"]}


def test_fatal_block_reason_is_the_specific_cause() -> None:
    """'Failed to start server' then 'Address already in use': the cause is the port."""
    entry = next(e for e in CORPUS if e["id"] == "kc-096")
    events, verdict = run(entry["text"])
    assert [e["reason"] for e in events] == ["failed_to_start", "port_in_use"]
    assert verdict["live"] is False


def test_wildfly_embedded_preboot_is_not_a_start() -> None:
    """The jboss/keycloak CLI pre-boot logs WFLYSRV0025 for ~60 services, then stops."""
    lines = [
        "16:47:46,656 INFO  [org.jboss.modules] (CLI command executor) JBoss Modules version "
        "2.0.0.Final",
        "16:47:50,510 INFO  [org.jboss.as] (Controller Boot Thread) WFLYSRV0025: Keycloak "
        "16.1.1 (WildFly Core 18.0.4.Final) started in 3455ms - Started 64 of 78 services "
        "(25 services are lazy, passive or on-demand)",
        "16:47:51,100 INFO  [org.jboss.as] (MSC service thread 1-3) WFLYSRV0050: Keycloak "
        "16.1.1 (WildFly Core 18.0.4.Final) stopped in 18ms",
        "16:47:53,001 INFO  [org.jboss.modules] (main) JBoss Modules version 2.0.0.Final",
        "16:47:53,422 INFO  [org.jboss.as] (MSC service thread 1-2) WFLYSRV0049: Keycloak "
        "16.1.1 (WildFly Core 18.0.4.Final) starting",
    ]
    events, verdict = run("\n".join(lines))
    kinds = [(e["event"], e.get("embedded", False)) for e in events]
    assert ("startup_complete", True) in kinds
    assert [k for k, _ in kinds].count("boot") == 2
    assert verdict["started"] is False
    assert verdict["live"] is True


def test_view_printed_several_times_is_one_event() -> None:
    line = ("10:49:20,313 INFO  [org.infinispan.CLUSTER] (MSC service thread 1-{n}) ISPN000094: "
            "Received new cluster view for channel ejb: [febdf24633cd|0] (1) [febdf24633cd]")
    events, _ = run("\n".join(line.format(n=n) for n in range(4, 8)))
    assert [e["event"] for e in events] == ["cluster_view"]


def test_member_names_with_topology_suffix() -> None:
    body = ("ISPN000094: Received new cluster view for channel ISPN: [kc-0-32308(site-id=k8s, "
            "rack-id=keycloak, machine-id=node2)|4] (2) [kc-0-32308(site-id=k8s, rack-id="
            "keycloak, machine-id=node2), kc-1-53028(site-id=k8s, rack-id=keycloak, machine-id="
            "node1)]")
    view = parse_view(body)
    assert view is not None
    assert view.members == ("kc-0-32308(site-id=k8s, rack-id=keycloak, machine-id=node2)",
                            "kc-1-53028(site-id=k8s, rack-id=keycloak, machine-id=node1)")


def test_merged_view_with_subgroups_and_starting_placeholder() -> None:
    body = ("ISPN000093: Received new, MERGED cluster view for channel ISPN: MergeView::"
            "[keycloak-1-10183|5] (3) [keycloak-1-10183, keycloak-0-51234, keycloak-2-9931], "
            "2 subgroups: [keycloak-1-10183|4] (3) [keycloak-1-10183, keycloak-0-51234, "
            "keycloak-2-9931], [(starting)|0] (1) [(starting)]")
    view = parse_view(body)
    assert view is not None
    assert (view.view_id, view.size, view.merged) == (5, 3, True)
    assert view.members[0] == "keycloak-1-10183"


@pytest.mark.parametrize("text", [
    "Failed to create lock table. Maybe other transaction created in the meantime. Retrying...",
    "Waiting for changelog lock....",
])
def test_lock_retries_are_progress_not_fatal(text: str) -> None:
    line = ("2022-11-01 18:22:29,111 WARN  [org.keycloak.connections.jpa.updater.liquibase.lock."
            f"CustomLockService] (main) {text}")
    events, verdict = run(line)
    assert [e["event"] for e in events] == ["startup_progress"]
    assert verdict["live"] is True


def test_jvm_flag_naming_out_of_memory_is_not_an_oom() -> None:
    """The entrypoint echoes JAVA_OPTS at every start; the flag is not an error."""
    events, verdict = run("JAVA_OPTS already set in environment; overriding default settings "
                          "with values: -Xms64m -Xmx512m -XX:+ExitOnOutOfMemoryError")
    assert events == []
    assert verdict["live"] is True


@pytest.mark.parametrize("cause", [
    "ERROR: Connection to postgres-service:5432 refused. Check that the hostname and port are "
    "correct and that the postmaster is accepting TCP/IP connections.",
    "ERROR: Could not connect to address=(host=mariadb)(port=3306)(type=master) : "
    "Socket fail to connect to host:mariadb, port:3306. Connection refused",
])
def test_database_causes_of_a_failed_start_never_kill(cause: str) -> None:
    prefix = ("2025-01-01 10:00:00,000 ERROR [org.keycloak.quarkus.runtime.cli."
              "ExecutionExceptionHandler] (main) ")
    events, verdict = run(f"{prefix}ERROR: Failed to start server in (production) mode\n"
                          f"{prefix}{cause}")
    assert [e["reason"] for e in events] == ["failed_to_start", "refused"]
    assert verdict["live"] is True


def test_a_log_starting_without_timestamps_is_not_a_hung_boot() -> None:
    """The boot's clock starts at the log's first timestamp, wherever that line is."""
    events, verdict = run(
        "Updating the configuration and installing your custom providers, if any. Please wait.\n"
        "2025-12-25 13:24:34,544 INFO  [io.quarkus.deployment.QuarkusAugmentor] (main) Quarkus "
        "augmentation completed in 10898ms\n"
        "2025-12-25 13:24:39,702 WARN  [org.infinispan.PERSISTENCE] (keycloak-cache-init) "
        "ISPN000554: jboss-marshalling is deprecated and planned for removal"
    )
    assert [e["event"] for e in events][:2] == ["boot", "startup_progress"]
    assert "startup_hung" not in verdict["reasons"]
    assert verdict["live"] is True


def test_no_physical_address_at_a_join_is_reported_not_acted_on() -> None:
    """JGRP000032 while a member joins (the real records of keycloak#27470 and
    keycloak-containers#62: the joiner still named by its UUID) is routine: JGroups logs it
    again each time its discovery retries, and retransmits the message.  It is reported as
    ``peer_address_unknown``; the replica stays ready and live (two within a minute used to
    make it unready as ``peer_unreachable``).  The records are the reports' own; only their
    seconds are spread, as the retries spread them."""
    started = ("2024-03-01 19:00:01,000 INFO  [io.quarkus] (main) Keycloak 23.0.6 on JVM "
               "(powered by Quarkus 3.2.10.Final) started in 12.345s. Listening on: "
               "http://0.0.0.0:8080")
    no_address = ("2024-03-01 19:02:{second},811 WARN  [org.jgroups.protocols.TCP] "
                  "(TQ-Bundler-7,ip-10-19-76-51-29754) JGRP000032: ip-10-19-76-51-29754: no "
                  "physical address for a45220e3-ec3c-49a4-a6f8-7f2a9d911615, dropping message")
    view = ("2024-03-01 19:02:37,822 INFO  [org.infinispan.CLUSTER] (jgroups-997,"
            "ip-10-19-76-51-29754) ISPN000094: Received new cluster view for channel ISPN: "
            "[ip-10-19-76-51-29754|34] (3) [ip-10-19-76-51-29754, ip-10-19-76-69-49518, "
            "a45220e3-ec3c-49a4-a6f8-7f2a9d911615]")
    lines = [started, *(no_address.format(second=s) for s in (31, 33, 35)), view]
    events, verdict = run("\n".join(lines))
    degraded = [e for e in events if e["event"] == "cluster_degraded"]
    assert [(e["reason"], e["code"]) for e in degraded] == [
        ("peer_address_unknown", "JGRP000032")] * 3
    assert verdict == {"started": True, "live": True, "ready": True, "reasons": []}


@pytest.mark.parametrize("entry_id", ["cl-020", "cl-021", "cl-024"])
def test_corpus_no_physical_address_records_read_as_address_unknown(entry_id: str) -> None:
    entry = next(e for e in load_extra() if e["id"] == entry_id)
    events, _ = run(entry["text"])
    assert [e.get("reason") for e in events if e["event"] == "cluster_degraded"] == [
        "peer_address_unknown"]


#: the real WildFly completion lines of the shared corpus: id -> the embedded CLI server of the
#: jboss/keycloak entrypoint (its notes say so), not the real start
WILDFLY_STARTED = {"kc-010": True, "kc-265": True, "kc-114": False, "kc-118": False,
                   "kc-122": False, "kc-261": False, "kc-263": False, "kc-264": False}


@pytest.mark.parametrize("entry_id", sorted(WILDFLY_STARTED))
def test_wildfly_started_line_hard_wrapped(entry_id: str) -> None:
    """'Started 55 of 85 services' (Keycloak 8's pre-boot) stays the pre-boot wherever a
    terminal of 80 columns or more wraps it, and a real start stays the real start: wrapped
    inside the count ("... of 8" / "5 services": 150 to 173 columns) the pre-boot used to
    read as the real start."""
    text = next(e for e in CORPUS if e["id"] == entry_id)["text"]
    start = text.index(" started in ")
    end = text.index(" services", start) + len(" services")
    # the widths whose wraps fall into "started in ... Started A of B services", and 80
    widths = [w for w in range(81, end + 1) if any(start < k * w < end for k in (1, 2))]
    wrong = []
    for width in [80, *widths]:
        wrapped = "\n".join(text[i:i + width] for i in range(0, len(text), width))
        events, verdict = run(wrapped)
        started = [e.get("embedded", False) for e in events if e["event"] == "startup_complete"]
        if started != [WILDFLY_STARTED[entry_id]] or verdict["started"] == started[0]:
            wrong.append(width)
    assert wrong == []


def test_glued_console_line_does_not_take_the_records_code() -> None:
    """The jboss/keycloak entrypoint's "The batch failed" is printed under the embedded
    server's WFLYSRV0025 ('started in') line and read with it: the fatal event must not carry
    the 'started' message's code (it did)."""
    story = pathlib.Path(__file__).parent / "data" / "stories"
    text = (story / "wildfly-entrypoint-cli-batch-failed.log").read_text().rstrip("\n")
    events, _ = run(text)
    fatal = next(e for e in events if e["event"] == "startup_fatal")
    assert (fatal["reason"], fatal.get("code", "")) == ("deployment", "")
