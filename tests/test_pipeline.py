"""Framing and time handling of the pipeline, on real lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import load_corpus
from corpus_extra import load_extra

from sidecar.core.events import STARTUP_ONLY_REASONS, EventKind, LogEvent
from sidecar.core.state import MonitorState
from sidecar.log import layout
from sidecar.log.pipeline import Pipeline, runtime_rules
from sidecar.log.rules import (
    RUNTIME_ANCHORS_CSV,
    RUNTIME_ANCHORS_JSON,
    RUNTIME_ANCHORS_PLAIN,
    RUNTIME_ISPN_CODES,
    Rule,
    builtin_rules,
)

LIQUIBASE = (
    "2015-04-02T09:26:37.124344660Z 09:26:37,074 ERROR [org.keycloak.connections.jpa."
    "updater.liquibase.LiquibaseJpaUpdaterProvider] (MSC service thread 1-1) Change Set "
    "META-INF/jpa-changelog-1.1.0.Final.xml::1.1.0.Final::sthorger@redhat.com failed.  "
    "Error: Error executing SQL ALTER TABLE public.EVENT_ENTITY RENAME COLUMN TIME TO "
    'EVENT_TIME: ERROR: column "time" does not exist: liquibase.exception.'
    "DatabaseException: Error executing SQL ALTER TABLE public.EVENT_ENTITY RENAME "
    'COLUMN TIME TO EVENT_TIME: ERROR: column "time" does not exist'
)
VIEW = (
    "2015-04-02T09:26:18.683827888Z 09:26:18,678 INFO  [org.infinispan.remoting.transport."
    "jgroups.JGroupsTransport] (Incoming-1,shared=udp) ISPN000094: Received new cluster "
    "view: [keycloak-controller-559a8/keycloak|1] (2) [keycloak-controller-559a8/keycloak, "
    "keycloak-controller-zorqg/keycloak]"
)
STARTED = (
    "2024-12-07 17:52:23,717 INFO  [io.quarkus] (main) Keycloak 26.0.7 on JVM (powered by "
    "Quarkus 3.15.1) started in 39.709s. Listening on: http://0.0.0.0:8080. Management "
    "interface listening on http://0.0.0.0:9000."
)
UNCAUGHT_OOM = [
    "2024-02-22 09:21:04,177 ERROR [org.keycloak.services.error.KeycloakErrorHandler] "
    "(executor-thread-3191) Uncaught server error: java.lang.RuntimeException: boom",
    "\tat org.keycloak.services.Foo.bar(Foo.java:10)",
    "Caused by: java.lang.OutOfMemoryError: Java heap space",
    "\t... 12 more",
]
INFO = "2024-12-07 17:52:24,001 INFO  [org.hibernate.Foo] (executor-thread-1) nothing to see"


def pipeline() -> tuple[Pipeline, MonitorState]:
    state = MonitorState(0.0)
    return Pipeline(builtin_rules(), state), state


def feed_all(lines: list[str], *, split_at: int | None = None) -> list[LogEvent]:
    pipe, _ = pipeline()
    data = ("\n".join(lines) + "\n").encode()
    chunks = [data] if split_at is None else [data[:split_at], data[split_at:]]
    events: list[LogEvent] = []
    for chunk in chunks:
        events += pipe.feed(chunk, 1.0)
    return events + pipe.flush(1.0)


def test_the_two_story_lines() -> None:
    events = feed_all([VIEW, LIQUIBASE])
    assert [(e.kind, e.line) for e in events] == [
        (EventKind.CLUSTER_VIEW, 1),
        (EventKind.STARTUP_FATAL, 2),
    ]
    assert events[1].reason == "liquibase"
    assert events[0].view is not None and events[0].view.size == 2


def test_cause_in_a_continuation_line_joins_its_record() -> None:
    """The OutOfMemoryError sits in a 'Caused by:' line; the record starts at the header."""
    events = feed_all([STARTED, *UNCAUGHT_OOM, INFO])
    runtime = [e for e in events if e.kind is EventKind.RUNTIME_FATAL]
    assert len(runtime) == 1 and runtime[0].line == 2


@pytest.mark.parametrize("cut", [10, 200, 260, 300])
def test_a_record_split_across_reads_is_classified_once(cut: int) -> None:
    events = feed_all([STARTED, *UNCAUGHT_OOM, INFO], split_at=len(STARTED) + cut)
    assert [e.kind for e in events].count(EventKind.RUNTIME_FATAL) == 1


def test_last_record_waits_for_flush() -> None:
    pipe, _ = pipeline()
    assert pipe.feed((LIQUIBASE + "\n").encode(), 1.0) == []
    assert pipe.has_pending
    assert [e.kind for e in pipe.flush(1.0)] == [EventKind.STARTUP_FATAL]


def test_line_numbers_count_every_line() -> None:
    lines = [INFO] * 1000 + [LIQUIBASE] + [INFO] * 10
    events = feed_all(lines, split_at=50_000)
    assert [e.line for e in events] == [1001]


def test_runtime_mode_still_sees_runtime_events_after_start() -> None:
    lines = [STARTED, *[INFO] * 5000, VIEW, *[INFO] * 5, *UNCAUGHT_OOM]
    events = feed_all(lines)
    assert [e.kind for e in events] == [
        EventKind.BOOT,  # Quarkus' 'started' line names the boot (printed once per boot)
        EventKind.STARTUP_COMPLETE,
        EventKind.CLUSTER_VIEW,
        EventKind.RUNTIME_FATAL,
    ]


#: what a real Keycloak 26.5.6 printed when its heap ran out (tests/realkc): kc.sh's default
#: -XX:+ExitOnOutOfMemoryError on the console; with it overridden, uncaught errors of
#: threads without a handler on the console, and Netty's WARN in the log file
REAL_OOM_LINES = [
    "Terminating due to java.lang.OutOfMemoryError: Java heap space",
    'Exception in thread "Timer runner-2,vm-4471" java.lang.OutOfMemoryError: Java heap space',
    "Exception: java.lang.OutOfMemoryError thrown from the UncaughtExceptionHandler in thread "
    '"vertx-blocked-thread-checker"',
    "2026-12-06 06:18:23,376 WARN  [io.netty.channel.AbstractChannelHandlerContext] "
    "(vert.x-eventloop-thread-0) An exception 'java.lang.OutOfMemoryError: Java heap space' "
    "[enable DEBUG level for full stacktrace] was thrown by a user handler's exceptionCaught() "
    "method while handling the following exception:: java.lang.OutOfMemoryError: Java heap space",
]


@pytest.mark.parametrize("line", REAL_OOM_LINES, ids=["exit", "thread", "handler", "netty-warn"])
def test_runtime_scan_finds_an_out_of_memory_line_at_any_level(line: str) -> None:
    """After startup only the anchors are scanned: an OutOfMemoryError without ERROR/FATAL
    (a bare console line, a WARN) must still be found."""
    events = feed_all([STARTED, *[INFO] * 50, line, INFO])
    fatal = [e for e in events if e.kind is EventKind.RUNTIME_FATAL]
    assert [e.reason for e in fatal] == ["out_of_memory"]


def test_broken_bytes_never_crash() -> None:
    pipe, _ = pipeline()
    junk = b"\xff\xfe\x00ISPN\x00\x80 ERROR [x] (y) \xc3\x28 Failed to start server\n"
    events = pipe.feed(junk * 3 + (LIQUIBASE + "\n").encode(), 1.0) + pipe.flush(1.0)
    assert EventKind.STARTUP_FATAL in [e.kind for e in events]


def test_log_time_mode_uses_the_log_timestamps() -> None:
    pipe, state = pipeline()
    pipe.feed(f"{STARTED}\n{INFO}\n".encode())
    pipe.flush()
    assert state.boot.complete_at == pytest.approx(1733593943.717)


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
        text=stdin is None,
    )


def test_analyze_json_on_the_context_story(tmp_path: Path) -> None:
    log = tmp_path / "kc.log"
    log.write_text(f"{VIEW}\n{LIQUIBASE}\n")
    result = run_cli("analyze", str(log), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0] == {
        "line": 1,
        "event": "cluster_view",
        "code": "ISPN000094",
        "view_id": 1,
        "coordinator": "keycloak-controller-559a8/keycloak",
        "members": ["keycloak-controller-559a8/keycloak", "keycloak-controller-zorqg/keycloak"],
        "size": 2,
        "merged": False,
        "timestamp": rows[0]["timestamp"],
    }
    assert rows[1]["event"] == "startup_fatal" and rows[1]["reason"] == "liquibase"
    assert rows[-1] == {
        "verdict": {
            "started": False,
            "live": False,
            "ready": False,
            "reasons": ["startup_fatal", "not_started"],
        },
        "lines_truncated": 0,
        "records_truncated": 0,
    }
    assert "column" not in result.stdout  # no raw log text


INVALID_OPTION = Path(__file__).parent / "data" / "realkc" / "26.5.6-invalid-option-kc-invalid-option.log"


def test_analyze_console_lines_claim_no_time() -> None:
    """Real Keycloak 26.5.6 refusing an option: kc.sh's console lines carry no time, and the
    event claims none (it said 0.0, 1970)."""
    result = run_cli("analyze", str(INVALID_OPTION), "--json")
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout.splitlines()[0])
    assert "timestamp" not in event
    assert (event["event"], event["reason"]) == ("startup_fatal", "config")


def test_analyze_console_line_event_is_on_its_own_line() -> None:
    """The same log: two lines of the entrypoint's chatter, then "Unknown option" on line 3.
    Headerless console lines are lines of their own: the event is on line 3 (it said 1, the
    first line of the file, as if the chatter and the error were one record)."""
    assert INVALID_OPTION.read_text().splitlines()[2].startswith("Unknown option")
    result = run_cli("analyze", str(INVALID_OPTION), "--json")
    assert json.loads(result.stdout.splitlines()[0])["line"] == 3


@pytest.mark.parametrize("mode", ["--json", "--quiet", "--timeline"])
def test_analyze_into_a_closed_pipe_ends_quietly(mode: str) -> None:
    """``analyze ... | head -1``: when the reader has gone, analyze stops like a tool killed
    by SIGPIPE (141) with nothing on stderr; it printed a BrokenPipeError traceback."""
    args = [sys.executable, "-m", "sidecar", "analyze", str(INVALID_OPTION)]
    child = subprocess.Popen(
        [*args, *([mode] if mode != "--timeline" else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.close()  # before the interpreter has started: its first write fails
    _, stderr = child.communicate(timeout=60)
    assert (child.returncode, stderr.decode()) == (141, "")


def test_analyze_timeline_is_readable(tmp_path: Path) -> None:
    log = tmp_path / "kc.log"
    log.write_text(f"{STARTED}\n")
    result = run_cli("analyze", str(log))
    assert result.returncode == 0
    assert "startup_complete" in result.stdout and "started=yes" in result.stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.log", "no such file"),
        (lambda p: p, "is a directory"),
        (
            lambda p: (p / "x.gz").write_bytes(b"\x1f\x8b\x08\x00" * 100) and p / "x.gz",
            "compressed",
        ),
    ],
)
def test_analyze_unusable_input_exits_2(tmp_path: Path, make: object, message: str) -> None:
    target = make(tmp_path)  # type: ignore[operator]
    result = run_cli("analyze", str(target))
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        "\n".join(f'127.0.0.1 - - [06/Dec/2026:02:{i % 60:02d}:00 +0000] "GET /x HTTP/1.1" 200 5'
                  for i in range(300)),
        "\n".join(f"Dec  6 02:{i % 60:02d}:00 host sshd[42]: Accepted publickey for root"
                  for i in range(300)),
        bytes(range(32, 256)).decode("latin-1") * 20,
    ],
    ids=["nginx-access-log", "syslog", "random-text"],
)
def test_analyze_says_when_nothing_is_keycloak(tmp_path: Path, content: str) -> None:
    log = tmp_path / "other.log"
    log.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = run_cli("analyze", str(log))
    assert result.returncode == 2
    lines = content.count("\n") + 1
    assert f"no Keycloak records recognised in {lines} lines" in result.stderr


def test_analyze_random_bytes_exit_2(tmp_path: Path) -> None:
    import random

    log = tmp_path / "noise.bin"
    log.write_bytes(random.Random(11).randbytes(200_000))
    result = run_cli("analyze", str(log), "--quiet")
    assert result.returncode == 2
    assert "binary" in result.stderr or "no Keycloak records recognised" in result.stderr


def test_analyze_keycloak_log_without_events_is_recognised(tmp_path: Path) -> None:
    log = tmp_path / "kc.log"
    log.write_text(f"{INFO}\n" * 3)
    result = run_cli("analyze", str(log), "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["lines"] == 3


def test_analyze_reports_truncated_lines_and_records(tmp_path: Path) -> None:
    log = tmp_path / "kc.log"
    frames = "\n".join(["\tat a.B.c(B.java:1)"] * 20)
    text = f"{INFO} {'x' * 300}\n{LIQUIBASE}\n{frames}\n"
    log.write_text(text)
    long_lines = sum(len(line.encode()) > 200 for line in text.splitlines())
    limits = ("--log-max-line-bytes", "200", "--log-max-record-lines", "5")
    result = run_cli(*limits, "analyze", str(log), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["lines_truncated"], summary["records_truncated"]) == (long_lines, 1)
    readable = run_cli(*limits, "analyze", str(log))
    assert f"{long_lines} lines cut to the maximum line length, 1 records" in readable.stdout


def test_timeline_prints_a_verdict_change_under_its_record(tmp_path: Path) -> None:
    """Records read in one chunk: each verdict change follows the record that caused it."""
    log = tmp_path / "kc.log"
    log.write_text(f"{VIEW}\n{INFO}\n{LIQUIBASE}\n")
    result = run_cli("analyze", str(log))
    lines = result.stdout.splitlines()
    view = next(i for i, line in enumerate(lines) if "cluster_view" in line)
    fatal = next(i for i, line in enumerate(lines) if "startup_fatal" in line)
    assert "live=yes" in lines[view + 1]
    assert "live=no" in lines[fatal + 1]


def test_analyze_reads_stdin() -> None:
    result = run_cli("analyze", "-", "--quiet", stdin=f"{STARTED}\n".encode())
    summary = json.loads(result.stdout)
    assert summary["verdict"]["started"] is True and summary["lines"] == 1


def test_user_rules_file_is_validated_with_all_errors(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {"id": "a", "event": "nonsense", "contains": "x"},
                    {"id": "b", "event": "startup_fatal", "pattern": "(a|b)", "reason": "config"},
                ]
            }
        )
    )
    result = run_cli("--check-config", "--rules-file", str(rules))
    assert result.returncode == 2
    assert "'event' must be one of" in result.stderr and "needs 'contains'" in result.stderr


def test_user_rule_classifies(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            [
                {
                    "id": "vault",
                    "event": "startup_fatal",
                    "reason": "config",
                    "pattern": r"Vault sealed: \w+",
                }
            ]
        )
    )
    log = tmp_path / "kc.log"
    log.write_text("2024-01-01 10:00:00,000 ERROR [org.acme.Vault] (main) Vault sealed: yes\n")
    result = run_cli("analyze", str(log), "--json", "--rules-file", str(rules))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["event"] == "startup_fatal" and rows[0]["reason"] == "config"


def test_exported_message_lines_stay_separate_records() -> None:
    """A log export of timestamped message-only lines must not collapse into one record."""
    lines = [
        "2026-02-12T15:46:45.806Z\t Reloading JGroups Certificate",
        "2026-02-12T15:47:00.604Z\tISPN000476: Timed out waiting for responses for request 1 "
        "from keycloak-k1-2-59615 after 14.25 seconds",
        "2026-02-12T15:47:01.604Z\tISPN000094: Received new cluster view for channel ISPN: "
        "[keycloak-k1-0-1|7] (1) [keycloak-k1-0-1]",
        "2026-02-12T15:47:02.604Z\tat org.infinispan.Foo.bar(Foo.java:1)",
    ]
    events = feed_all(lines)
    assert [(e.kind, e.line) for e in events] == [
        (EventKind.CLUSTER_DEGRADED, 2),
        (EventKind.CLUSTER_VIEW, 3),
    ]


def test_kibana_csv_export() -> None:
    lines = [
        '"Oct 9, 2025 @ 17:06:39.736",INFO,"ISPN000093: Received new, MERGED cluster view for '
        "channel ISPN: MergeView::[kc-1-10183|5] (2) [kc-1-10183, kc-0-2], 2 subgroups: "
        '[kc-1-10183|4] (1) [kc-1-10183], [kc-0-2|1] (1) [kc-0-2]","kc-1","org.infinispan.CLUSTER"',
        '"Oct 9, 2025 @ 17:06:40.001",INFO,"ISPN100000: Node kc-0-2 joined the cluster","kc-1",'
        '"org.infinispan.CLUSTER"',
    ]
    events = feed_all(lines)
    assert [e.kind for e in events] == [EventKind.CLUSTER_VIEW, EventKind.NODE_JOINED]
    assert events[0].view is not None and events[0].view.merged
    assert events[1].node == "kc-0-2"


# --- the runtime pre-filter: its anchors must find every record a runtime rule matches ---------
Applied = tuple[str, str, str, int]  # kind, rule, reason, line


class FixedScanSink:
    """Collects what the pipeline applies; the scan mode stays as given."""

    def __init__(self, boot_scan: bool) -> None:
        self.boot_scan = boot_scan
        self.applied: list[Applied] = []

    def apply(self, event: LogEvent, now: float) -> list[LogEvent]:
        self.applied.append((event.kind.value, event.rule, event.reason, event.line))
        return [event]

    def wants_boot_scan(self) -> bool:
        return self.boot_scan

    def log_time_started(self, stamp: float) -> None:
        del stamp


def as_quarkus_json(text: str) -> str | None:
    """A corpus record re-written in Keycloak's JSON layout (None without a level)."""
    first, *rest = text.split("\n")
    header = layout.parse_header(first)
    if header.layout != "plain" or not header.level:
        return None
    message = "\n".join([header.message, *(layout.continuation_text(line) for line in rest)])
    fields = {
        "timestamp": "2026-03-02T07:00:00.001Z",
        "sequence": 12,
        "loggerClassName": "org.jboss.logging.Logger",
        "loggerName": header.category,
        "level": header.level,
        "message": message,
        "threadName": header.thread,
        "mdc": {},
    }
    return json.dumps(fields, separators=(",", ":"))


