"""The README's tables say what the code does (settings, reason codes, metrics, endpoints)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sidecar.core.events import (
    CLUSTER_DEGRADED_REASONS,
    DB_UNAVAILABLE_REASONS,
    RUNTIME_FATAL_REASONS,
    STARTUP_FATAL_REASONS,
    EventKind,
)
from sidecar.core.health import REASONS
from sidecar.http.metrics import FAMILIES
from sidecar.settings import SPECS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_settings_table_lists_every_setting_with_its_default() -> None:
    table = section("Settings")
    rows = re.findall(r"^\| `(--[\w-]+)` \| `(SIDECAR_\w+)` \| `([^`]*)` \|", table, re.M)
    documented = {flag: (env, default) for flag, env, default in rows}
    expected = {s.cli_flag: (s.env, s.default or "(empty)") for s in SPECS}
    assert documented == expected


def test_reason_table_lists_every_verdict_reason() -> None:
    table = section("Reason codes")
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented == set(REASONS)


@pytest.mark.parametrize("reason", sorted(STARTUP_FATAL_REASONS | RUNTIME_FATAL_REASONS
                                          | CLUSTER_DEGRADED_REASONS | DB_UNAVAILABLE_REASONS))
def test_event_reasons_are_documented(reason: str) -> None:
    assert f"`{reason}`" in section("Reason codes")


def test_metrics_table_lists_every_metric() -> None:
    table = section("Metrics")
    names = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, re.M):
        names.update(re.findall(r"`(\w+)`", cell))
    exported = {f.name + ("_total" if f.kind == "counter" else "") for f in FAMILIES}
    exported |= {"probe_duration_seconds", "probe_failures_total"}
    assert exported <= names, exported - names
    assert names - {"metric"} <= exported, names - exported


def test_metrics_table_gives_each_metric_its_type_and_labels() -> None:
    rows = re.findall(r"^\| ([^|]+) \| (\w+) \|([^|]*)\|", section("Metrics"), re.M)
    documented = {
        name: (kind, tuple(re.findall(r"`(\w+)`", labels)))
        for names, kind, labels in rows
        for name in re.findall(r"`(\w+)`", names)
    }
    exported = {f.name + ("_total" if f.kind == "counter" else ""): (f.kind, f.labels)
                for f in FAMILIES}
    exported["probe_duration_seconds"] = ("histogram", ("target",))
    exported["probe_failures_total"] = ("counter", ("target", "reason"))
    assert documented == exported


def test_every_event_kind_is_documented() -> None:
    table = section("Metrics")
    for kind in EventKind:
        assert f"`{kind.value}`" in table


def test_endpoints_table_lists_the_routes() -> None:
    from prometheus_client import CollectorRegistry

    from sidecar.clock import ManualClock
    from sidecar.context import Context
    from sidecar.core.health import Policy, TransitionTracker
    from sidecar.core.state import MonitorState
    from sidecar.housekeeping import Housekeeper
    from sidecar.http.app import create_app
    from sidecar.log.pipeline import Pipeline
    from sidecar.settings import load_settings

    state = MonitorState(0.0)
    ctx = Context(load_settings({}, {}), ManualClock(), state, Policy(), Pipeline([], state),
                  CollectorRegistry(), TransitionTracker(0.0), Housekeeper(0.0))
    routes = {r.resource.canonical for r in create_app(ctx).router.routes()
              if r.resource is not None}
    table = section("Endpoints")
    documented = set(re.findall(r"^\| `(/\w*)`", table, re.M))
    assert documented == routes  # "/" too: the status page


def test_architecture_table_names_every_module() -> None:
    package = Path(__file__).resolve().parent.parent / "sidecar"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if p.name not in {"__init__.py", "__main__.py"}}
    table = (package.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", table, re.M))
    assert modules == listed
