"""Metrics rendered from a real context driven by real Keycloak log lines and probe results
(the daemon's objects come from ``daemon_harness.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import (
    BOOT_MARKER_LINE,
    LIQUIBASE_LINE,
    STARTED_LINE,
    VIEW_LINE,
    WALL_AT_START,
    Harness,
    P,
    kube_facts,
    make_harness,
)
from prometheus_client import REGISTRY, generate_latest

from sidecar import __version__
from sidecar.context import Context
from sidecar.core.events import STARTUP_FATAL_REASONS, EventKind
from sidecar.core.health import REASONS, Verdicts
from sidecar.http.metrics import PROBE_ERRORS, StateCollector


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path)
    yield made
    made.source.close()


@pytest.fixture
def probed(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path, probe_targets=("started", "live", "ready"))
    yield made
    made.source.close()


# --- verdicts ---------------------------------------------------------------------------------


def test_verdict_gauges_are_zero_after_a_liquibase_failure(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    values = [harness.sample(name) for name in ("live", "ready", "started")]

    assert values == [0.0, 0.0, 0.0]


def test_verdict_gauges_are_one_after_the_started_line(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    values = [harness.sample(name) for name in ("live", "ready", "started")]

    assert values == [1.0, 1.0, 1.0]


def test_failing_marks_exactly_the_reasons_of_failing_checks(harness: Harness) -> None:
    harness.write_log(LIQUIBASE_LINE)

    failing = {r for r in REASONS if harness.sample("failing", reason=r) == 1.0}

    assert failing == {"startup_fatal", "not_started"}


def test_failing_has_a_series_for_every_health_reason(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    values = {r: harness.sample("failing", reason=r) for r in REASONS}

    assert values == dict.fromkeys(REASONS, 0.0)


def test_verdict_change_timestamp_is_the_wall_time_of_the_change(harness: Harness) -> None:
    harness.clock.advance(30.0)
    harness.write_log(LIQUIBASE_LINE)

    changed_at = harness.sample("verdict_change_timestamp_seconds", verdict="live")

    assert changed_at == WALL_AT_START + 30.0


def test_verdict_change_timestamp_of_an_unchanged_verdict_is_the_tracker_start(
    harness: Harness,
) -> None:
    harness.clock.advance(30.0)
    harness.write_log(LIQUIBASE_LINE)

    changed_at = harness.sample("verdict_change_timestamp_seconds", verdict="started")

    assert changed_at == WALL_AT_START


def test_collector_evaluates_the_verdicts_once_per_scrape(tmp_path: Path) -> None:
    made = make_harness(tmp_path)
    calls = []

    class CountingContext(Context):
        def verdicts(self) -> Verdicts:
            calls.append(1)
            return super().verdicts()

    ctx = made.ctx
    counting = CountingContext(
        ctx.settings,
        ctx.clock,
        ctx.state,
        ctx.policy,
        ctx.pipeline,
        ctx.registry,
        ctx.tracker,
        ctx.housekeeper,
    )
    list(StateCollector(counting).collect())
    made.source.close()

    assert len(calls) == 1


# --- log --------------------------------------------------------------------------------------


def test_log_lines_total_counts_every_line_read(harness: Harness) -> None:
    harness.write_log("2024-12-07 17:51:40,000 INFO  [org.example] (main) hello", STARTED_LINE)
    harness.write_log(VIEW_LINE)

    assert harness.sample("log_lines_total") == 3.0


def test_counters_do_not_grow_between_scrapes(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)
    first = generate_latest(harness.ctx.registry)

    second = generate_latest(harness.ctx.registry)

    assert _counter_lines(first) == _counter_lines(second)


def test_log_lines_truncated_total_comes_from_the_source(tmp_path: Path) -> None:
    made = make_harness(tmp_path, max_line_bytes=300)
    made.write_log(LIQUIBASE_LINE, STARTED_LINE, "short line")
    made.source.close()

    assert made.sample("log_lines_truncated_total") == 1.0


def test_log_records_truncated_total_comes_from_the_pipeline(tmp_path: Path) -> None:
    made = make_harness(tmp_path, max_record_lines=2)
    stack = [f"\tat org.example.Frame{i}.run(Frame.java:{i})" for i in range(6)]
    made.write_log(LIQUIBASE_LINE, *stack)
    made.source.close()

    assert made.sample("log_records_truncated_total") == 1.0


def test_log_events_total_has_every_event_kind(harness: Harness) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    values = {
        kind.value: harness.sample("log_events_total", event=kind.value) for kind in EventKind
    }

    expected = dict.fromkeys((kind.value for kind in EventKind), 0.0)
    expected.update(cluster_view=1.0, startup_fatal=1.0)
    assert values == expected


def test_startup_fatal_total_has_every_reason(harness: Harness) -> None:
    harness.write_log(LIQUIBASE_LINE)

    values = {r: harness.sample("startup_fatal_total", reason=r) for r in STARTUP_FATAL_REASONS}

    expected = dict.fromkeys(STARTUP_FATAL_REASONS, 0.0)
    expected["liquibase"] = 1.0
    assert values == expected


def test_log_source_up_follows_the_source(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)
    up_while_open = harness.sample("log_source_up")
    harness.log_path.unlink()
    harness.source.poll()

    assert (up_while_open, harness.sample("log_source_up")) == (1.0, 0.0)


def test_log_source_up_is_zero_without_a_source(harness: Harness) -> None:
    harness.ctx.source = None

    assert harness.sample("log_source_up") == 0.0


def test_last_log_line_timestamp_is_wall_time(harness: Harness) -> None:
    harness.clock.advance(12.5)
    harness.write_log(STARTED_LINE)

    assert harness.sample("last_log_line_timestamp_seconds") == WALL_AT_START + 12.5


def test_last_log_line_timestamp_is_absent_before_any_line(harness: Harness) -> None:
    assert harness.sample("last_log_line_timestamp_seconds") is None


# --- boots ------------------------------------------------------------------------------------


def test_boots_total_counts_a_new_boot_in_the_log(harness: Harness) -> None:
    harness.write_log(BOOT_MARKER_LINE)
    harness.write_log(STARTED_LINE)
    harness.write_log(BOOT_MARKER_LINE)

    assert harness.sample("boots_total") == 2.0


def test_boot_start_timestamp_is_the_wall_time_of_the_new_boot(harness: Harness) -> None:
    harness.write_log(BOOT_MARKER_LINE, STARTED_LINE)
    harness.clock.advance(600.0)
    harness.write_log(BOOT_MARKER_LINE)

    assert harness.sample("boot_start_timestamp_seconds") == WALL_AT_START + 600.0


# --- probes -----------------------------------------------------------------------------------


def test_observe_probe_records_the_duration(probed: Harness) -> None:
    probed.probe("ready", latency_seconds=0.004)

    buckets = [
        probed.sample("probe_duration_seconds_bucket", target="ready", le=le)
        for le in ("0.0025", "0.005")
    ]

    assert (buckets, probed.sample("probe_duration_seconds_count", target="ready")) == (
        [0.0, 1.0],
        1.0,
    )


def test_observe_probe_counts_failures_by_error_class(probed: Harness) -> None:
    probed.probe("live", error="timeout")
    probed.probe("live", error="timeout")
    probed.probe("live", error="http_status")

    values = {
        e: probed.sample("probe_failures_total", target="live", reason=e) for e in PROBE_ERRORS
    }

    assert values == {
        "timeout": 2.0,
        "refused": 0.0,
        "connection": 0.0,
        "tls": 0.0,
        "transfer": 0.0,
        "http_status": 1.0,
        "body": 0.0,
    }


def test_observe_probe_does_not_count_a_success_as_failure(probed: Harness) -> None:
    probed.probe("live")

    total = sum(
        probed.sample("probe_failures_total", target="live", reason=e) or 0.0 for e in PROBE_ERRORS
    )

    assert total == 0.0


def test_observe_probe_maps_an_unknown_error_to_other(probed: Harness) -> None:
    probed.probe("live", error="something_new")

    assert probed.sample("probe_failures_total", target="live", reason="other") == 1.0


def test_probe_instruments_have_no_created_series(probed: Harness) -> None:
    probed.probe("live", error="timeout")

    text = generate_latest(probed.ctx.registry).decode()

    assert "_created" not in text


def test_probe_up_follows_the_last_result_per_target(probed: Harness) -> None:
    probed.probe("live")
    probed.probe("ready", error="body")

    values = [probed.sample("probe_up", target=t) for t in ("live", "ready")]

    assert values == [1.0, 0.0]


def test_probe_up_omits_targets_without_a_result(probed: Harness) -> None:
    probed.probe("live")

    assert probed.sample("probe_up", target="started") is None


# --- cluster and Kubernetes -------------------------------------------------------------------


def test_cluster_gauges_without_a_view(harness: Harness) -> None:
    values = [harness.sample("cluster_members"), harness.sample("cluster_view_id")]

    assert values == [0.0, -1.0]


def test_cluster_gauges_follow_the_view_in_the_log(harness: Harness) -> None:
    harness.write_log(VIEW_LINE)

    values = [harness.sample("cluster_members"), harness.sample("cluster_view_id")]

    assert values == [2.0, 1.0]


def test_cluster_expected_members_is_absent_without_kubernetes(harness: Harness) -> None:
    assert harness.sample("cluster_expected_members") is None


def test_cluster_expected_members_counts_ready_peers_and_self(harness: Harness) -> None:
    harness.ctx.state.update_kube(kube_facts())

    assert harness.sample("cluster_expected_members") == 2.0


@pytest.mark.parametrize(("held", "expected"), [(True, 1.0), (False, 0.0)], ids=["held", "free"])
def test_kill_budget_held_follows_the_kube_facts(
    harness: Harness, held: bool, expected: float
) -> None:
    harness.ctx.state.update_kube(kube_facts(kill_slot_held=held))

    assert harness.sample("kill_budget_held") == expected


def test_kill_budget_held_is_zero_without_kubernetes(harness: Harness) -> None:
    assert harness.sample("kill_budget_held") == 0.0


def test_kube_api_errors_total_comes_from_the_context(harness: Harness) -> None:
    harness.ctx.kube_api_errors[("list_pods", "403")] = 3
    harness.ctx.kube_api_errors[("create_event", "timeout")] = 1

    values = [
        harness.sample("kube_api_errors_total", operation="list_pods", code="403"),
        harness.sample("kube_api_errors_total", operation="create_event", code="timeout"),
    ]

    assert values == [3.0, 1.0]


# --- registry ---------------------------------------------------------------------------------


def test_build_info_carries_the_version(harness: Harness) -> None:
    assert harness.sample("build_info", version=__version__) == 1.0


def test_process_metrics_are_on_the_injected_registry(harness: Harness) -> None:
    text = generate_latest(harness.ctx.registry).decode()

    assert ("python_info" in text, "process_start_time_seconds" in text) == (True, True)


def test_nothing_is_registered_on_the_global_registry(harness: Harness) -> None:
    harness.write_log(STARTED_LINE)

    assert REGISTRY.get_sample_value(P + "live") is None


def test_two_contexts_in_one_process_do_not_collide(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_harness(tmp_path / "a")
    second = make_harness(tmp_path / "b")
    first.write_log(STARTED_LINE)
    first.source.close()
    second.source.close()

    assert (first.sample("started"), second.sample("started")) == (1.0, 0.0)


def _counter_lines(text: bytes) -> list[str]:
    """Sample lines of this module's counters (process CPU time moves between scrapes)."""
    return [
        line
        for line in text.decode().splitlines()
        if line.startswith(P) and "_total" in line.split(" ")[0]
    ]
