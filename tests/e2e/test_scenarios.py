"""End to end: the kubelet emulator runs the rendered manifests' probes against simulated
Keycloak pods and the real sidecar, talking to the Kubernetes API double.

Each scenario is an ``async`` body registered with ``@scenario(...)``; it drives the
cluster and asserts who was restarted, how many times and when, in cluster seconds (the
manifest's units: real seconds x scale).  All selected scenarios run concurrently (see
``conftest.py``); a failing one prints its timeline.  How to add one: ``docs/e2e.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from harness import Cluster, Outcome, Scenario
from scripts import keycloak as K
from scripts import lines as L

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCENARIOS: dict[str, Scenario] = {}
Body = Callable[[Cluster], Awaitable[None]]

K0, K1, K2 = "keycloak-0", "keycloak-1", "keycloak-2"
#: the manifest's liveness confirmation (3 x 10 s) plus one period of slack per side
LIVENESS_REACTION_SECONDS = 3 * 10 + 20


def scenario(**options: Any) -> Callable[[Body], Body]:
    def register(body: Body) -> Body:
        name = body.__name__.removeprefix("scenario_")
        SCENARIOS[name] = Scenario(name=name, body=body, **options)
        return body

    return register


def all_ready(cluster: Cluster, *pods: str) -> Callable[[], bool]:
    return lambda: all(cluster.ready(p) for p in pods)


def keycloak_started(cluster: Cluster, *pods: str) -> Callable[[], bool]:
    return lambda: all(cluster.timeline.of("start", p, "keycloak") for p in pods)


def assert_restarts(cluster: Cluster, expected: dict[str, int]) -> None:
    actual = {pod: cluster.restarts(pod) for pod in expected}
    assert actual == expected, f"keycloak restarts {actual}, expected {expected}"


def never_unready_after(cluster: Cluster, pod: str, since: float) -> None:
    drops = [r.at for r in cluster.timeline.of("pod-unready", pod) if r.at >= since]
    assert not drops, f"{pod} went unready at {drops}"


def first_failure(cluster: Cluster, pod: str, probe: str) -> float:
    """When the kubelet's first ``probe`` of the pod's Keycloak container passed
    (startup) or failed (liveness, readiness): the moment the sidecar's verdict showed."""
    for record in cluster.timeline.of(probe, pod, "keycloak"):
        if (" ok " in record.detail) == (probe == "startup"):
            return record.at
    raise AssertionError(f"no {probe} transition for {pod}")


def log_text(cluster: Cluster, pod: str, name: str) -> str:
    path = cluster.pods[pod].local.directory / "volumes" / "keycloak-log" / name
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- scenarios


@scenario(
    variant="wildfly-legacy",
    scripts={
        K0: K.wildfly_script(K.wildfly_ok(), view_line=L.STORY_VIEW),
        K1: K.wildfly_script(
            K.wildfly_liquibase_broken(L.STORY_LIQUIBASE), K.wildfly_ok(), view_line=L.STORY_VIEW
        ),
    },
)
async def scenario_story(c: Cluster) -> None:
    """CONTEXT.md: both start; keycloak-1 loses the migration race; only it is restarted."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    await c.sleep(200)  # long enough for a second kill to show
    assert_restarts(c, {K0: 0, K1: 1})
    (kill,) = c.kills(K1)
    assert kill - first_failure(c, K1, "startup") <= 2 * LIVENESS_REACTION_SECONDS, f"at {kill}"
    views = [line for line in log_text(c, K1, "server.log").splitlines() if "ISPN000094" in line]
    assert views[-1].endswith("(2) [keycloak-0, keycloak-1]"), f"not joined: {views[-1]}"
    never_unready_after(c, K0, c.timeline.of("pod-ready", K0)[0].at)


@scenario(
    variant="wildfly-legacy",
    scripts={
        pod: K.wildfly_script(K.wildfly_liquibase_broken(L.W_FATAL_LIQUIBASE_16), K.wildfly_ok())
        for pod in (K0, K1)
    },
)
async def scenario_both_fail_at_startup(c: Cluster) -> None:
    """Both replicas fail their first boot: the kill budget restarts them one at a time."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=900)
    await c.sleep(100)
    assert_restarts(c, {K0: 1, K1: 1})
    first, second = sorted([(c.kills(K0)[0], K0), (c.kills(K1)[0], K1)])
    restarted_first = c.timeline.of("start", first[1])[1].at
    assert second[0] > restarted_first, f"killed together: {first}, {second}"


