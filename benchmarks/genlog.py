"""Deterministic generator of realistic Keycloak server logs for the benchmarks.

The shapes follow the real lines in the shared corpus (Quarkus 26 default pattern
``yyyy-MM-dd HH:mm:ss,SSS LEVEL [category] (thread) message`` and Quarkus' default JSON
layout); names, addresses and identifiers are invented from a seeded random generator, so
the same seed always gives the same bytes.

A log is a sequence of boots.  Each boot is a start-up prefix (hostname settings, JGroups
and Infinispan start, the first cluster view, the harmless ``KC-SERVICES0010`` ERROR, the
"started in" line) followed by the running server's INFO-heavy mix: event-logger lines
(``LOGIN`` at INFO, ``LOGIN_ERROR``/``REFRESH_TOKEN_ERROR`` at WARN), Infinispan rebalance
lines, hibernate/agroal warnings, multi-line stack traces with ``at`` frames and
``Caused by:``, and now and then a peer leaving and re-joining (views, joins, leaves).

Usage::

    python benchmarks/genlog.py write OUT --lines 1000000 [--format json] [--seed 7]
    python benchmarks/genlog.py append OUT --rate 100000 --seconds 30
    python benchmarks/genlog.py fatal OUT            # append one fatal start-up block
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PLAIN = "plain"
JSON = "json"
FORMATS = (PLAIN, JSON)

#: how many rendered variants each runtime message kind gets per boot
VARIANTS_PER_KIND = 192
#: records rendered per internal batch (the unit of writing)
BATCH_RECORDS = 8192
DEFAULT_START = "2026-03-02 07:00:00"
KEYCLOAK_VERSION = "26.4.5"
QUARKUS_VERSION = "3.27.1"
CACHES = (
    "authenticationSessions",
    "sessions",
    "clientSessions",
    "offlineSessions",
    "offlineClientSessions",
    "loginFailures",
    "work",
    "actionTokens",
)
REALMS = ("acme", "master", "customers", "partners", "internal")
CLIENTS = ("portal", "mobile-app", "admin-cli", "security-admin-console", "billing", "grafana")


@dataclass(frozen=True, slots=True)
class Record:
    """One log record before layout: a header and optional continuation lines."""

    level: str
    category: str
    thread: str
    message: str
    trace: tuple[str, ...] = ()


@dataclass(slots=True)
class Cluster:
    """Membership of the simulated cluster as seen by the node writing the log."""

    me: str
    peers: list[str]
    view_id: int
    absent: list[str] = field(default_factory=list)

    def members(self) -> list[str]:
        return [*self.peers, self.me] if self.peers else [self.me]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _node(rng: random.Random, ordinal: int) -> str:
    return f"keycloak-{ordinal}-{rng.randrange(1000, 65000)}"


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(16, 250)}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}"


def _executor(rng: random.Random) -> str:
    return f"executor-thread-{rng.randrange(1, 400)}"


# --- stack traces -------------------------------------------------------------------------

FRAME_POOL = (
    "org.keycloak.authentication.AuthenticationProcessor.authenticationAction"
    "(AuthenticationProcessor.java:1003)",
    "org.keycloak.services.resources.LoginActionsService.processFlow(LoginActionsService.java:359)",
    "org.keycloak.services.resources.LoginActionsService.authenticate(LoginActionsService.java:331)",
    "org.keycloak.protocol.oidc.endpoints.TokenEndpoint.processGrantRequest(TokenEndpoint.java:195)",
    "org.keycloak.protocol.oidc.grants.RefreshTokenGrantType.process(RefreshTokenGrantType.java:91)",
    "org.keycloak.models.jpa.JpaUserProvider.getUserByUsername(JpaUserProvider.java:602)",
    "org.keycloak.services.error.KeycloakErrorHandler.toResponse(KeycloakErrorHandler.java:76)",
    "org.jboss.resteasy.reactive.server.handlers.InvocationHandler.handle(InvocationHandler.java:29)",
    "org.jboss.resteasy.reactive.common.core.AbstractResteasyReactiveContext.run"
    "(AbstractResteasyReactiveContext.java:147)",
    "io.quarkus.vertx.core.runtime.VertxCoreRecorder$14.runWith(VertxCoreRecorder.java:638)",
    "org.jboss.threads.EnhancedQueueExecutor$Task.doRunWith(EnhancedQueueExecutor.java:2675)",
    "org.jboss.threads.EnhancedQueueExecutor$ThreadBody.run(EnhancedQueueExecutor.java:1538)",
    "org.jboss.threads.DelegatingRunnable.run(DelegatingRunnable.java:11)",
    "io.netty.util.concurrent.FastThreadLocalRunnable.run(FastThreadLocalRunnable.java:30)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
    "org.hibernate.engine.jdbc.spi.SqlExceptionHelper.convert(SqlExceptionHelper.java:64)",
    "org.hibernate.internal.SessionImpl.flush(SessionImpl.java:1428)",
    "io.agroal.pool.ConnectionPool.getConnection(ConnectionPool.java:257)",
    "org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:372)",
    "io.vertx.core.impl.ContextInternal.dispatch(ContextInternal.java:279)",
)
CAUSES = (
    "org.keycloak.authentication.AuthenticationFlowException: authenticator: auth-username-password"
    "-form",
    "jakarta.ws.rs.NotFoundException: HTTP 404 Not Found",
    "org.hibernate.exception.ConstraintViolationException: could not execute statement",
    "org.postgresql.util.PSQLException: ERROR: duplicate key value violates unique constraint"
    ' "uk_ru8tt6t700s9v50bu18ws5ha6"',
    "java.lang.IllegalStateException: Session not active",
    "io.vertx.core.VertxException: Connection was closed",
)


def _frames(rng: random.Random, count: int) -> list[str]:
    return ["\tat " + rng.choice(FRAME_POOL) for _ in range(count)]


def _trace(rng: random.Random, head: str) -> tuple[str, ...]:
    lines = [head, *_frames(rng, rng.randrange(6, 30))]
    if rng.random() < 0.6:
        lines.append("Caused by: " + rng.choice(CAUSES))
        lines.extend(_frames(rng, rng.randrange(2, 10)))
        lines.append(f"\t... {rng.randrange(10, 60)} more")
    return tuple(lines)


# --- runtime message kinds ----------------------------------------------------------------


def _event_fields(rng: random.Random, kind: str) -> str:
    user = "null" if kind.endswith("ERROR") and rng.random() < 0.5 else _uuid(rng)
    return (
        f'type="{kind}", realmId="{_uuid(rng)}", realmName="{rng.choice(REALMS)}", '
        f'clientId="{rng.choice(CLIENTS)}", userId="{user}", ipAddress="{_ip(rng)}"'
    )


def event_success(rng: random.Random, _c: Cluster) -> list[Record]:
    kind = rng.choice(("LOGIN", "CODE_TO_TOKEN", "REFRESH_TOKEN", "LOGOUT", "INTROSPECT_TOKEN"))
    extra = f', sessionId="{_uuid(rng)}", auth_method="openid-connect"'
    return [Record("INFO", "org.keycloak.events", _executor(rng), _event_fields(rng, kind) + extra)]


def event_error(rng: random.Random, _c: Cluster) -> list[Record]:
    kind, error = rng.choice(
        (
            ("LOGIN_ERROR", "invalid_user_credentials"),
            ("LOGIN_ERROR", "user_not_found"),
            ("LOGIN_ERROR", "expired_code"),
            ("REFRESH_TOKEN_ERROR", "invalid_token"),
            ("CODE_TO_TOKEN_ERROR", "invalid_code"),
        )
    )
    msg = _event_fields(rng, kind) + f', error="{error}", auth_method="openid-connect"'
    return [Record("WARN", "org.keycloak.events", _executor(rng), msg)]


def rebalance(rng: random.Random, c: Cluster) -> list[Record]:
    cache = rng.choice(CACHES)
    topology = rng.randrange(2, 400)
    members = ", ".join(c.members())
    thread = f"jgroups-{rng.randrange(1, 40)},{c.me}"
    shapes = (
        f"[Context={cache}] ISPN100002: Starting rebalance with members [{members}], phase "
        f"READ_OLD_WRITE_ALL, topology id {topology}",
        f"[Context={cache}] ISPN100009: Advancing to rebalance phase READ_ALL_WRITE_ALL, "
        f"topology id {topology}",
        f"[Context={cache}] ISPN100010: Finished rebalance with members [{members}], "
        f"topology id {topology}",
        f"[Context={cache}][Scope={c.me}]ISPN100003: Finished local rebalance",
    )
    return [Record("INFO", "org.infinispan.CLUSTER", thread, rng.choice(shapes))]


def persistence(rng: random.Random, _c: Cluster) -> list[Record]:
    choice = rng.randrange(4)
    thread = f"agroal-{rng.randrange(1, 30)}"
    if choice == 0:
        msg = (
            "Datasource '<default>': JDBC resources leaked: "
            f"{rng.randrange(1, 4)} ResultSet(s) and 0 Statement(s)"
        )
        return [Record("WARN", "io.agroal.pool", thread, msg)]
    if choice == 1:
        return [
            Record(
                "WARN",
                "org.hibernate.engine.jdbc.spi.SqlExceptionHelper",
                _executor(rng),
                "SQL Error: 0, SQLState: 23505",
            ),
            Record(
                "ERROR",
                "org.hibernate.engine.jdbc.spi.SqlExceptionHelper",
                _executor(rng),
                'ERROR: duplicate key value violates unique constraint "constraint_'
                f'{rng.randrange(100, 999)}"',
            ),
        ]
    if choice == 2:
        page = rng.randrange(1, 9)
        msg = f"HHH000104: firstResult/maxResults specified with collection fetch; page {page}"
        return [Record("WARN", "org.hibernate.orm.query", _executor(rng), msg)]
    pool = rng.randrange(10, 100)
    url = "jdbc:postgresql://postgres-service:5432/keycloak"
    msg = f"Database info: {{databaseUrl={url}, pool={pool}}}"
    return [
        Record(
            "INFO", "org.keycloak.connections.jpa.DefaultJpaConnectionProviderFactory", "main", msg
        )
    ]


def cert_reload(_rng: random.Random, _c: Cluster) -> list[Record]:
    return [
        Record(
            "INFO",
            "org.keycloak.jgroups.certificates.CertificateReloadManager",
            "Timer-0",
            "Reloading JGroups Certificate",
        )
    ]


def failed_auth(rng: random.Random, _c: Cluster) -> list[Record]:
    head = "org.keycloak.authentication.AuthenticationFlowException: authenticator: auth-cookie"
    return [
        Record(
            "WARN",
            "org.keycloak.services",
            _executor(rng),
            "KC-SERVICES0013: Failed authentication: " + head,
            _trace(rng, head)[1:],
        )
    ]


def uncaught_error(rng: random.Random, _c: Cluster) -> list[Record]:
    cause = rng.choice(CAUSES)
    return [
        Record(
            "ERROR",
            "org.keycloak.services.error.KeycloakErrorHandler",
            _executor(rng),
            "Uncaught server error: " + cause,
            _trace(rng, cause)[1:],
        )
    ]


def blocked_thread(rng: random.Random, _c: Cluster) -> list[Record]:
    ms = rng.randrange(2001, 9000)
    msg = (
        f"Thread Thread[vert.x-eventloop-thread-{rng.randrange(0, 4)},5,main] has been blocked for "
        f"{ms} ms, time limit is 2000 ms"
    )
    trace = ("io.vertx.core.VertxException: Thread blocked", *_frames(rng, rng.randrange(5, 20)))
    return [
        Record(
            "WARN",
            "io.vertx.core.impl.BlockedThreadChecker",
            "vertx-blocked-thread-checker",
            msg,
            trace,
        )
    ]


def harmless_error(rng: random.Random, _c: Cluster) -> list[Record]:
    if rng.random() < 0.5:
        return [
            Record(
                "ERROR",
                "org.keycloak.services.resources.IdentityBrokerService",
                _executor(rng),
                "Invalid token.",
            )
        ]
    return [
        Record(
            "WARN",
            "org.keycloak.protocol.oidc.utils.OAuth2CodeParser",
            _executor(rng),
            f"Code '{_uuid(rng)}' already used for userSession '{_uuid(rng)}' and client "
            f"'{_uuid(rng)}'.",
        )
    ]


def request_timeout(rng: random.Random, c: Cluster) -> list[Record]:
    """A degraded-cluster line (rare in the default mix, as in a real cluster)."""
    peer = rng.choice(c.peers) if c.peers else c.me
    msg = (
        f"ISPN000476: Timed out waiting for responses for request {rng.randrange(1000, 9999999)} "
        f"from {peer} after 15 seconds"
    )
    return [
        Record("WARN", "org.infinispan.CLUSTER", f"timeout-thread--p4-t{rng.randrange(1, 9)}", msg)
    ]


Factory = Callable[[random.Random, Cluster], list[Record]]

#: (factory, weight per 10,000 records) of the running server; the rest are pooled
#: (factory, records per million) of the running server's mix
RUNTIME_MIX: tuple[tuple[Factory, int], ...] = (
    (event_success, 580_000),
    (event_error, 290_000),
    (rebalance, 70_000),
    (persistence, 30_000),
    (cert_reload, 12_000),
    (failed_auth, 6_000),
    (uncaught_error, 3_500),
    (blocked_thread, 2_000),
    (harmless_error, 6_500),
)
#: rare kinds, drawn per batch rather than per record (records per million)
RARE_MIX: tuple[tuple[Factory, int], ...] = ((request_timeout, 10),)
#: size of the weighted table a batch samples from (references to rendered variants)
MIX_TABLE_SIZE = 1 << 16


# --- cluster membership changes and boots --------------------------------------------------


def view_record(c: Cluster, thread: str) -> Record:
    members = c.members()
    coordinator = members[0]
    msg = (
        f"ISPN000094: Received new cluster view for channel ISPN: [{coordinator}|{c.view_id}] "
        f"({len(members)}) [{', '.join(members)}]"
    )
    return Record("INFO", "org.infinispan.CLUSTER", thread, msg)


def membership_change(rng: random.Random, c: Cluster) -> list[Record]:
    """A peer leaves (pod restart) or a missing peer joins: a view, then the join/leave line."""
    thread = f"jgroups-{rng.randrange(1, 40)},{c.me}"
    c.view_id += 1
    if c.absent:
        node = c.absent.pop()
        c.peers.append(node)
        verb = "joined"
        code = "ISPN100000"
    else:
        node = c.peers.pop(rng.randrange(len(c.peers)))
        c.absent.append(_node(rng, int(node.split("-")[1])))
        verb = "left"
        code = "ISPN100001"
    line = Record(
        "INFO", "org.infinispan.CLUSTER", thread, f"{code}: Node {node} {verb} the cluster"
    )
    return [view_record(c, thread), line, line, *rebalance(rng, c)]


def boot_records(rng: random.Random, c: Cluster) -> list[Record]:
    """The start-up prefix of a Quarkus 26 server that joins a running cluster."""
    worker = "ForkJoinPool.commonPool-worker-1"
    main = "main"
    hostname = (
        "Hostname settings: Hostname: <request>, Strict HTTPS: false, Path: <request>, "
        "Strict BackChannel: false, Admin URL: <unset>, Admin: <request>, Port: -1, Proxied: true"
    )
    started = (
        f"Keycloak {KEYCLOAK_VERSION} on JVM (powered by Quarkus {QUARKUS_VERSION}) started in "
        f"{rng.uniform(8, 40):.3f}s. Listening on: http://0.0.0.0:8080. Management interface "
        "listening on http://0.0.0.0:9000."
    )
    return [
        Record(
            "INFO", "org.keycloak.quarkus.runtime.hostname.DefaultHostnameProvider", main, hostname
        ),
        Record(
            "INFO",
            "org.keycloak.spi.infinispan.impl.embedded.JGroupsConfigurator",
            main,
            "JGroups JDBC_PING discovery enabled.",
        ),
        Record(
            "INFO", "org.infinispan.CONTAINER", main, "ISPN000974: Virtual threads support: enabled"
        ),
        Record(
            "INFO",
            "org.keycloak.quarkus.runtime.storage.infinispan.CacheManagerFactory",
            main,
            "Starting Infinispan embedded cache manager",
        ),
        Record(
            "INFO",
            "org.infinispan.CLUSTER",
            worker,
            "ISPN000078: Starting JGroups channel `ISPN` with stack `jdbc-ping`",
        ),
        Record("INFO", "org.jgroups.JChannel", worker, f"local_addr: {_uuid(rng)}, name: {c.me}"),
        Record("INFO", "org.jgroups.protocols.FD_SOCK2", worker, "server listening on *.57800"),
        view_record(c, worker),
        Record(
            "INFO",
            "org.infinispan.CLUSTER",
            worker,
            f"ISPN000079: Channel `ISPN` local address is `{c.me}`, physical addresses are "
            f"`[{_ip(rng)}:7800]`",
        ),
        *[r for _ in range(3) for r in rebalance(rng, c)],
        Record(
            "INFO",
            "org.keycloak.connections.infinispan.DefaultInfinispanConnectionProviderFactory",
            main,
            f"Node name: {c.me}, Site name: null",
        ),
        Record(
            "ERROR",
            "org.keycloak.services",
            main,
            "KC-SERVICES0010: Failed to add user 'admin' to realm 'master': user with username "
            "exists",
        ),
        Record("INFO", "io.quarkus", main, started),
        Record("INFO", "io.quarkus", main, "Profile prod activated."),
        Record(
            "INFO",
            "io.quarkus",
            main,
            "Installed features: [agroal, cdi, hibernate-orm, jdbc-postgresql, keycloak, "
            "narayana-jta, opentelemetry, reactive-routes, rest, rest-jackson, "
            "smallrye-context-propagation, smallrye-health, vertx]",
        ),
    ]


def boot_start_records(rng: random.Random, c: Cluster) -> list[Record]:
    """Only the beginning of a boot (no "started" line yet): a server still starting."""
    return boot_records(rng, c)[:7]


def shutdown_records(c: Cluster) -> list[Record]:
    return [
        Record(
            "INFO",
            "org.infinispan.CLUSTER",
            "Shutdown thread",
            "ISPN000080: Disconnecting JGroups channel `ISPN`",
        ),
        Record("INFO", "io.quarkus", "Shutdown thread", f"Keycloak stopped in 0.{len(c.me)}21s"),
    ]


def fatal_records() -> list[Record]:
    """The Quarkus fatal start-up block, with a cause a restart can fix (the caches).

    Not a database cause: the sidecar rightly never restarts Keycloak for an unreachable
    database, so such a block must not turn ``/livez`` to 503.
    """
    handler = "org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler"
    return [
        Record("ERROR", handler, "main", "ERROR: Failed to start server in (production) mode"),
        Record("ERROR", handler, "main", "ERROR: Failed to start caches"),
        Record(
            "ERROR",
            handler,
            "main",
            "For more details run the same command passing the '--verbose' option. Also you "
            "can use '--help' to see the details about the usage of the particular command.",
        ),
    ]


# --- layout -------------------------------------------------------------------------------


def render_plain(r: Record) -> str:
    """Everything after the timestamp and its space."""
    head = f"{r.level:<5} [{r.category}] ({r.thread}) {r.message}\n"
    return head + "".join(t + "\n" for t in r.trace)


def _exception(r: Record) -> str:
    frames = [
        {
            "class": f.removeprefix("\tat ").split("(")[0].rsplit(".", 1)[0],
            "method": f.split("(")[0].rsplit(".", 1)[-1],
            "line": int(f.rsplit(":", 1)[-1].rstrip(")")) if f.endswith(")") and ":" in f else -1,
        }
        for f in r.trace
        if f.startswith("\tat ")
    ]
    head = r.trace[0] if not r.trace[0].startswith("\tat ") else r.message
    exc_type, _, exc_msg = head.partition(": ")
    body = {"refId": 1, "exceptionType": exc_type, "message": exc_msg, "frames": frames}
    return ',"exception":' + json.dumps(body, separators=(",", ":"))


def render_json(r: Record, host: str) -> str:
    """Everything after ``"sequence":N``; the caller adds timestamp and sequence."""
    exception = _exception(r) if r.trace else ""
    return (
        ',"loggerClassName":"org.jboss.logging.Logger","loggerName":'
        + json.dumps(r.category)
        + ',"level":"'
        + r.level
        + '","message":'
        + json.dumps(r.message)
        + ',"threadName":'
        + json.dumps(r.thread)
        + ',"threadId":'
        + str(len(r.thread) * 7 % 97)
        + ',"mdc":{},"ndc":"","hostName":"'
        + host
        + '","processName":"/usr/lib/jvm/jre-21/bin/java","processId":1'
        + exception
        + "}\n"
    )


# --- the generator ------------------------------------------------------------------------


class LogGenerator:
    """Seeded, batched generator; ``batch()`` returns laid-out text of whole records."""

    def __init__(
        self,
        *,
        seed: int = 7,
        log_format: str = PLAIN,
        start: str = DEFAULT_START,
        records_per_second: float = 400.0,
        boot_every_records: int = 0,
        view_change_every_records: int = 20_000,
        wall_clock: bool = False,
    ) -> None:
        if log_format not in FORMATS:
            raise ValueError(f"unknown format {log_format!r}")
        self.rng = random.Random(seed)
        self.log_format = log_format
        self.ms = calendar.timegm(time.strptime(start, "%Y-%m-%d %H:%M:%S")) * 1000
        mean_gap_ms = 1000.0 / records_per_second
        self.gap_table = [int(self.rng.expovariate(1.0 / mean_gap_ms)) for _ in range(4096)]
        self.boot_every_records = boot_every_records
        self.view_change_every_records = view_change_every_records
        self.wall_clock = wall_clock
        self.sequence = 0
        self.records_since_boot = 0
        self.host = ""
        self.cluster = Cluster(me="", peers=[], view_id=0)
        self._table: list[str] = []
        self._pending: list[Record] = []
        self._new_boot()

    def _new_boot(self) -> None:
        rng = self.rng
        peers = [_node(rng, 0), _node(rng, 2)]
        view_id = self.cluster.view_id + rng.randrange(1, 5)
        self.cluster = Cluster(me=_node(rng, 1), peers=peers, view_id=view_id)
        self.host = self.cluster.me.rsplit("-", 1)[0]
        variants: list[str] = []
        weights: list[float] = []
        for factory, per_million in RUNTIME_MIX:
            rendered = [
                self._render(r)
                for _ in range(VARIANTS_PER_KIND)
                for r in factory(rng, self.cluster)
            ]
            variants.extend(rendered)
            weights.extend([per_million / len(rendered)] * len(rendered))
        self._table = rng.choices(variants, weights, k=MIX_TABLE_SIZE)
        self._pending.extend(boot_records(rng, self.cluster))
        self.records_since_boot = 0

    def skip_pending(self) -> None:
        """Drop the start-up prefix not written yet (continue a running server's log)."""
        self._pending.clear()

    def _render(self, r: Record) -> str:
        return render_plain(r) if self.log_format == PLAIN else render_json(r, self.host)

    def _second(self, sec: int) -> str:
        """The timestamp up to the milliseconds (and the JSON opening)."""
        if self.log_format == PLAIN:
            return time.strftime("%Y-%m-%d %H:%M:%S,", time.gmtime(sec))
        return '{"timestamp":"' + time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))

    def records(self, extra: list[Record]) -> str:
        """Lay out specific records (boots, fatal lines) with current timestamps."""
        return self._lay_out([self._render(r) for r in extra], [1] * len(extra))

    def _lay_out(self, bodies: list[str], gaps: list[int]) -> str:
        if self.wall_clock:
            self.ms = int(time.time() * 1000)
        sec, milli = divmod(self.ms, 1000)
        prefix = self._second(sec)
        parts: list[str] = []
        if self.log_format == PLAIN:
            for body, gap in zip(bodies, gaps, strict=True):
                parts.append(prefix + MILLIS_PLAIN[milli] + body)
                milli += gap
                if milli >= 1000:
                    sec, milli = sec + milli // 1000, milli % 1000
                    prefix = self._second(sec)
        else:
            seq = self.sequence
            for body, gap in zip(bodies, gaps, strict=True):
                seq += 1
                parts.append(prefix + MILLIS_JSON[milli] + str(seq) + body)
                milli += gap
                if milli >= 1000:
                    sec, milli = sec + milli // 1000, milli % 1000
                    prefix = self._second(sec)
            self.sequence = seq
        self.ms = sec * 1000 + milli
        return "".join(parts)

    def _scheduled(self, records: int) -> list[Record]:
        """Boots, membership changes and rare lines due in the next ``records``."""
        due: list[Record] = []
        if self.boot_every_records and self.records_since_boot >= self.boot_every_records:
            due.extend(shutdown_records(self.cluster))
            self._new_boot()
        due.extend(self._pending)
        self._pending.clear()
        every = self.view_change_every_records
        if (
            every
            and self.records_since_boot // every != (self.records_since_boot + records) // every
        ):
            due.extend(membership_change(self.rng, self.cluster))
        for factory, per_million in RARE_MIX:
            if self.rng.random() < records * per_million / 1_000_000:
                due.extend(factory(self.rng, self.cluster))
        return due

    def batch(self, records: int = BATCH_RECORDS) -> str:
        """About ``records`` records of the running server (plus whatever is due)."""
        head = self.records(self._scheduled(records))
        bodies = self.rng.choices(self._table, k=records)
        gaps = self.rng.choices(self.gap_table, k=records)
        self.records_since_boot += records
        return head + self._lay_out(bodies, gaps)


