"""Real Keycloak log lines, by era and format.

Every line is taken from ``/work/shared/corpus/keycloak-log-lines.jsonl`` (its id in the
comment) or from ``/work/shared/CONTEXT.md``, with only the foreign log-collector prefix
removed (``keycloak_1  | ``, ``2022-03-23 08:38:37 | stdout | ``).  The simulated Keycloak
restamps each line with the current time in the line's own shape, and replaces ``{self}``
(this replica's Infinispan member name) and ``{view}`` (a cluster view it computes).
JSON lines wrap a real message in the envelope of kc-275 (Keycloak's default JSON format).
"""

from __future__ import annotations

import json

# --------------------------------------------------------------------------- Quarkus, plain
Q_HOSTNAME = (  # kc-036
    "2025-12-01 14:22:32,698 INFO  [org.keycloak.quarkus.runtime.hostname.DefaultHostnameProvider]"
    " (main) Hostname settings: Base URL: <unset>, Hostname: keycloak.local, Strict HTTPS: true,"
    " Path: <request>, Strict BackChannel: false, Admin URL: <unset>, Admin: <request>, Port: -1,"
    " Proxied: true"
)
Q_CACHE_MANAGER = (  # kc-199
    "2024-10-05 05:44:03,157 INFO  [org.keycloak.quarkus.runtime.storage.infinispan."
    "CacheManagerFactory] (main) Starting Infinispan embedded cache manager"
)
Q_JGROUPS_START = (  # kc-017
    "2026-07-04 16:28:56,535 INFO  [org.infinispan.CLUSTER] (keycloak-cache-init) ISPN000078:"
    " Starting JGroups channel `ISPN`"
)
Q_ALONE = (  # kc-021 (member name replaced)
    "2026-07-04 16:28:58,625 INFO  [org.jgroups.protocols.pbcast.GMS] (keycloak-cache-init)"
    " {self}: no members discovered after 2005 ms: creating cluster as coordinator"
)
Q_VIEW = (  # kc-022 / kc-238 (view computed)
    "2023-09-01 12:45:59,118 INFO  [org.infinispan.CLUSTER] (jgroups-12,{self}) ISPN000094:"
    " Received new cluster view for channel ISPN: {view}"
)
Q_JOINED = (  # kc-239
    "2023-09-01 12:45:59,118 INFO  [org.infinispan.CLUSTER] (jgroups-12,{self}) ISPN100000:"
    " Node {node} joined the cluster"
)
Q_LEFT = (  # kc-054
    "2024-02-13 11:46:09,626 INFO  [org.infinispan.CLUSTER] (jgroups-22,{self}) ISPN100001:"
    " Node {node} left the cluster"
)
Q_LOCAL_ADDRESS = (  # kc-023
    "2026-07-04 16:28:58,695 INFO  [org.infinispan.CLUSTER] (keycloak-cache-init) ISPN000079:"
    " Channel `ISPN` local address is `{self}`, physical addresses are `[10.111.107.35:49472]`"
)
Q_NODE_NAME = (  # kc-027
    "2026-07-04 16:29:02,463 INFO  [org.keycloak.connections.infinispan."
    "DefaultInfinispanConnectionProviderFactory] (main) Node name: {self}, Site name: null"
)
Q_SCHEMA = (  # kc-041
    "2025-12-01 14:22:45,655 INFO  [org.keycloak.quarkus.runtime.storage.legacy.liquibase."
    "QuarkusJpaUpdaterProvider] (main) Initializing database schema. Using changelog"
    " META-INF/jpa-changelog-master.xml\n\nUPDATE SUMMARY\nRun:                        124\n"
    "Previously run:               0\nFiltered out:                 0\n"
    "-------------------------------\nTotal change sets:          124\n"
)
Q_MIGRATING = (  # kc-215
    "2026-05-07 14:05:50,966 INFO  [org.keycloak.storage.datastore.DefaultMigrationManager]"
    " (main) Migrating older model to 26.4.3"
)
Q_LOCK_RETRY = (  # kc-004
    "2022-11-01 18:22:29,111 WARN  [org.keycloak.connections.jpa.updater.liquibase.lock."
    "CustomLockService] (main) Failed to create lock table. Maybe other transaction created in"
    " the meantime. Retrying..."
)
Q_MASTER_REALM = (  # kc-042
    "2025-12-01 14:22:52,981 INFO  [org.keycloak.services] (main) KC-SERVICES0050: Initializing"
    " master realm"
)
Q_ADMIN_USER = (  # kc-043
    "2025-12-01 14:22:57,930 INFO  [org.keycloak.services] (main) KC-SERVICES0009: Added user"
    " 'admin' to realm 'master'"
)
Q_STARTED = (  # kc-181
    "2024-12-07 17:52:23,717 INFO  [io.quarkus] (main) Keycloak 26.0.7 on JVM (powered by"
    " Quarkus 3.15.1) started in 39.709s. Listening on: http://0.0.0.0:8080. Management"
    " interface listening on http://0.0.0.0:9000."
)
Q_LOGIN_ERROR = (  # kc-270
    "2022-09-27 19:15:44,416 WARN  [org.keycloak.events] (executor-thread-27) type=LOGIN_ERROR,"
    " realmId=2e32eeed-558c-44a8-a625-a2bc4840e96e, clientId=myclient, userId=null,"
    " ipAddress=127.0.0.1, error=client_not_found"
)
Q_DB_REFUSED = (  # kc-093
    "2025-07-24 07:31:41,113 WARN  [io.agroal.pool] (agroal-11) Datasource '<default>':"
    " Connection to postgres_cdc_keycloak:5413 refused. Check that the hostname and port are"
    " correct and that the postmaster is accepting TCP/IP connections."
)
Q_OOM = (  # kc-158, kc-160
    "2024-02-22 09:20:55,736 ERROR [org.keycloak.services.error.KeycloakErrorHandler]"
    " (executor-thread-3146) Failed to create error page: java.lang.OutOfMemoryError: Java heap"
    " space",
    "2024-02-22 09:21:04,177 ERROR [org.keycloak.services.error.KeycloakErrorHandler]"
    " (executor-thread-3191) Uncaught server error: java.lang.OutOfMemoryError: Java heap space",
)
Q_START_FAILED_KEYSTORE = (  # kc-089
    "2023-09-07 08:27:29,386 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler]"
    " (main) ERROR: Failed to start server in (production) mode\n"
    "2023-09-07 08:27:29,386 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler]"
    " (main) ERROR: Unable to start HTTP server\n"
    "2023-09-07 08:27:29,386 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler]"
    " (main) ERROR: java.io.IOException: Invalid keystore format\n"
    "2023-09-07 08:27:29,386 ERROR [org.keycloak.quarkus.runtime.cli.ExecutionExceptionHandler]"
    " (main) ERROR: Invalid keystore format"
)
Q_RECOVERY_STOP = (  # kc-001
    "2026-06-18 08:55:20,278 INFO  [com.arjuna.ats.jbossatx] (main) ARJUNA032014: Stopping"
    " transaction recovery manager"
)

