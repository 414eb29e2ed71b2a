"""The HTTP endpoints over a real socket (aiohttp TestServer), driven by real log lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from ci_tools import describe, run, tool
from daemon_harness import (
    ALONE_VIEW_LINE,
    BOOT_MARKER_LINE,
    LIQUIBASE_LINE,
    RAW_FRAGMENTS,
    STARTED_LINE,
    VIEW_LINE,
    WALL_AT_START,
    WALL_AT_START_TEXT,
    Harness,
    kube_facts,
    make_harness,
)
from prometheus_client.parser import text_string_to_metric_families

from sidecar import __version__
from sidecar.core.events import EventKind
from sidecar.core.health import REASONS
from sidecar.http.app import create_app, metrics_handler, rfc3339

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
VERDICT_PATHS = ("/livez", "/readyz", "/startupz")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path)
    yield made
    made.source.close()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(harness.ctx))) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


async def get_json(client: Client, path: str) -> tuple[int, Any]:
    async with client.get(path) as response:
        return response.status, await response.json()


async def get_text(client: Client, path: str, **headers: str) -> tuple[int, str]:
    async with client.get(path, headers=headers) as response:
        return response.status, await response.text()


# --- verdict endpoints ------------------------------------------------------------------------


async def test_livez_passes_after_the_started_line(harness: Harness, client: Client) -> None:
    harness.write_log(STARTED_LINE)

    status, body = await get_json(client, "/livez")

    assert (status, body["status"], body["verdict"], body["reasons"]) == (200, "ok", "live", [])


async def test_membership_loss_fails_livez_after_the_grace_with_no_worker_running(
    harness: Harness, client: Client
) -> None:
    harness.write_log(STARTED_LINE, VIEW_LINE, ALONE_VIEW_LINE)
    harness.kube(kube_facts(budget_enabled=False))  # a ready peer this replica cannot see
    grace_seconds = harness.ctx.policy.membership_grace_seconds

    harness.clock.advance(grace_seconds - 1)
    before = await get_json(client, "/livez")
    harness.clock.advance(1)
    status, body = await get_json(client, "/livez")

    assert before[0] == 200
    assert (status, body["reasons"]) == (503, ["cluster_peers_missing"])


async def test_livez_fails_on_the_liquibase_line(harness: Harness, client: Client) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    status, body = await get_json(client, "/livez")

    assert (status, body["status"], body["reasons"]) == (503, "failing", ["startup_fatal"])


async def test_livez_names_the_failing_check_with_reason_detail_and_since(
    harness: Harness, client: Client
) -> None:
    harness.clock.advance(17.25)
    harness.write_log(LIQUIBASE_LINE)

    _, body = await get_json(client, "/livez")

    failing = [c for c in body["checks"] if not c["ok"]]
    assert failing == [
        {
            "name": "startup",
            "ok": False,
            "reason": "startup_fatal",
            "since": "2024-12-07T17:52:40.250Z",
            "detail": "liquibase",
        }
    ]


async def test_failing_verdict_since_is_when_the_failure_began(
    harness: Harness, client: Client
) -> None:
    harness.clock.advance(17.25)
    harness.write_log(LIQUIBASE_LINE)
    harness.clock.advance(100.0)

    _, body = await get_json(client, "/livez")

    assert body["since"] == "2024-12-07T17:52:40.250Z"


async def test_passing_verdict_since_is_the_last_change(harness: Harness, client: Client) -> None:
    harness.clock.advance(40.5)
    harness.write_log(STARTED_LINE)
    harness.clock.advance(100.0)

    _, body = await get_json(client, "/readyz")

    assert (body["status"], body["since"]) == ("ok", "2024-12-07T17:53:03.500Z")


async def test_readyz_fails_while_keycloak_is_starting(harness: Harness, client: Client) -> None:
    harness.write_log(VIEW_LINE)

    status, body = await get_json(client, "/readyz")

    assert (status, body["verdict"], body["reasons"]) == (503, "ready", ["not_started"])


async def test_readyz_fails_while_the_database_is_down_but_livez_passes(
    tmp_path: Path,
) -> None:
    made = make_harness(tmp_path, probe_targets=("ready",))
    made.write_log(STARTED_LINE)
    made.probe("ready", error="body")
    async with TestClient(TestServer(create_app(made.ctx))) as test_client:
        ready_status, ready = await get_json(test_client, "/readyz")
        live_status, _ = await get_json(test_client, "/livez")
    made.source.close()

    assert (ready_status, ready["reasons"], live_status) == (503, ["readiness_probe_failing"], 200)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), (503, "failing")),
        ((STARTED_LINE,), (200, "ok")),
        ((LIQUIBASE_LINE,), (200, "ok")),
    ],
    ids=["starting", "started", "failed-startup-is-over"],
)
async def test_startupz_passes_once_the_startup_phase_is_over(
    harness: Harness, client: Client, lines: tuple[str, ...], expected: tuple[int, str]
) -> None:
    if lines:
        harness.write_log(*lines)

    status, body = await get_json(client, "/startupz")

    assert (status, body["status"], body["verdict"]) == (*expected, "startup")


async def test_startupz_while_starting_says_since_the_boot_began(client: Client) -> None:
    _, body = await get_json(client, "/startupz")

    assert (body["reasons"], body["since"]) == (["not_started"], WALL_AT_START_TEXT)


# --- verbose ----------------------------------------------------------------------------------


async def test_verbose_lists_every_check_when_passing(harness: Harness, client: Client) -> None:
    harness.write_log(STARTED_LINE)

    status, text = await get_text(client, "/livez?verbose")

    assert (status, text) == (
        200,
        "[+]startup ok\n[+]runtime ok\n[+]bootstrap ok\n[+]keycloak_live_endpoint ok\n"
        "livez check passed\n",
    )


async def test_verbose_explains_a_failing_check(harness: Harness, client: Client) -> None:
    harness.clock.advance(17.25)
    harness.write_log(LIQUIBASE_LINE)

    status, text = await get_text(client, "/livez?verbose=1")

    assert (status, text.splitlines()[0], text.splitlines()[-1]) == (
        503,
        '[-]startup failed: reason=startup_fatal detail="liquibase" since=2024-12-07T17:52:40.250Z',
        "livez check failed",
    )


async def test_verbose_answers_in_plain_text(client: Client) -> None:
    async with client.get("/readyz?verbose") as response:
        content_type = response.content_type

    assert content_type == "text/plain"


async def test_verbose_names_the_endpoint_in_the_last_line(client: Client) -> None:
    _, text = await get_text(client, "/startupz?verbose")

    assert text.splitlines()[-1] == "startupz check failed"


@pytest.mark.parametrize("path", VERDICT_PATHS)
async def test_head_answers_with_the_verdict_status(
    harness: Harness, client: Client, path: str
) -> None:
    harness.write_log(LIQUIBASE_LINE)
    expected = {"/livez": 503, "/readyz": 503, "/startupz": 200}[path]

    async with client.head(path) as response:
        status, body = response.status, await response.read()

    assert (status, body) == (expected, b"")


# --- /metrics ---------------------------------------------------------------------------------


async def test_metrics_serves_the_verdict_gauges(harness: Harness, client: Client) -> None:
    harness.write_log(LIQUIBASE_LINE)

    _, text = await get_text(client, "/metrics")

    samples = _samples(text)
    assert (
        samples[("keycloak_sidecar_live", ())],
        samples[("keycloak_sidecar_failing", (("reason", "startup_fatal"),))],
    ) == (0.0, 1.0)


async def test_metrics_is_text_format_by_default(client: Client) -> None:
    async with client.get("/metrics") as response:
        content_type = response.headers["Content-Type"]

    assert content_type.startswith("text/plain; version=0.0.4")


async def test_metrics_answers_openmetrics_when_asked(client: Client) -> None:
    async with client.get("/metrics", headers={"Accept": OPENMETRICS}) as response:
        content_type, text = response.headers["Content-Type"], await response.text()

    assert (content_type.startswith("application/openmetrics-text"), text.endswith("# EOF\n")) == (
        True,
        True,
    )


async def test_metrics_has_every_reason_and_event_kind_as_a_label(
    harness: Harness, client: Client
) -> None:
    _, text = await get_text(client, "/metrics")

    samples = _samples(text)
    reasons = {dict(labels)["reason"] for name, labels in samples if name.endswith("_failing")}
    events = {dict(labels)["event"] for name, labels in samples if name.endswith("events_total")}
    assert (reasons, events) == (set(REASONS), {kind.value for kind in EventKind})


async def test_metrics_name_filter_finds_a_family_emitted_only_later(
    harness: Harness, client: Client
) -> None:
    harness.ctx.state.update_kube(kube_facts())

    _, text = await get_text(client, "/metrics?name[]=keycloak_sidecar_cluster_expected_members")

    assert _samples(text) == {("keycloak_sidecar_cluster_expected_members", ()): 2.0}


@pytest.mark.parametrize("accept", ["", OPENMETRICS], ids=["text", "openmetrics"])
async def test_metrics_fallback_matches_the_library_handler(harness: Harness, accept: str) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)
    bodies = []
    for prefer_library in (True, False):
        app = web.Application()
        app.router.add_get(
            "/metrics", metrics_handler(harness.ctx.registry, prefer_library=prefer_library)
        )
        async with (
            TestClient(TestServer(app)) as test_client,
            test_client.get("/metrics", headers={"Accept": accept}) as response,
        ):
            bodies.append(
                (response.headers["Content-Type"], _without_process(await response.text()))
            )

    assert bodies[0] == bodies[1]


@pytest.mark.tools
async def test_promtool_accepts_the_metrics_text(
    harness: Harness, client: Client, tmp_path: Path
) -> None:
    promtool = tool("promtool")
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)
    harness.probe("live", error="timeout")
    harness.ctx.state.update_kube(kube_facts(kill_slot_held=True))
    harness.ctx.kube_api_errors[("list_pods", "403")] = 2
    _, text = await get_text(client, "/metrics")
    exposition = tmp_path / "metrics.txt"
    exposition.write_text(text)

    result = await asyncio.to_thread(
        run, ["sh", "-c", f'"{promtool}" check metrics < "{exposition}"']
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, ""), describe(result)


# --- /status ----------------------------------------------------------------------------------


async def test_status_reports_the_boot(harness: Harness, client: Client) -> None:
    harness.clock.advance(17.25)
    harness.write_log(LIQUIBASE_LINE)

    _, body = await get_json(client, "/status")

    boot = body["boot"]
    # the log was empty when the sidecar started: the boot began with its first line
    assert (boot["number"], boot["cause"], boot["started_at"], boot["fatal_at"]) == (
        0,
        "initial",
        "2024-12-07T17:52:40.250Z",
        "2024-12-07T17:52:40.250Z",
    )
    assert (boot["fatal_reasons"], boot["complete_at"], boot["embedded"]) == (
        ["liquibase"],
        None,
        False,
    )


async def test_status_reports_every_verdict(harness: Harness, client: Client) -> None:
    harness.write_log(LIQUIBASE_LINE)

    _, body = await get_json(client, "/status")

    summary = {name: (v["ok"], v["reasons"]) for name, v in body["verdicts"].items()}
    assert summary == {
        "started": (False, ["not_started"]),
        "live": (False, ["startup_fatal"]),
        "ready": (False, ["not_started", "startup_fatal"]),
        "startup": (True, []),
    }
    assert (body["kill_wanted"], body["db_down"]) == ("startup_fatal", False)


async def test_status_reports_the_cluster_view(harness: Harness, client: Client) -> None:
    harness.clock.advance(2.0)
    harness.write_log(VIEW_LINE)

    _, body = await get_json(client, "/status")

    view = body["cluster"]["view"]
    assert (view["view_id"], view["size"], view["members"], body["cluster"]["view_since"]) == (
        1,
        2,
        ["keycloak-controller-559a8/keycloak", "keycloak-controller-zorqg/keycloak"],
        "2024-12-07T17:52:25.000Z",
    )


async def test_status_shows_member_names_only_as_parsed(harness: Harness, client: Client) -> None:
    """Raw log text between a view's brackets never reaches /status."""
    harness.clock.advance(2.0)
    harness.write_log(
        VIEW_LINE.replace("keycloak-controller-zorqg/keycloak", "s3cret user admin")
    )

    _, text = await get_text(client, "/status")

    view = json.loads(text)["cluster"]["view"]
    assert view["members"] == ["keycloak-controller-559a8/keycloak", "(unrecognised)"]
    assert "s3cret" not in text