@scenario(
    scripts={
        K0: K.quarkus_script(
            K.quarkus_slow(
                migration_steps=1, migration_every=1, lock_retries=15, lock_every=60
            )  # waits 15 min for the database lock, logging a retry every minute
        ),
        K1: K.quarkus_script(
            K.quarkus_slow(
                migration_steps=13, migration_every=120, lock_retries=1, lock_every=1
            )  # migrates for 26 min, one step every 2 min
        ),
    },
    scale=60,
)
async def scenario_slow_progress_never_killed(c: Cluster) -> None:
    """Past the 20 min startup deadline, but logging progress: nobody is restarted."""
    # Keycloak starts once its native sidecar has started (at scale 60 the sidecar's real
    # start-up is minutes of cluster time): the budget below counts from Keycloak's start.
    await c.wait_for("both keycloaks started", keycloak_started(c, K0, K1), within_seconds=900)
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=1790)
    assert c.now() > 1200 + 120, "the boots must outlast the sidecar's startup deadline"
    await c.sleep(60)
    assert_restarts(c, {K0: 0, K1: 0})


@scenario(
    scripts={
        K0: K.quarkus_script(K.quarkus_hang(), K.quarkus_hang(), K.quarkus_ok()),
        K1: K.quarkus_script(K.quarkus_ok()),
    },
    scale=60,
)
async def scenario_silent_hang_killed_once_per_hang(c: Cluster) -> None:
    """Two silent hangs in a row: each killed after the deadline (20 min), not earlier."""
    await c.wait_for("keycloak-0 ready", all_ready(c, K0, K1), within_seconds=3600)
    await c.sleep(60)
    assert_restarts(c, {K0: 2, K1: 0})
    starts = [r.at for r in c.timeline.of("start", K0, "keycloak")]
    # a start record can lag the real exec by up to a real second (spawning under load),
    # and the first boot's deadline counts from Keycloak's first line, after the fake
    # Keycloak's own (real) start-up: two real seconds of slack
    spawn_slack = 2.0 * c.scenario.scale
    for started, killed in zip(starts, c.kills(K0), strict=False):
        hung_for = killed - started
        # the sidecar's deadline (1200 s), well before the kubelet's startup budget (1800 s)
        # (the same real second of scheduling slack applies to the sidecar's own reaction)
        upper = 1200 + LIVENESS_REACTION_SECONDS + 30 + spawn_slack
        assert 1200 - spawn_slack <= hung_for <= upper, hung_for


@scenario(
    replicas=3,
    scripts={pod: K.quarkus_script(K.quarkus_ok()) for pod in (K0, K1, K2)},
)
async def scenario_partition_restarts_the_isolated_replica(c: Cluster) -> None:
    """keycloak-2 is cut off: out of service at once, restarted after the 2 min grace."""
    await c.wait_for("all ready", all_ready(c, K0, K1, K2), within_seconds=600)
    await c.sleep(30)
    cut = c.now()
    c.isolate(K2)
    unready = await c.wait_for("keycloak-2 unready", lambda: not c.ready(K2), within_seconds=40)
    await c.wait_for("keycloak-2 restarted", lambda: c.restarts(K2) == 1, within_seconds=400)
    (killed,) = c.kills(K2)
    assert unready - cut <= 30, f"still in service {unready - cut}s after the partition"
    assert 120 <= killed - cut <= 120 + LIVENESS_REACTION_SECONDS + 30, f"killed at {killed}"
    await c.wait_for("keycloak-2 back", all_ready(c, K2), within_seconds=300)
    await c.sleep(60)
    assert_restarts(c, {K0: 0, K1: 0, K2: 1})
    never_unready_after(c, K0, cut)
    never_unready_after(c, K1, cut)


