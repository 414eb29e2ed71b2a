"""Boots and scripts for the simulated Keycloak, composed from the real lines of ``lines``.

A script is the JSON document ``fake_keycloak.py`` plays (its module docstring has the
format): ``era``, ``cluster`` (templates of the view lines the emulated JGroups logs),
``boots`` (boot N is played by the container's N-th start; the last one repeats) and
``events`` (step lists the harness triggers by name).  Every ``after``/``every`` is in
Keycloak seconds; the fake divides them by the scenario's time scale.
"""

from __future__ import annotations

from typing import Any

from scripts import lines as L

Step = dict[str, Any]
Script = dict[str, Any]

UP = {"started": "up", "live": "up", "ready": "up", "realm": "up"}


def _log(after: float, line: str) -> Step:
    return {"after": after, "log": line}


def _fmt(line: str, fmt: str) -> str:
    return L.as_json(line) if fmt == "json" else line


def quarkus_head(fmt: str = "plain") -> list[Step]:
    """Up to the cluster join: about 6 s of a Keycloak 26 boot."""
    return [
        _log(1.0, _fmt(L.Q_HOSTNAME, fmt)),
        _log(2.0, _fmt(L.Q_CACHE_MANAGER, fmt)),
        _log(0.5, _fmt(L.Q_JGROUPS_START, fmt)),
        {"after": 2.0, "cluster": "join"},
        _log(0.5, _fmt(L.Q_LOCAL_ADDRESS, fmt)),
        _log(1.0, _fmt(L.Q_NODE_NAME, fmt)),
    ]


def quarkus_tail(fmt: str = "plain") -> list[Step]:
    """Schema, realm, started; the management interface opens: about 12 s."""
    return [
        _log(2.0, _fmt(L.Q_SCHEMA, fmt)),
        _log(5.0, _fmt(L.Q_MASTER_REALM, fmt)),
        _log(3.0, _fmt(L.Q_ADMIN_USER, fmt)),
        _log(2.0, _fmt(L.Q_STARTED, fmt)),
        {"listen": True, "http": UP},
    ]


def quarkus_ok(fmt: str = "plain") -> Script:
    return {"steps": [*quarkus_head(fmt), *quarkus_tail(fmt)]}


def quarkus_fatal_exit(fmt: str = "plain") -> Script:
    """Keycloak 26 failing to start: the cause, the recovery manager stopping, exit 1."""
    return {
        "steps": [
            *quarkus_head(fmt),
            _log(2.0, _fmt(L.Q_SCHEMA, fmt)),
            _log(3.0, _fmt(L.Q_RECOVERY_STOP, fmt)),
            _log(0.2, L.Q_START_FAILED_KEYSTORE),
            {"after": 0.5, "cluster": "leave"},
            {"after": 0.5, "exit": 1},
        ]
    }


def quarkus_hang(fmt: str = "plain") -> Script:
    """The bootstrap stops logging after the cache manager starts; no port ever opens."""
    return {"steps": [_log(1.0, _fmt(L.Q_HOSTNAME, fmt)), _log(2.0, _fmt(L.Q_CACHE_MANAGER, fmt))]}


def quarkus_slow(
    *, migration_steps: int, migration_every: float, lock_retries: int, lock_every: float
) -> Script:
    """A long database-lock wait, then a long migration, both logging progress."""
    return {
        "steps": [
            *quarkus_head(),
            {
                "after": 1.0,
                "repeat": {"count": lock_retries, "every": lock_every, "log": L.Q_LOCK_RETRY},
            },
            {
                "after": 1.0,
                "repeat": {
                    "count": migration_steps,
                    "every": migration_every,
                    "log": L.Q_MIGRATING,
                },
            },
            *quarkus_tail(),
        ]
    }


def quarkus_script(*boots: Script, fmt: str = "plain") -> Script:
    return {
        "era": "quarkus",
        "cluster": {
            "alone_line": _fmt(L.Q_ALONE, fmt),
            "view_line": _fmt(L.Q_VIEW, fmt),
            "joined_line": _fmt(L.Q_JOINED, fmt),
            "left_line": _fmt(L.Q_LEFT, fmt),
        },
        "boots": list(boots),
        "events": {
            "db_down": [
                {"http": {"ready": "db_down"}},
                {"repeat": {"count": 4, "every": 15.0, "log": L.Q_DB_REFUSED}},
            ],
            "db_up": [{"http": {"ready": "up"}}],
            "oom": [_log(0.0, _fmt(L.Q_OOM[0], fmt)), _log(8.0, _fmt(L.Q_OOM[1], fmt))],
            "live_503": [{"http": {"live": "down"}}],
            "noise": [_log(0.0, _fmt(L.Q_LOGIN_ERROR, fmt))],
        },
    }


# --------------------------------------------------------------------------- WildFly era


def wildfly_head() -> list[Step]:
    return [
        _log(0.5, L.W_MODULES),
        _log(1.0, L.W_STARTING_16),
        _log(0.5, L.W_KEYSTORE),
        _log(0.5, L.W_HTTP_LISTENER),
        {"listen": True, "http": {"realm": "not_found"}},
        _log(1.0, L.W_JGROUPS_SUBSYSTEM),
        _log(0.5, L.W_ISPN_VERSION),
        _log(0.5, L.W_JGROUPS_START),
        {"after": 3.0, "cluster": "join"},
        _log(1.0, L.W_DB_INFO),
    ]


def wildfly_ok() -> Script:
    return {
        "steps": [
            *wildfly_head(),
            _log(4.0, L.W_MASTER_REALM),
            _log(2.0, L.W_CACHE_STARTED),
            _log(3.0, L.W_STARTED_16),
            {"http": UP},
            _log(2.0, L.W_VFS),
        ]
    }


def wildfly_liquibase_broken(fatal_line: str) -> Script:
    """The migration fails; the JVM keeps running, /auth is not deployed (404)."""
    return {
        "steps": [
            *wildfly_head(),
            _log(4.0, fatal_line),
        ]
    }


def wildfly_script(*boots: Script, view_line: str = L.W_VIEW_16) -> Script:
    return {
        "era": "wildfly",
        "cluster": {"alone_line": L.W_ALONE, "view_line": view_line, "joined_line": L.W_JOINED},
        "boots": list(boots),
        "events": {"realm_503": [{"http": {"realm": "down"}}]},
    }