async def test_status_reports_the_probes(tmp_path: Path) -> None:
    made = make_harness(tmp_path, probe_targets=("live", "ready"))
    made.probe("live")
    made.clock.advance(1.0)
    made.probe("ready", error="body")
    async with TestClient(TestServer(create_app(made.ctx))) as test_client:
        _, body = await get_json(test_client, "/status")
    made.source.close()

    ready = body["probes"]["ready"]
    assert (body["probes"]["live"]["ok"], ready["ok"], ready["error"], ready["failing_since"]) == (
        True,
        False,
        "body",
        "2024-12-07T17:52:24.000Z",
    )
    assert (ready["keycloak_status"], ready["checks"]) == (
        "DOWN",
        [{"name": "Keycloak database connections health check", "up": False}],
    )


async def test_status_reports_the_log(harness: Harness, client: Client) -> None:
    harness.clock.advance(3.0)
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    _, body = await get_json(client, "/status")

    assert body["log"] == {
        "state": "ok",
        "state_detail": "",
        "present": True,
        "caught_up": True,
        "lines_total": 2,
        "records_classified": 2,
        "lines_truncated": 0,
        "records_truncated": 0,
        "last_error": "",
        "last_line_at": "2024-12-07T17:52:26.000Z",
    }


async def test_status_reports_event_counts(harness: Harness, client: Client) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)

    _, body = await get_json(client, "/status")

    assert (body["events_total"], body["startup_fatal_total"], body["boots_total"]) == (
        {"cluster_view": 1, "startup_fatal": 1},
        {"liquibase": 1},
        0,
    )