@scenario(scripts={pod: K.quarkus_script(K.quarkus_ok()) for pod in (K0, K1)})
async def scenario_database_down_for_everyone(c: Cluster) -> None:
    """The shared database is down for 5 min: nobody restarted, nobody ready, then all ready."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    for pod in (K0, K1):
        c.send(pod, "db_down")
    await c.wait_for("both unready", lambda: not (c.ready(K0) or c.ready(K1)), within_seconds=60)
    await c.sleep(300)  # longer than every grace: liveness 60 s, membership 120 s
    assert not (c.ready(K0) or c.ready(K1))
    for pod in (K0, K1):
        c.send(pod, "db_up")
    await c.wait_for("both ready again", all_ready(c, K0, K1), within_seconds=180)
    assert_restarts(c, {K0: 0, K1: 0})


@scenario(scripts={pod: K.quarkus_script(K.quarkus_ok()) for pod in (K0, K1)}, scale=5)
async def scenario_sidecar_restart_leaves_keycloak_alone(c: Cluster) -> None:
    """The sidecar container dies and is restarted while Keycloak is healthy.

    Scale 5 (written when Keycloak's liveness was an httpGet on the sidecar and the
    sidecar's real start-up counted against it); with the fail-open probes it holds at any
    scale, and the scenarios below check the same at scale 30.
    """
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    c.kill_container(K0, "sidecar")
    await c.wait_for("sidecar restarted", lambda: c.restarts(K0, "sidecar") == 1, within_seconds=60)
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=120)
    await c.sleep(60)
    assert_restarts(c, {K0: 0, K1: 0})
    assert c.restarts(K0, "sidecar") == 1


@scenario(scripts={pod: K.quarkus_script(K.quarkus_ok()) for pod in (K0, K1)})
async def scenario_out_of_memory_restarts_that_replica(c: Cluster) -> None:
    """A runtime OutOfMemoryError on keycloak-1: it, and only it, is restarted."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    c.send(K0, "noise")  # a benign LOGIN_ERROR on the other replica
    oom_at = c.now()
    c.send(K1, "oom")
    await c.wait_for("keycloak-1 restarted", lambda: c.restarts(K1) == 1, within_seconds=200)
    (killed,) = c.kills(K1)
    assert killed - oom_at <= LIVENESS_REACTION_SECONDS + 20, f"killed at {killed}"
    await c.wait_for("keycloak-1 ready again", all_ready(c, K1), within_seconds=300)
    await c.sleep(60)
    assert_restarts(c, {K0: 0, K1: 1})
    never_unready_after(c, K0, oom_at)


@scenario(
    variant="wildfly-legacy",
    scripts={pod: K.wildfly_script(K.wildfly_ok()) for pod in (K0, K1)},
)
async def scenario_keycloak16_realm_endpoint_failing(c: Cluster) -> None:
    """Keycloak 16 (WildFly, /auth, time-only lines): /auth answers 503 for good on keycloak-1."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    failing_at = c.now()
    c.send(K1, "realm_503")
    await c.wait_for("keycloak-1 unready", lambda: not c.ready(K1), within_seconds=60)
    await c.wait_for("keycloak-1 restarted", lambda: c.restarts(K1) == 1, within_seconds=300)
    (killed,) = c.kills(K1)
    # Keycloak's own endpoint must fail for --liveness-grace (60 s) before live turns false
    assert 60 <= killed - failing_at <= 60 + LIVENESS_REACTION_SECONDS + 20, f"at {killed}"
    await c.wait_for("keycloak-1 ready again", all_ready(c, K1), within_seconds=300)
    assert_restarts(c, {K0: 0, K1: 1})
    never_unready_after(c, K0, failing_at)


@scenario(scripts={pod: K.quarkus_script(K.quarkus_ok("json"), fmt="json") for pod in (K0, K1)})
async def scenario_keycloak26_json_live_endpoint_failing(c: Cluster) -> None:
    """Keycloak 26 (management port 9000, JSON log file): /health/live 503 on keycloak-0."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    assert '"loggerName":"io.quarkus"' in log_text(c, K0, "keycloak.log")
    failing_at = c.now()
    c.send(K0, "live_503")
    await c.wait_for("keycloak-0 restarted", lambda: c.restarts(K0) == 1, within_seconds=300)
    (killed,) = c.kills(K0)
    assert 60 <= killed - failing_at <= 60 + LIVENESS_REACTION_SECONDS + 20, f"at {killed}"
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=300)
    await c.sleep(60)
    assert_restarts(c, {K0: 1, K1: 0})


# ------------------------------------------------- the sidecar's own trouble (issue 12)
#
# The Keycloak container's startup and liveness probes are fail-open exec probes: only an
# HTTP 503 from a working sidecar fails them.  Whatever happens to the sidecar, a healthy
# Keycloak is never restarted (not one failed liveness probe), and the sidecar is.


def healthy_pair() -> dict[str, Any]:
    return {pod: K.quarkus_script(K.quarkus_ok()) for pod in (K0, K1)}


def assert_keycloak_untouched(c: Cluster, *pods: str) -> None:
    assert_restarts(c, dict.fromkeys(pods, 0))
    failed = [
        r
        for r in c.timeline.records
        if r.pod in pods and r.container == "keycloak" and r.what == "liveness"
        if "FAIL" in r.detail
    ]
    assert not failed, f"Keycloak liveness failed: {failed}"


def sidecar_serving(c: Cluster, pod: str) -> Callable[[], bool]:
    return lambda: c.serving(pod, "sidecar")