def as_kibana_csv(text: str) -> str | None:
    """A one-line corpus record as a row of a Kibana CSV export (None otherwise: the lines of
    a multi-line message would read as records of their own)."""
    header = layout.parse_header(text)
    if "\n" in text or header.layout != "plain" or not header.level:
        return None
    quoted = header.message.replace('"', '""')
    return f'"Oct 9, 2025 @ 17:06:39.736",{header.level},"{quoted}","kc-1","{header.category}"'


def scanned(text: str, rules: tuple[Rule, ...], *, boot_scan: bool) -> list[Applied]:
    sink = FixedScanSink(boot_scan)
    pipe = Pipeline(rules, sink)
    pipe.feed((text + "\n").encode(), 1.0)
    pipe.flush(1.0)
    return sink.applied


def matters_after_start(applied: Applied, text: str) -> bool:
    """What the runtime scan must see.  By design it does not look for: another boot's
    progress and start lines (a new boot shows as ISPN000078/79, the API restart count or
    the HTTP target coming back), the steps of a shutdown other than ISPN000080 and the
    server's own "stopped in", records only a starting server prints, records that come with
    another record it finds, and causes that only matter at startup
    (events.STARTUP_ONLY_REASONS)."""
    kind, rule, reason, _ = applied
    if kind == "shutdown":
        return rule in _RUNTIME_SHUTDOWN_RULES
    skipped = (
        kind in ("startup_progress", "startup_complete")
        or rule in _STARTUP_ONLY_RULES
        or "HHH000342" in text  # printed only by the JPA startup thread
        or _comes_with_another(kind, rule, text)
        or (kind == "startup_fatal" and reason in {*STARTUP_ONLY_REASONS, "jvm"})
        # a WildFly-era code: JSON (and its Kibana export) is Quarkus-era
        or (rule == "db-ironjacamar-create" and text.startswith(("{", '"')))
    )
    # corpus entries whose author cut the Infinispan code out ("... Node x joined"); the
    # real lines always carry it (ISPN000093/94, ISPN100000/1)
    cut = rule in ("view", "joined", "left") and not re.search(r"ISPN\d{6}", text)
    return not (skipped or cut)