async def test_status_reports_recent_boots(harness: Harness, client: Client) -> None:
    harness.write_log(BOOT_MARKER_LINE, STARTED_LINE)
    harness.clock.advance(600.0)
    harness.write_log(BOOT_MARKER_LINE)

    _, body = await get_json(client, "/status")

    assert body["recent_boots"] == [
        {"number": 0, "cause": "initial", "started_at": WALL_AT_START_TEXT},
        {"number": 1, "cause": "log", "started_at": "2024-12-07T18:02:23.000Z"},
    ]


async def test_status_kube_is_null_without_kubernetes(client: Client) -> None:
    _, body = await get_json(client, "/status")

    assert body["kube"] is None


async def test_status_kube_has_facts_and_membership(harness: Harness, client: Client) -> None:
    harness.ctx.state.update_kube(kube_facts(kill_slot_held=True))

    _, body = await get_json(client, "/status")

    kube = body["kube"]
    assert (kube["own_pod"], kube["kill_slot_held"], kube["peers"][0]["ready_at"]) == (
        "keycloak-controller-559a8",
        True,
        WALL_AT_START_TEXT,
    )
    assert (kube["membership"]["ok"], kube["membership"]["expected_members"]) == (True, 2)


async def test_status_shows_settings_and_policy(harness: Harness, client: Client) -> None:
    _, body = await get_json(client, "/status")

    settings = body["settings"]
    assert (settings["listen"], settings["kill_budget"], settings["keycloak_url"]) == (
        "0.0.0.0:9095",
        1,
        "http://127.0.0.1:9000",
    )
    assert settings["policy"]["startup_deadline_seconds"] == 1200.0