@scenario(scripts=healthy_pair())
async def scenario_sidecar_stopped_for_five_minutes(c: Cluster) -> None:
    """SIGSTOP: the port still accepts (backlog), nothing answers.  The sidecar's own
    liveness (/healthz) restarts it; Keycloak's exec probe times its read out and passes."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    pid = c.pause_container(K0, "sidecar")
    await c.sleep(300)
    c.resume_container(K0, "sidecar", pid)  # only if the kubelet has not replaced it
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=300)
    await c.sleep(60)
    assert c.restarts(K0, "sidecar") >= 1, "the stopped sidecar was not restarted"
    assert "liveness probe failed" in c.timeline.of("kill", K0, "sidecar")[0].detail
    assert_keycloak_untouched(c, K0, K1)


@scenario(scripts=healthy_pair())
async def scenario_sidecar_crash_looping_on_a_bad_setting(c: Cluster) -> None:
    """A bad setting rolled out: the sidecar exits at start for 10 minutes, in the kubelet's
    back-off (10 s, 20 s, 40 s ...); then the setting is fixed and it comes back."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    c.sidecar_extra_args[K0] = ["--probe-timeout=not-a-duration"]
    c.kill_container(K0, "sidecar")  # the rollout: the next start has the bad setting
    await c.sleep(600)
    crashes = c.restarts(K0, "sidecar")
    assert crashes >= 4, f"only {crashes} restarts in 10 minutes"
    assert not c.ready(K0), "readiness is fail-closed: no monitor, no traffic"
    c.sidecar_extra_args[K0] = []
    await c.wait_for("sidecar back", sidecar_serving(c, K0), within_seconds=400)
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=300)
    assert_keycloak_untouched(c, K0, K1)


#: a paused sidecar answers a request this late (real seconds: the timeouts it is measured
#: against, the exec probe's read timeout and the kubelet's HTTP timeout, are real too)
SLOW_ANSWER_SECONDS = 5.0


@scenario(scripts=healthy_pair())
async def scenario_sidecar_answering_slowly(c: Cluster) -> None:
    """For 5 minutes the sidecar answers each request only after up to 5 s (stopped 5 s,
    running a moment, as under hard CPU throttling): its own liveness restarts it."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    c.timeline.add(K0, "sidecar", "event", f"slowed: answers up to {SLOW_ANSWER_SECONDS:g}s late")
    end = c.now() + 300
    while c.now() < end:
        pid = c.pause_container(K0, "sidecar", note=False)
        await asyncio.sleep(SLOW_ANSWER_SECONDS)
        c.resume_container(K0, "sidecar", pid)
        await asyncio.sleep(0.05)
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=300)
    await c.sleep(60)
    assert c.restarts(K0, "sidecar") >= 1, "the slow sidecar was not restarted"
    assert_keycloak_untouched(c, K0, K1)


@scenario(scripts=healthy_pair())
async def scenario_sidecar_oom_killed_repeatedly(c: Cluster) -> None:
    """The sidecar is killed (as by the OOM killer) four times, each time once it serves
    again; the kubelet's back-off grows.  Also: native sidecar order on start and deletion."""
    await c.wait_for("both ready", all_ready(c, K0, K1), within_seconds=600)
    for pod in (K0, K1):
        started = [r.at for r in c.timeline.of("startup", pod, "sidecar") if " ok " in r.detail]
        (keycloak_start, *_) = [r.at for r in c.timeline.of("start", pod, "keycloak")]
        assert started and started[0] <= keycloak_start, "Keycloak started before its sidecar"
    for kills in range(1, 5):
        await c.wait_for("sidecar serving", sidecar_serving(c, K0), within_seconds=400)
        c.kill_container(K0, "sidecar")
        await c.wait_for(
            f"sidecar restarted {kills}x",
            lambda kills=kills: c.restarts(K0, "sidecar") == kills,  # type: ignore[misc]
            within_seconds=400,
        )
    assert c.timeline.of("back-off", K0, "sidecar"), "no back-off between the kills"
    await c.wait_for("keycloak-0 ready again", all_ready(c, K0), within_seconds=400)
    assert_keycloak_untouched(c, K0, K1)
    await c.delete_pod(K1)
    order = [r.container for r in c.timeline.of("terminate", K1)]
    assert order == ["keycloak", "sidecar"], f"termination order {order}"


# --------------------------------------------------------------------------- the test

XFAIL: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=XFAIL[name]))
        if name in XFAIL
        else name
        for name in SCENARIOS
    ],
)
def test_scenario(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    if outcome.error is not None:
        pytest.fail(f"{outcome.error}\n\n{outcome.report}", pytrace=False)
