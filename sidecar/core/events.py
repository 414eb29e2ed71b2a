"""The closed vocabulary of things the sidecar understands in a Keycloak log.

Shared by the daemon, ``analyze`` and the metrics.  Pure value types, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final


class EventKind(enum.StrEnum):
    """What a log record means for Keycloak's health."""

    BOOT = "boot"
    STARTUP_PROGRESS = "startup_progress"
    STARTUP_COMPLETE = "startup_complete"
    STARTUP_FATAL = "startup_fatal"
    CLUSTER_VIEW = "cluster_view"
    NODE_JOINED = "node_joined"
    NODE_LEFT = "node_left"
    CLUSTER_DEGRADED = "cluster_degraded"
    RUNTIME_FATAL = "runtime_fatal"
    SHUTDOWN = "shutdown"
    # Evidence that the shared database cannot be used (a restart cannot help): never fatal.
    DB_UNAVAILABLE = "db_unavailable"


#: Reason codes a ``startup_fatal`` can carry.  Stable: they appear in metrics and Events.
#: A ``startup_fatal`` event is emitted only for conditions that fail liveness when nothing
#: suppresses them; a database that cannot be reached is ``db_unavailable`` instead.
STARTUP_FATAL_REASONS: frozenset[str] = frozenset(
    {
        "liquibase",  # schema migration failed (the concurrent-first-start race)
        "db_config",  # the datasource's configuration: wrong password, URL, driver or database
        "db_lock",  # changelog / DB lock could not be acquired or released
        "port_in_use",  # HTTP, HTTPS or management port already bound
        "config",  # invalid or missing configuration
        "tls",  # key material / keystore problems
        "cache",  # Infinispan / JGroups could not start
        "deployment",  # WildFly: the /auth deployment, a subsystem or the entrypoint's CLI batch
        "jvm",  # the JVM itself crashed or could not start
        "build",  # the Quarkus auto-build failed
        "usage",  # kc.sh printed its usage: the container command is wrong
        "failed_to_start",  # generic "Failed to start server" with no finer cause
    }
)

#: Reason codes a ``db_unavailable`` event can carry: why the database cannot be used.
DB_UNAVAILABLE_REASONS: frozenset[str] = frozenset(
    {
        "refused",  # the database host refused the connection (nothing listens)
        "timeout",  # connecting, or waiting for a pooled connection, timed out
        "unreachable",  # unknown host, no route, broken link, the connection attempt failed
        "rejected",  # the server turned the client away (too many clients, starting, no access)
        "credentials",  # after startup: the database rejected the credentials (rotated?)
        "connection_failed",  # a connection could not be had; the record does not say why
    }
)

#: causes that matter only while a server starts: ignored once it has started (a realm's
#: keystore failing at runtime is no reason to restart a running server)
STARTUP_ONLY_REASONS: frozenset[str] = frozenset(
    {"tls", "config", "usage", "build", "deployment", "port_in_use"}
)

#: Reason codes a ``runtime_fatal`` can carry.
RUNTIME_FATAL_REASONS: frozenset[str] = frozenset({"out_of_memory", "jvm_crash"})

#: Reason codes a ``cluster_degraded`` can carry.
CLUSTER_DEGRADED_REASONS: frozenset[str] = frozenset(
    {
        "split_brain",  # ISPN000314 or KEYCLOAK_JDBC_PING2 losing partition
        "peer_unreachable",  # JGroups cannot send to / cannot join a member
        # JGRP000032: the transport has no physical address for a member yet (a joiner named
        # by UUID) or any more (one that left) and drops one message: routine at joins and
        # leaves, reported only; a lost peer shows in the views the membership check reads
        "peer_address_unknown",
        "peer_suspected",  # JGroups failure detection suspects a member (missed heartbeats)
        "request_timeout",  # ISPN000476 / ISPN000427 remote command and ack timeouts
        "state_transfer",  # ISPN000210 state transfer or a rebalance failed
    }
)

#: Reasons for events that need none ("bootstrap": the startup_progress of Keycloak 26.6+'s
#: "Bootstrap completed", which follows its "started" line when the bootstrap runs async;
#: not a start: the HTTP server may still fail to bind after it).
OTHER_REASONS: frozenset[str] = frozenset({"", "signal", "stopped", "marker", "bootstrap"})

ALL_REASONS: frozenset[str] = (
    STARTUP_FATAL_REASONS
    | RUNTIME_FATAL_REASONS
    | CLUSTER_DEGRADED_REASONS
    | DB_UNAVAILABLE_REASONS
    | OTHER_REASONS
)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One Infinispan/JGroups view as printed by ISPN000093/ISPN000094."""

    view_id: int
    coordinator: str
    members: tuple[str, ...]
    size: int
    merged: bool = False
    channel: str = ""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One classified fact from one log record.

    ``line`` is the 1-based line number where the record starts (0 when unknown),
    ``timestamp`` the record's own time in epoch seconds when the log carried one,
    ``code`` the Keycloak/WildFly/Infinispan message code (``ISPN000094``) when known:
    events never carry raw log text, which can hold secrets.
    """

    kind: EventKind
    reason: str = ""
    line: int = 0
    timestamp: float | None = None
    code: str = ""
    rule: str = ""
    view: ClusterView | None = None
    node: str = ""
    #: the rule marks this record as one that starts (or belongs only to) a boot
    boot_marker: bool = False
    #: the marker appears once per boot: seeing it again means a new boot began
    once_per_boot: bool = False
    #: WildFly's embedded CLI server (the jboss/keycloak pre-boot), not the real one
    embedded: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """The ``analyze --json`` shape of this event."""
        out: dict[str, object] = {"line": self.line, "event": self.kind.value}
        if self.reason:
            out["reason"] = self.reason
        if self.code:
            out["code"] = self.code
        if self.view is not None:
            out["view_id"] = self.view.view_id
            out["coordinator"] = self.view.coordinator
            out["members"] = list(self.view.members)
            out["size"] = self.view.size
            out["merged"] = self.view.merged
            if self.view.channel:
                out["channel"] = self.view.channel
        elif self.kind is EventKind.CLUSTER_VIEW:
            # a view whose fields could not be read (elided or damaged line)
            out.update(
                view_id=None,
                coordinator=None,
                members=[],
                size=None,
                merged=("merged", "true") in self.extra,
            )
        if self.node:
            out["node"] = self.node
        if self.embedded:
            out["embedded"] = True
        if self.timestamp is not None:
            out["timestamp"] = round(self.timestamp, 3)
        return out


#: every value ``ProbeResult.error`` takes besides "" (bounded metric label values)
ERROR_CLASSES: Final = (
    "timeout",
    "refused",
    "connection",
    "tls",
    "transfer",
    "http_status",
    "body",
)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One entry of a health body's ``checks`` list."""

    name: str
    up: bool


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one HTTP probe saw.  ``error`` is "" exactly when ``ok`` is true."""

    target: str
    ok: bool
    status: int | None
    latency_seconds: float
    error: str
    keycloak_status: str
    checks: tuple[HealthCheck, ...]
    database_down: bool
    observed_at: float