async def test_status_hides_credentials_in_the_keycloak_url(tmp_path: Path) -> None:
    made = make_harness(
        tmp_path, environ={"SIDECAR_KEYCLOAK_URL": "https://admin:s3cret@keycloak:9000"}
    )
    async with TestClient(TestServer(create_app(made.ctx))) as test_client:
        _, text = await get_text(test_client, "/status")
    made.source.close()

    assert ("s3cret" in text, json.loads(text)["settings"]["keycloak_url"]) == (
        False,
        "https://keycloak:9000",
    )


async def test_status_times_are_rfc3339_with_milliseconds(client: Client) -> None:
    _, body = await get_json(client, "/status")

    assert (body["now"], body["version"]) == (WALL_AT_START_TEXT, __version__)


# --- everything else --------------------------------------------------------------------------


async def test_no_response_contains_raw_log_text(harness: Harness, client: Client) -> None:
    harness.write_log(VIEW_LINE, LIQUIBASE_LINE)
    paths = ["/", "/status", "/metrics", *VERDICT_PATHS, *(p + "?verbose" for p in VERDICT_PATHS)]

    bodies = [(await get_text(client, path))[1] for path in paths]
    bodies.append((await get_text(client, "/metrics", Accept=OPENMETRICS))[1])

    leaks = [
        (p, f) for p, body in zip(paths, bodies, strict=False) for f in RAW_FRAGMENTS if f in body
    ]
    assert leaks == []


async def test_unknown_paths_are_not_found(client: Client) -> None:
    status, _ = await get_text(client, "/health")

    assert status == 404