# --------------------------------------------------------------------------- WildFly era
W_MODULES = (
    "12:05:04,945 INFO  [org.jboss.modules] (main) JBoss Modules version 1.6.0.Final"  # kc-228
)
W_HTTP_LISTENER = (  # WildFly's Undertow listener opens early in the boot (WFLYUT0006)
    "22:01:05,217 INFO  [org.wildfly.extension.undertow] (MSC service thread 1-4) WFLYUT0006:"
    " Undertow HTTP listener default listening on 0.0.0.0:8080"
)
W_STARTING_16 = (  # kc-169, version of the era
    "07:07:07,606 INFO  [org.jboss.as] (MSC service thread 1-2) WFLYSRV0049: Keycloak 4.8.3.Final"
    " (WildFly Core 6.0.2.Final) starting"
)
W_KEYSTORE = (  # kc-008
    "04:21:17,319 WARN  [org.jboss.as.domain.management.security] (MSC service thread 1-2)"
    " WFLYDM0111: Keystore /opt/jboss/keycloak/standalone/configuration/application.keystore not"
    " found, it will be auto generated on first use with a self signed certificate for host"
    " localhost"
)
W_JGROUPS_SUBSYSTEM = (  # kc-194
    "04:40:20,013 INFO  [org.jboss.as.clustering.jgroups] (ServerService Thread Pool -- 42)"
    " WFLYCLJG0001: Activating JGroups subsystem. JGroups version 4.2.20"
)
W_ISPN_VERSION = (  # kc-191
    "11:59:20,793 INFO  [org.infinispan.CONTAINER] (ServerService Thread Pool -- 57) ISPN000128:"
    " Infinispan version: Infinispan 'Taedonggang' 12.1.7.Final"
)
W_JGROUPS_START = (  # kc-109
    "17:52:55,799 INFO  [org.infinispan.remoting.transport.jgroups.JGroupsTransport] (MSC service"
    " thread 1-2) ISPN000078: Starting JGroups channel ejb"
)
W_ALONE = (  # kc-190 (member name replaced)
    "11:59:20,432 INFO  [org.jgroups.protocols.pbcast.GMS] (ServerService Thread Pool -- 56)"
    " {self}: no members discovered after 3006 ms: creating cluster as coordinator"
)
W_VIEW_16 = (  # kc-107 (view computed)
    "17:52:55,891 INFO  [org.infinispan.CLUSTER] (MSC service thread 1-1) ISPN000094: Received new"
    " cluster view for channel ejb: {view}"
)
W_JOINED = (  # kc-077, time-only as the era prints it
    "21:26:37,481 INFO  [org.infinispan.CLUSTER] (thread-9,ejb,{self}) ISPN100000: Node {node}"
    " joined the cluster"
)
W_DB_INFO = (  # kc-227
    "18:08:49,226 INFO  [org.keycloak.connections.jpa.DefaultJpaConnectionProviderFactory]"
    " (ServerService Thread Pool -- 71) Database info: {databaseUrl=jdbc:postgresql://"
    "keycloak-postgresql:5432/bitnami_keycloak, databaseUser=bn_keycloak, databaseProduct="
    "PostgreSQL 11.13, databaseDriver=PostgreSQL JDBC Driver 42.2.14}"
)
W_MASTER_REALM = (  # kc-142, time-only as the era prints it
    "13:22:54,196 INFO  [org.keycloak.services] (ServerService Thread Pool -- 61) KC-SERVICES0050:"
    " Initializing master realm"
)
W_CACHE_STARTED = (  # kc-104
    "08:38:37,816 INFO  [org.jboss.as.clustering.infinispan] (ServerService Thread Pool -- 58)"
    " WFLYCLINF0002: Started loginFailures cache from keycloak container"
)
W_STARTED_16 = (  # kc-114 (the full server; kc-010's 64 services are the embedded CLI one)
    "11:21:55,916 INFO  [org.jboss.as] (Controller Boot Thread) WFLYSRV0025: Keycloak 10.0.2"
    " (WildFly Core 11.1.1.Final) started in 18843ms - Started 689 of 994 services (708 services"
    " are lazy, passive or on-demand)"
)
W_FATAL_LIQUIBASE_16 = (  # kc-005 (first frames)
    "20:32:02,350 FATAL [org.keycloak.services] (ServerService Thread Pool -- 61) Error during"
    " startup: java.lang.RuntimeException: Exception invoking method [listUnrunChangeSets] on"
    " object [liquibase.Liquibase@4cae178e], using arguments [null,(),false]\n"
    "\tat org.keycloak.keycloak-common@16.1.1//org.keycloak.common.util.reflections.Reflections"
    ".invokeMethod(Reflections.java:386)\n"
    "\tat org.keycloak.keycloak-model-jpa@16.1.1//org.keycloak.connections.jpa.updater.liquibase"
    ".LiquibaseJpaUpdaterProvider.getLiquibaseUnrunChangeSets(LiquibaseJpaUpdaterProvider.java:288)"
)
W_VFS = (  # kc-013
    "04:21:20,947 INFO  [org.jboss.vfs] (MSC service thread 1-6) VFS000002: Failed to clean"
    " existing content for temp file provider of type temp. Enable DEBUG level log to find what"
    " caused this"
)