def _comes_with_another(kind: str, rule: str, text: str) -> bool:
    """Hibernate's SQLState warning (an ERROR with the cause follows) and database warnings
    other than Agroal's own "Datasource" ones (each comes with an ERROR or an Agroal warning)."""
    warning = re.search(r' WARN |"level":"WARN"', text) is not None
    return rule in _PAIRED_RULES or (kind == "db_unavailable" and warning
                                     and "Datasource" not in text)


#: the shutdown lines the runtime scan looks for: the server's own "stopped", a signal, the
#: cluster channel closing (WildFly subsystems stopping one by one are not needed)
_RUNTIME_SHUTDOWN_RULES = frozenset({"jgroups-disconnect", "quarkus-stopped", "quarkus-stopped-line"})
#: rules for records that only a starting server prints: joining the cluster, the
#: build-time check of the datasource, kc.sh's last words
_STARTUP_ONLY_RULES = frozenset({"join-timeout", "db-driver-build-time", "cli-verbose-hint"})
#: rules whose records come with another one the runtime scan finds: Hibernate's SQLState
#: warning (an ERROR with the cause follows)
_PAIRED_RULES = frozenset({"db-sqlstate-connection"})
CORPUS_TEXTS = [e["text"] for e in load_corpus()] + [e["text"] for e in load_extra()]
JSON_TEXTS = [j for j in map(as_quarkus_json, CORPUS_TEXTS) if j is not None]
CSV_TEXTS = [c for c in map(as_kibana_csv, CORPUS_TEXTS) if c is not None]


@pytest.mark.parametrize("text", CORPUS_TEXTS + JSON_TEXTS + CSV_TEXTS)
def test_runtime_anchors_find_every_record_that_matters_after_start(text: str) -> None:
    """After startup only a few anchors are scanned; they must lose nothing (plain, JSON and
    Kibana CSV)."""
    everything = builtin_rules()
    full_scan = scanned(text, runtime_rules(everything), boot_scan=True)
    expected = [a for a in full_scan if matters_after_start(a, text)]
    got = [a for a in scanned(text, everything, boot_scan=False) if matters_after_start(a, text)]
    assert got == expected


def test_every_runtime_infinispan_code_has_an_anchor() -> None:
    for anchors in (RUNTIME_ANCHORS_PLAIN, RUNTIME_ANCHORS_JSON, RUNTIME_ANCHORS_CSV):
        for code in RUNTIME_ISPN_CODES:
            assert any((b"ISPN" + code).startswith(a) for a in anchors), code


def test_the_json_variant_of_the_corpus_is_substantial() -> None:
    assert len(JSON_TEXTS) > 100
    found = [scanned(t, builtin_rules(), boot_scan=False) for t in JSON_TEXTS]
    assert sum(1 for applied in found if applied) > 40  # the runtime scan finds JSON events