async def test_index_lists_the_endpoints(client: Client) -> None:
    status, text = await get_text(client, "/")

    listed = {line.split()[0] for line in text.splitlines() if line.startswith("/")}
    assert (status, listed) == (
        200,
        {"/livez", "/readyz", "/startupz", "/healthz", "/metrics", "/status", "/"},
    )


def test_rfc3339_has_milliseconds_and_z() -> None:
    assert rfc3339(WALL_AT_START + 0.5) == "2024-12-07T17:52:23.500Z"


def test_rfc3339_of_nothing_is_none() -> None:
    assert rfc3339(None) is None


# --- helpers ----------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _without_process(text: str) -> str:
    """Drop the process and GC series: CPU time and memory move between two scrapes."""
    return "\n".join(
        line for line in text.splitlines() if "process_" not in line and "python_gc" not in line
    )


class _CountingCollector:
    """A registry member that counts how often /metrics renders."""

    def __init__(self) -> None:
        self.collections = 0

    def collect(self) -> list[Any]:
        self.collections += 1
        return []


async def test_metrics_storm_renders_once_while_nothing_changes(
    harness: Harness, client: Client
) -> None:
    """300 concurrent scrapes cost one rendering: the probes are not starved (issue 15)."""
    counter = _CountingCollector()
    harness.ctx.registry.register(counter)  # type: ignore[arg-type]
    registered = counter.collections  # the registry describes it once

    answers = await asyncio.gather(*(get_text(client, "/metrics") for _ in range(300)))

    assert {status for status, _ in answers} == {200}
    assert len({text for _, text in answers}) == 1
    assert counter.collections - registered == 1
    harness.clock.advance(1.0)  # --http-cache 1s: then rendered afresh
    await get_text(client, "/metrics")
    assert counter.collections - registered == 2


async def test_metrics_are_rendered_afresh_when_the_log_moves(
    harness: Harness, client: Client
) -> None:
    counter = _CountingCollector()
    harness.ctx.registry.register(counter)  # type: ignore[arg-type]
    registered = counter.collections
    await get_text(client, "/metrics")
    harness.write_log(VIEW_LINE)
    await get_text(client, "/metrics")
    assert counter.collections - registered == 2


# --- the log source's state: information, never a failing check ----------------------------


async def test_readyz_verbose_tells_the_log_source_state(harness: Harness, client: Client) -> None:
    harness.write_log(STARTED_LINE)
    harness.observe()

    status, text = await get_text(client, "/readyz?verbose")

    assert status == 200
    assert "[i]log_source ok (information, not a check)" in text.splitlines()


async def test_missing_log_file_is_information_not_a_failing_check(
    harness: Harness, client: Client
) -> None:
    harness.write_log(STARTED_LINE)
    harness.log_path.unlink()
    harness.source.poll()
    harness.clock.advance(1.0)
    harness.observe()

    status, text = await get_text(client, "/readyz?verbose")
    _, body = await get_json(client, "/status")

    assert status == 200
    assert not [line for line in text.splitlines() if line.startswith("[-]")]
    assert "[i]log_source missing:" in text
    assert (body["log"]["state"], body["log"]["present"]) == ("missing", False)


async def test_log_source_without_lines_for_ten_minutes_is_quiet(
    harness: Harness, client: Client
) -> None:
    harness.write_log(STARTED_LINE)
    harness.clock.advance(601.0)

    _, body = await get_json(client, "/status")

    assert (body["log"]["state"], body["log"]["state_detail"]) == ("quiet", "no line for 10 min")


async def test_a_checks_since_is_one_timestamp_everywhere(harness: Harness, client: Client) -> None:
    """JSON, ?verbose and /status show the same since, even after the wall clock steps."""
    harness.clock.advance(17.25)
    harness.write_log(LIQUIBASE_LINE)
    _, body = await get_json(client, "/livez")
    harness.clock.wall_offset += 2.5  # NTP steps the wall clock
    harness.clock.advance(1.0)
    _, text = await get_text(client, "/livez?verbose")
    _, status = await get_json(client, "/status")

    (check,) = [c for c in body["checks"] if not c["ok"]]
    (line,) = [line for line in text.splitlines() if line.startswith("[-]startup")]
    (status_check,) = [c for c in status["verdicts"]["live"]["checks"] if not c["ok"]]
    assert line.endswith(f"since={check['since']}")
    assert status_check["since"] == check["since"] == "2024-12-07T17:52:40.250Z"