# --------------------------------------------------------------------------- the story
STORY_VIEW = (  # CONTEXT.md, the 2015 deployment (kubectl --timestamps prefix removed)
    "09:26:18,678 INFO  [org.infinispan.remoting.transport.jgroups.JGroupsTransport]"
    " (Incoming-1,shared=udp) ISPN000094: Received new cluster view: {view}"
)
STORY_LIQUIBASE = (  # CONTEXT.md
    "09:26:37,074 ERROR [org.keycloak.connections.jpa.updater.liquibase."
    "LiquibaseJpaUpdaterProvider] (MSC service thread 1-1) Change Set"
    " META-INF/jpa-changelog-1.1.0.Final.xml::1.1.0.Final::sthorger@redhat.com failed.  Error:"
    " Error executing SQL ALTER TABLE public.EVENT_ENTITY RENAME COLUMN TIME TO EVENT_TIME: ERROR:"
    ' column "time" does not exist: liquibase.exception.DatabaseException: Error executing SQL'
    ' ALTER TABLE public.EVENT_ENTITY RENAME COLUMN TIME TO EVENT_TIME: ERROR: column "time" does'
    " not exist"
)


def as_json(plain: str) -> str:
    """A plain Quarkus line in Keycloak's JSON file format (envelope of kc-275)."""
    header, _, message = plain.partition(") ")
    stamp, level, logger = header.split()[0:2], header.split()[2], header.split()[3]
    record = {
        "timestamp": f"{stamp[0]}T{stamp[1].replace(',', '.')}+01:00",
        "sequence": 8442,
        "loggerClassName": "org.jboss.logging.Logger",
        "loggerName": logger.strip("[]"),
        "level": level,
        "message": message,
        "threadName": header.split("(", 1)[1],
        "threadId": 1,
        "mdc": {},
        "ndc": "",
        "hostName": "{host}",
        "processName": "QuarkusEntryPoint",
        "processId": 1,
    }
    return json.dumps(record, separators=(",", ":"))