MILLIS_PLAIN = [f"{i:03d} " for i in range(1000)]
MILLIS_JSON = [f'{i:03d}Z","sequence":' for i in range(1000)]


def _cut(text: str, lines: int) -> str:
    """The first ``lines`` physical lines of ``text``."""
    end = -1
    for _ in range(lines):
        end = text.index("\n", end + 1)
    return text[: end + 1]


def generate(gen: LogGenerator, total_lines: int) -> Iterator[str]:
    """Chunks holding exactly ``total_lines`` physical lines (the last record may be cut)."""
    written = 0
    while written < total_lines:
        chunk = gen.batch()
        lines = chunk.count("\n")
        if written + lines > total_lines:
            yield _cut(chunk, total_lines - written)
            return
        written += lines
        yield chunk


def write_log(path: Path, total_lines: int, gen: LogGenerator) -> int:
    """Write ``total_lines`` lines to ``path``; returns characters written."""
    size = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for chunk in generate(gen, total_lines):
            out.write(chunk)
            size += len(chunk)
    return size


def append_at_rate(fd: int, gen: LogGenerator, lines_per_second: float, seconds: float) -> int:
    """Append about ``lines_per_second`` to ``fd`` for ``seconds`` (0: forever).

    Whole lines only, one ``write`` per tick, so another writer appending to the same file
    (``O_APPEND``) never lands in the middle of a line.
    """
    tick_seconds = 0.005
    started = time.monotonic()
    buffered = ""
    buffered_lines = 0
    written = 0
    while seconds <= 0 or time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * lines_per_second) - written
        due = min(due, max(1, int(lines_per_second)))
        if due <= 0:
            time.sleep(tick_seconds)
            continue
        while buffered_lines < due:
            more = gen.batch(max(64, min(BATCH_RECORDS, due)))
            buffered += more
            buffered_lines += more.count("\n")
        cut = _cut(buffered, due)
        os.write(fd, cut.encode())
        buffered = buffered[len(cut) :]
        buffered_lines -= due
        written += due
    return written


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("write", "append", "fatal", "boot", "boot-start"):
        s = sub.add_parser(name)
        s.add_argument("out", help="file to write ('-' for standard output)")
        s.add_argument("--format", choices=FORMATS, default=PLAIN)
        s.add_argument("--seed", type=int, default=7)
        s.add_argument("--start", default=DEFAULT_START, help="first timestamp (UTC)")
        s.add_argument(
            "--records-per-second",
            type=float,
            default=400.0,
            help="simulated logging rate (sets the timestamp spacing)",
        )
        s.add_argument(
            "--boot-every-records",
            type=int,
            default=0,
            help="restart the simulated server every N records (0: one boot)",
        )
        s.add_argument("--view-change-every-records", type=int, default=20_000)
    sub.choices["write"].add_argument("--lines", type=int, required=True)
    sub.choices["append"].add_argument("--rate", type=float, required=True, help="lines/s")
    sub.choices["append"].add_argument("--seconds", type=float, default=0.0, help="0: forever")
    sub.choices["append"].add_argument(
        "--no-boot", action="store_true", help="only running-server lines (no start-up prefix)"
    )
    return p


def _generator(args: argparse.Namespace, wall_clock: bool) -> LogGenerator:
    return LogGenerator(
        seed=args.seed,
        log_format=args.format,
        start=args.start,
        records_per_second=args.records_per_second,
        boot_every_records=args.boot_every_records,
        view_change_every_records=args.view_change_every_records,
        wall_clock=wall_clock,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    gen = _generator(args, wall_clock=args.command != "write")
    if args.command == "write":
        if args.out == "-":
            for chunk in generate(gen, args.lines):
                sys.stdout.write(chunk)
            return 0
        size = write_log(Path(args.out), args.lines, gen)
        print(json.dumps({"path": args.out, "lines": args.lines, "bytes": size}))
        return 0
    extra: dict[str, Callable[[], list[Record]]] = {
        "fatal": fatal_records,
        "boot": lambda: boot_records(gen.rng, gen.cluster),
        "boot-start": lambda: boot_start_records(gen.rng, gen.cluster),
    }
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if args.command == "append":
            if args.no_boot:
                gen.skip_pending()
            append_at_rate(fd, gen, args.rate, args.seconds)
        else:
            os.write(fd, gen.records(extra[args.command]()).encode())
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
