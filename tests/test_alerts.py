"""The PrometheusRule and the dashboard: promtool check/test rules, names, runbooks.

promtool cannot read a PrometheusRule, so its ``spec`` (the rule groups) is written to a
plain rule file next to a copy of k8s/monitoring/tests/*.yaml.  For the unit tests the
long ``description`` annotations are dropped (promtool compares annotations exactly);
``summary`` stays and the tests check its rendering.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_tools import ROOT, describe, run, tool

MONITORING = ROOT / "k8s" / "monitoring"
RULE = MONITORING / "prometheusrule.yaml"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))
DASHBOARD = MONITORING / "dashboards" / "keycloak-sidecar.json"
# What the sidecar exports (docs/ARCHITECTURE.md, sidecar/http/metrics.py); a live /metrics
# comparison lives with the scrape test.
EXPORTED = {
    f"keycloak_sidecar_{name}"
    for name in [
        "live",
        "ready",
        "started",
        "failing",
        "verdict_change_timestamp_seconds",
        "log_lines_total",
        "log_lines_truncated_total",
        "log_events_total",
        "startup_fatal_total",
        "boots_total",
        "boot_start_timestamp_seconds",
        "probe_duration_seconds",
        "probe_failures_total",
        "probe_up",
        "cluster_members",
        "cluster_view_id",
        "cluster_expected_members",
        "kill_budget_held",
        "kube_api_errors_total",
        "log_source_up",
        "last_log_line_timestamp_seconds",
        "build_info",
    ]
}
REQUIRED_ALERTS = {
    "KeycloakReplicaStartupFailed",
    "KeycloakReplicaStartupHung",
    "KeycloakClusterMembershipLost",
    "KeycloakKillDeferred",
    "KeycloakSidecarDown",
    "KeycloakSidecarNotScraped",
    "KeycloakSidecarRestarting",
}


def rule_groups(*, with_descriptions: bool) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(RULE.read_text())["spec"]
    if not with_descriptions:
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.get("annotations", {}).pop("description", None)
    return spec


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups(with_descriptions=True)["groups"] for r in g["rules"]]


@pytest.mark.tools
def test_promtool_check_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(with_descriptions=True)))
    result = run([tool("promtool"), "check", "rules", str(rules)])
    assert result.returncode == 0, describe(result)
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@pytest.mark.tools
@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(unit_test: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(with_descriptions=False)))
    shutil.copy(unit_test, tmp_path / unit_test.name)
    result = run([tool("promtool"), "test", "rules", unit_test.name], cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    assert "SUCCESS" in result.stdout


@pytest.mark.tools
def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    spec = rule_groups(with_descriptions=False)
    for rule in spec["groups"][0]["rules"]:
        if rule["alert"] == "KeycloakKillDeferred":
            rule["for"] = "1m"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    for unit_test in UNIT_TESTS:
        shutil.copy(unit_test, tmp_path / unit_test.name)
    result = run([tool("promtool"), "test", "rules", *(p.name for p in UNIT_TESTS)], cwd=tmp_path)
    assert result.returncode != 0
    assert "KeycloakKillDeferred" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for unit_test in UNIT_TESTS:
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names >= REQUIRED_ALERTS
    assert firing == names, f"never seen firing: {names - firing}"
    assert silent == names, f"never seen silent: {names - silent}"


def test_every_alert_has_a_runbook() -> None:
    for rule in alerts():
        annotations = rule["annotations"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert annotations["summary"].strip(), rule["alert"]
        assert "Check:" in annotations["description"], rule["alert"]


def metric_names(text: str) -> set[str]:
    names = set(re.findall(r"keycloak_sidecar_[a-z_]+", text))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def test_alerts_use_only_exported_metrics() -> None:
    used = metric_names(" ".join(rule["expr"] for rule in alerts()))
    assert used, "no sidecar metric in the alerts"
    assert used <= EXPORTED, used - EXPORTED


def test_dashboard_queries_use_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all(exprs), "a panel target without a query"
    used = metric_names(" ".join(exprs))
    assert used <= EXPORTED, used - EXPORTED
    # The dashboard shows the verdicts and every failing reason.
    assert {"keycloak_sidecar_live", "keycloak_sidecar_ready", "keycloak_sidecar_failing"} <= used
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
