"""Classification rules as data: a built-in table plus an optional user rules file.

A rule says: a record whose text contains ``contains`` (the substring pre-filter, checked
before any regex), at one of ``levels``, from a category containing ``category``, and matching
``pattern`` means ``event`` with ``reason``.  The first matching rule wins; the event
``ignore`` marks known-harmless lines.  Rules are validated at start-up with clear errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sidecar.core.events import ALL_REASONS, EventKind

IGNORE = "ignore"
#: ``fatal`` = ``startup_fatal`` before startup completed, ``runtime_fatal`` after.
EVENT_NAMES = frozenset({k.value for k in EventKind} | {IGNORE})
LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", ""})
_BAD = frozenset({"ERROR", "FATAL", ""})
_MIN_NEEDLE = 3


class RuleError(ValueError):
    """The rules are invalid; ``problems`` lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid rules:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled classification rule."""

    id: str
    event: str
    contains: str
    reason: str = ""
    pattern: re.Pattern[str] | None = None
    levels: frozenset[str] | None = None
    category: str = ""
    #: the record belongs only to a server boot (helps to see a new boot begin)
    boot_marker: bool = False
    #: printed once per boot: seeing it again means a new boot
    once_per_boot: bool = False
    #: parse an Infinispan view from the record
    view: bool = False
    #: "built-in" or the rules file the rule came from
    origin: str = "built-in"

    def matches(self, body: str, level: str, category: str) -> re.Match[str] | bool:
        if self.contains not in body:
            return False
        if self.levels is not None and level not in self.levels:
            return False
        if self.category and self.category not in category:
            return False
        if self.pattern is None:
            return True
        return self.pattern.search(body) or False


# (id, event, contains, extra fields).  Order matters: first match wins.
_F = "startup_fatal"
_P = "startup_progress"
_BUILTIN: tuple[tuple[str, str, str, dict[str, object]], ...] = (
    # --- runtime fatal first: an OutOfMemoryError anywhere is fatal
    # "java.lang.OutOfMemoryError" / "OutOfMemoryError: Metaspace", not the JVM flag
    # "-XX:+ExitOnOutOfMemoryError" echoed at every start
    (
        "oom",
        "runtime_fatal",
        "OutOfMemoryError",
        {
            "reason": "out_of_memory",
            "pattern": r"java\.lang\.OutOfMemoryError|(?<![+\w])OutOfMemoryError:",
        },
    ),
    ("jvm-crash", _F, "A fatal error has been detected by the Java Runtime", {"reason": "jvm"}),
    # --- known harmless lines that would otherwise look alarming
    ("event-logger", IGNORE, "", {"category": "org.keycloak.events"}),
    ("admin-user-exists", IGNORE, "KC-SERVICES0010", {}),
    ("add-user-failed", IGNORE, "KC-SERVICES0011", {}),
    ("failed-authentication", IGNORE, "KC-SERVICES0013", {}),
    ("internal-spi", IGNORE, "KC-SERVICES0047", {}),
    ("request-error", IGNORE, "Uncaught server error", {}),
    ("error-page", IGNORE, "Failed to create error page", {}),
    (
        "scheduled-task-lock",
        IGNORE,
        "PessimisticLockException",
        {"pattern": r"(?s)ScheduledTask|Scheduled"},
    ),
    ("broker-token", IGNORE, "Invalid token", {"category": "IdentityBrokerService"}),
    ("arjuna-reaper", IGNORE, "ARJUNA0121", {}),
    ("factory-shut-down", _F, "IJ000470", {"reason": "failed_to_start"}),
    ("sql-helper", IGNORE, "", {"category": "SqlExceptionHelper"}),
    ("jdbc-ping-fetch", IGNORE, "Failed to fetch the cluster members", {}),
    ("lock-table-retry", _P, "Failed to create lock table", {"pattern": r"Retrying"}),
    # --- startup fatal, most specific cause first
    (
        "liquibase-changeset",
        _F,
        "failed",
        {
            "reason": "liquibase",
            "levels": _BAD,
            "pattern": r"(?i)change ?set .*failed|liquibase\.exception",
        },
    ),
    ("liquibase-update", _F, "Failed to update database", {"reason": "liquibase"}),
    (
        "liquibase-exception",
        _F,
        "encountered an exception",
        {"reason": "liquibase", "category": "liquibase"},
    ),
    (
        "changelog-lock",
        _F,
        "change log lock",
        {"reason": "db_lock", "levels": _BAD, "pattern": r"(?i)could not acquire change log lock"},
    ),
    ("release-lock", _F, "during release lock", {"reason": "db_lock", "levels": _BAD}),
    (
        "lock-table-exists",
        _F,
        "databasechangeloglock",
        {"reason": "db_lock", "levels": _BAD, "pattern": r"(?i)already exists"},
    ),
    (
        "port-in-use",
        _F,
        "already in use",
        {
            "reason": "port_in_use",
            "levels": _BAD,
            "pattern": r"(?i)address already in use|port\(s\) already in use",
        },
    ),
    ("tls-key-material", _F, "Key material not provided", {"reason": "tls"}),
    (
        "tls-keystore",
        _F,
        "keystore",
        {
            "reason": "tls",
            "levels": _BAD,
            "pattern": r"(?i)(invalid|failed to load|unable to load|cannot load).{0,40}keystore",
        },
    ),
    ("config-hostname", _F, "Strict hostname resolution", {"reason": "config"}),
    ("config-hostname-v2", _F, "hostname is not configured", {"reason": "config", "levels": _BAD}),
    (
        "config-jdbc-driver",
        _F,
        "Unable to find the JDBC driver",
        {"reason": "config", "levels": _BAD},
    ),
    ("config-errors", _F, "configuration errors", {"reason": "config", "levels": _BAD}),
    ("config-exception", _F, "ConfigurationException", {"reason": "config", "levels": _BAD}),
    ("config-provider", _F, "Failed to find provider", {"reason": "config", "levels": _BAD}),
    ("config-option", _F, "Unknown option", {"reason": "config", "levels": _BAD}),
    ("config-invalid-value", _F, "Invalid value for option", {"reason": "config", "levels": _BAD}),
    ("wildfly-driver", _F, "WFLYJCA0041", {"reason": "config"}),
    ("cache-start", _F, "Failed to start caches", {"reason": "cache"}),
    ("cache-protocol", _F, "ISPN000217", {"reason": "cache", "levels": _BAD}),
    ("cache-init", _F, "ISPN000541", {"reason": "cache", "levels": _BAD}),
    (
        "db-jdbc",
        _F,
        "JDBC",
        {
            "reason": "db_unreachable",
            "levels": _BAD,
            "pattern": r"(?i)(failed to obtain|unable to acquire|could not open) JDBC connection",
        },
    ),
    ("db-acquisition", _F, "Acquisition timeout", {"reason": "db_unreachable"}),
    (
        "db-agroal-refused",
        _F,
        "Datasource",
        {
            "reason": "db_unreachable",
            "pattern": r"Connection to \S+ refused|Connection refused|Connection attempt failed",
        },
    ),
    ("db-ironjacamar", _F, "IJ031084", {"reason": "db_unreachable"}),
    (
        "db-postgres-refused",
        _F,
        "refused",
        {"reason": "db_unreachable", "levels": _BAD, "pattern": r"Connection to \S+ refused"},
    ),
    (
        "db-mariadb-connect",
        _F,
        "Could not connect to",
        {
            "reason": "db_unreachable",
            "levels": _BAD,
            "pattern": r"Could not connect to (?:address=|\S+:\d+)",
        },
    ),
    (
        "db-oracle-adapter",
        _F,
        "could not establish the connection",
        {"reason": "db_unreachable", "levels": _BAD},
    ),
    (
        "db-mssql-tcp",
        _F,
        "TCP/IP connection to the host",
        {"reason": "db_unreachable", "levels": _BAD},
    ),
    (
        "db-link-failure",
        _F,
        "Communications link failure",
        {"reason": "db_unreachable", "levels": _BAD},
    ),
    (
        "db-password",
        _F,
        "password authentication failed",
        {"reason": "db_unreachable", "levels": _BAD},
    ),
    (
        "db-connect-attempt",
        _F,
        "connection attempt failed",
        {"reason": "db_unreachable", "levels": _BAD},
    ),
    ("liquibase-mention", _F, "iquibase", {"reason": "liquibase", "levels": _BAD}),
    ("wildfly-deployment", _F, "MSC000001", {"reason": "deployment"}),
    ("wildfly-started-errors", _F, "WFLYSRV0026", {"reason": "deployment"}),
    (
        "wildfly-operation",
        _F,
        "WFLYCTL0",
        {"reason": "deployment", "levels": _BAD, "pattern": r"WFLYCTL0(013|190|412|180|459)"},
    ),
    ("jvm-glibc", _F, "Fatal glibc error", {"reason": "jvm"}),
    ("jvm-memory", _F, "insufficient memory for the Java Runtime", {"reason": "jvm"}),
    ("jvm-thread", _F, "pthread_create failed", {"reason": "jvm"}),
    ("jvm-create", _F, "Could not create the Java Virtual Machine", {"reason": "jvm"}),
    ("jvm-init", _F, "Error occurred during initialization of VM", {"reason": "jvm"}),
    ("build-failed", _F, "Failed to run 'build'", {"reason": "build"}),
    ("usage", _F, "kc.sh [OPTIONS]", {"reason": "usage"}),
    (
        "failed-to-start",
        _F,
        "Failed to start server",
        {"reason": "failed_to_start", "levels": _BAD},
    ),
    (
        "error-during-startup",
        _F,
        "Error during startup",
        {"reason": "failed_to_start", "levels": _BAD},
    ),
    (
        "shutdown-task-failed",
        _F,
        "Running a shutdown task failed",
        {"reason": "failed_to_start", "levels": _BAD},
    ),
    (
        "management-interface",
        _F,
        "Unable to start the management interface",
        {"reason": "failed_to_start", "levels": _BAD},
    ),
    (
        "http-server",
        _F,
        "Unable to start HTTP server",
        {"reason": "failed_to_start", "levels": _BAD},
    ),
    # --- cluster
    (
        "view",
        "cluster_view",
        "cluster view",
        {"view": True, "pattern": r"Received new(?:, MERGED)? cluster view"},
    ),
    (
        "joined",
        "node_joined",
        "joined the cluster",
        {"pattern": r"Node (?P<node>.+?) joined the cluster"},
    ),
    ("left", "node_left", "left the cluster", {"pattern": r"Node (?P<node>.+?) left the cluster"}),
    ("split-brain", "cluster_degraded", "ISPN000314", {"reason": "split_brain"}),
    ("split-brain-jdbc", "cluster_degraded", "Split-brain detected", {"reason": "split_brain"}),
    ("remote-timeout", "cluster_degraded", "ISPN000476", {"reason": "request_timeout"}),
    ("state-transfer", "cluster_degraded", "ISPN000210", {"reason": "state_transfer"}),
    ("no-physical-address", "cluster_degraded", "JGRP000032", {"reason": "peer_unreachable"}),
    (
        "send-failed",
        "cluster_degraded",
        "failed sending message to",
        {"reason": "peer_unreachable", "levels": _BAD},
    ),
    # --- startup complete
    (
        "quarkus-started",
        "startup_complete",
        "started in",
        {"pattern": r"on JVM \(powered by Quarkus [^)]*\) started in"},
    ),
    (
        "wildfly-started",
        "startup_complete",
        "started in",
        {"pattern": r"(?:WFLYSRV0025|JBAS015874): .* started in"},
    ),
    # --- shutdown
    (
        "quarkus-stopped",
        "shutdown",
        "stopped in",
        {
            "reason": "stopped",
            "pattern": r"Keycloak(?:\.X)? stopped in|(?:WFLYSRV0050|JBAS015950): .* stopped in",
        },
    ),
    ("jgroups-disconnect", "shutdown", "ISPN000080", {"reason": "stopped"}),
    ("recovery-manager-stop", "shutdown", "ARJUNA032014", {"reason": "stopped"}),
    ("wildfly-signal", "shutdown", "WFLYSRV0220", {"reason": "signal"}),
    ("wildfly-suspend", "shutdown", "WFLYSRV0272", {"reason": "signal"}),
    ("jboss-term", "shutdown", "received TERM signal", {"reason": "signal"}),
    # --- startup progress; boot markers start (or belong only to) a boot
    (
        "wildfly-starting",
        _P,
        "starting",
        {
            "boot_marker": True,
            "once_per_boot": True,
            "pattern": r"(?:WFLYSRV0049|JBAS015899): .* starting",
        },
    ),
    ("jboss-modules", _P, "JBoss Modules version", {"boot_marker": True, "once_per_boot": True}),
    (
        "jboss-bootstrap",
        _P,
        "JBoss Bootstrap Environment",
        {"boot_marker": True, "once_per_boot": True},
    ),
    (
        "kc-build",
        _P,
        "Updating the configuration and installing",
        {"boot_marker": True, "once_per_boot": True},
    ),
    ("augmentation", _P, "augmentation completed", {"boot_marker": True}),
    ("hostname-v1", _P, "Hostname settings:", {"boot_marker": True, "once_per_boot": True}),
    (
        "hostname-v2",
        _P,
        "hostname-strict is effectively ignored",
        {"boot_marker": True, "once_per_boot": True},
    ),
    ("crypto", _P, "Detected crypto provider", {"boot_marker": True, "once_per_boot": True}),
    (
        "cache-manager",
        _P,
        "Starting Infinispan embedded cache manager",
        {"boot_marker": True, "once_per_boot": True},
    ),
    ("node-name", _P, "Node name:", {"boot_marker": True, "once_per_boot": True}),
    ("jgroups-start", _P, "ISPN000078", {"boot_marker": True}),
    ("jgroups-address", _P, "ISPN000079", {"boot_marker": True}),
    ("ispn-version", _P, "ISPN000128", {"boot_marker": True}),
    ("ispn-marshaller", _P, "ISPN000556", {"boot_marker": True}),
    ("ispn-transport", _P, "ISPN005054", {}),
    ("ispn-virtual-threads", _P, "ISPN000974", {}),
    ("jgroups-local-addr", _P, "local_addr:", {}),
    ("jgroups-listening", _P, "server listening on", {}),
    ("jgroups-discovery", _P, "JGroups JDBC_PING discovery", {}),
    ("jgroups-encryption", _P, "JGroups Encryption enabled", {}),
    ("jgroups-subsystem", _P, "WFLYCLJG0001", {}),
    ("wildfly-cache", _P, "WFLYCLINF0002", {}),
    ("wildfly-resuming", _P, "WFLYSRV0212", {}),
    ("wildfly-web-context", _P, "WFLYUT0021", {}),
    ("wildfly-datasource", _P, "WFLYJCA0001", {}),
    ("wildfly-deployed", _P, "WFLYSRV0010", {}),
    ("keycloak-image", _P, "[KEYCLOAK DOCKER IMAGE]", {}),
    ("add-user-script", _P, "Added '", {"pattern": r"^Added '[^']+' to '"}),
    ("changelog-wait", _P, "Waiting for changelog lock", {}),
    ("changelog-acquired", _P, "acquired change log lock", {}),
    ("schema-init", _P, "Initializing database schema", {}),
    ("schema-update", _P, "Updating database", {}),
    ("changeset-ran", _P, "ran successfully", {}),
    ("database-info", _P, "Database info:", {}),
    ("migration", _P, "Migrating older model", {}),
    ("migration-to", _P, "Migrating", {"category": "MigrationManager"}),
    ("services-info", _P, "KC-SERVICES00", {"levels": frozenset({"INFO"})}),
    ("server-config", _P, "Server configuration updated", {}),
    ("delayed-handler", _P, "The DelayedHandler was closed", {}),
    ("profile", _P, "activated.", {"pattern": r"Profile \w+ activated"}),
    ("features", _P, "Installed features", {}),
)

#: Substrings that cover every rule that matters after startup completed, per layout
#: (tests/test_pipeline.py checks them against the corpus, in plain and in JSON form).
#: Not covered by design: another boot's progress and start lines (a new boot shows as
#: ISPN000078/79, the API restart count or the HTTP target coming back), a shutdown without
#: ISPN000080 (a stopping Keycloak fails its own readiness endpoint) and startup-only causes.
#: Few and long needles keep the scan fast: each one is a pass over every byte.
RUNTIME_ANCHORS_PLAIN: tuple[bytes, ...] = (
    b"ISPN000",
    b"ISPN100000",
    b"ISPN100001",
    b"JGRP0000",
    b"ERROR [",
    b"ERROR: ",  # bare lines Quarkus prints when the server fails
    b"FATAL [",
    b"Datasource",
    b"IJ031084",
)
RUNTIME_ANCHORS_JSON: tuple[bytes, ...] = (
    b"ISPN000",
    b"ISPN100000",
    b"ISPN100001",
    b"JGRP0000",
    b'"ERROR"',  # "level":"ERROR", "log.level": "ERROR", ...
    b'"FATAL"',
    b"Datasource",
)
RUNTIME_ANCHORS_CSV: tuple[bytes, ...] = (  # Kibana CSV exports: '"<time>",ERROR,"<message>"'
    b"ISPN000",
    b"ISPN100000",
    b"ISPN100001",
    b"JGRP0000",
    b",ERROR,",
    b",FATAL,",
    b"Datasource",
)
#: Infinispan message codes that matter after startup (views, joins, leaves, degraded,
#: shutdown, a new boot); other ISPN codes (rebalance, ...) are skipped before framing.
RUNTIME_ISPN_CODES: frozenset[bytes] = frozenset(
    {
        b"000093",
        b"000094",
        b"000080",
        b"000078",
        b"000079",
        b"000314",
        b"000476",
        b"000210",
        b"000217",
        b"000541",
        b"100000",
        b"100001",
    }
)


def builtin_rules() -> tuple[Rule, ...]:
    """The built-in table, compiled."""
    raw = [
        {"id": rid, "event": event, "contains": contains, **extra}
        for rid, event, contains, extra in _BUILTIN
    ]
    return compile_rules(raw, origin="built-in")


def compile_rules(raw: Iterable[Mapping[str, object]], *, origin: str) -> tuple[Rule, ...]:
    """Validate and compile rule mappings; report every problem at once."""
    rules: list[Rule] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"{origin} rule #{index + 1}"
        try:
            rule = _compile_one(entry, where, origin)
        except RuleError as error:
            problems.extend(error.problems)
            continue
        if rule.id in seen:
            problems.append(f"{where}: duplicate id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    if problems:
        raise RuleError(problems)
    return tuple(rules)


_KNOWN_KEYS = frozenset(
    {
        "id",
        "event",
        "reason",
        "contains",
        "pattern",
        "levels",
        "category",
        "boot_marker",
        "once_per_boot",
        "view",
        "note",
    }
)


def _compile_one(entry: Mapping[str, object], where: str, origin: str) -> Rule:
    problems = [f"{where}: unknown key {key!r}" for key in entry if key not in _KNOWN_KEYS]
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        problems.append(f"{where}: 'id' must be a non-empty string")
        rule_id = "?"
    where = f"{where} ({rule_id})"
    event = entry.get("event")
    if event not in EVENT_NAMES:
        problems.append(f"{where}: 'event' must be one of {sorted(EVENT_NAMES)}, got {event!r}")
    reason = entry.get("reason", "")
    if not isinstance(reason, str) or reason not in ALL_REASONS:
        problems.append(f"{where}: unknown 'reason' {reason!r} (known: {sorted(ALL_REASONS)})")
    pattern = _compile_pattern(entry.get("pattern"), where, problems)
    contains = entry.get("contains", "")
    if not isinstance(contains, str):
        problems.append(f"{where}: 'contains' must be a string")
        contains = ""
    if not contains and pattern is not None:
        contains = longest_literal(pattern.pattern)
    if event != IGNORE and len(contains) < _MIN_NEEDLE:
        problems.append(
            f"{where}: needs 'contains', a literal substring of at least "
            f"{_MIN_NEEDLE} characters every matching line has (the pre-filter)"
        )
    levels = _levels(entry.get("levels"), where, problems)
    category = entry.get("category", "")
    if not isinstance(category, str):
        problems.append(f"{where}: 'category' must be a string")
        category = ""
    if event == IGNORE and not (contains or category):
        problems.append(f"{where}: an ignore rule needs 'contains' or 'category'")
    if problems:
        raise RuleError(problems)
    return Rule(
        id=str(rule_id),
        event=str(event),
        contains=contains,
        reason=str(reason),
        pattern=pattern,
        levels=levels,
        category=category,
        boot_marker=bool(entry.get("boot_marker", False)),
        once_per_boot=bool(entry.get("once_per_boot", False)),
        view=bool(entry.get("view", False)),
        origin=origin,
    )


def _compile_pattern(value: object, where: str, problems: list[str]) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: 'pattern' must be a string")
        return None
    try:
        return re.compile(value)
    except re.error as error:
        problems.append(f"{where}: 'pattern' is not a valid regular expression: {error}")
        return None


def _levels(value: object, where: str, problems: list[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, frozenset):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: 'levels' must be a list of strings")
        return None
    unknown = [v for v in value if v.upper() not in LEVELS]
    if unknown:
        problems.append(f"{where}: unknown levels {unknown} (known: {sorted(LEVELS - {''})})")
    return frozenset(v.upper() for v in value)


def longest_literal(pattern: str) -> str:
    """The longest run of plain characters every match of ``pattern`` must contain.

    Conservative: only top-level literal runs outside groups, classes and alternations.
    Returns "" when the pattern has a top-level alternation.
    """
    if _has_top_level_alternation(pattern):
        return ""
    best = ""
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            index += 2
            if escaped.isalnum():
                best = max(best, "".join(current), key=len)
                current = []
            else:
                current.append(escaped)
            continue
        if char in "([{.^$|":
            best = max(best, "".join(current), key=len)
            current = []
            index = _skip_group(pattern, index)
            continue
        if char in "*?+":
            if current:
                current.pop()
            best = max(best, "".join(current), key=len)
            current = []
        else:
            current.append(char)
        index += 1
    return max(best, "".join(current), key=len)


def _has_top_level_alternation(pattern: str) -> bool:
    depth, index = 0, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        index += 1
    return False


def _skip_group(pattern: str, index: int) -> int:
    opener = pattern[index]
    closer = {"(": ")", "[": "]", "{": "}"}.get(opener)
    if closer is None:
        return index + 1
    depth = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return _skip_quantifier(pattern, index + 1)
        index += 1
    return index


def _skip_quantifier(pattern: str, index: int) -> int:
    while index < len(pattern) and pattern[index] in "*?+":
        index += 1
    return index


def load_rules_file(path: str) -> tuple[Rule, ...]:
    """Read a JSON rules file: ``{"rules": [ {...}, ... ]}`` or a bare list."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise RuleError([f"{path}: cannot read: {error.strerror}"]) from error
    except ValueError as error:
        raise RuleError([f"{path}: not valid JSON: {error}"]) from error
    entries = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RuleError([f'{path}: expected a list of rule objects (or {{"rules": [...]}})'])
    return compile_rules(entries, origin=path)
