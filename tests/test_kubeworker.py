"""Scenario tests: kube_worker + the real client + the API-server double + a small fake core.

The fake core (``FakeCore``) implements ``KubeSink`` the way the real core is meant to:
verdicts from ``assess_membership`` plus a log-evidence flag, live turning false only
with a kill-budget slot (or without a budget).  Time is a ``ManualClock`` the test moves;
the worker's loops run on short real intervals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kubeapi import KubeApiDouble

from sidecar.clock import Clock, ManualClock, SystemClock
from sidecar.core.events import ClusterView
from sidecar.core.membership import KubeFacts, MembershipAssessment, assess_membership
from sidecar.kube.worker import KubeTuning, VerdictView, default_selector, kube_worker
from sidecar.settings import Settings, load_settings

FAST = KubeTuning(
    watch_timeout_seconds=5,
    watch_silence_seconds=2.0,
    request_timeout_seconds=2.0,
    backoff_initial_seconds=0.01,
    backoff_max_seconds=0.05,
    verdict_interval_seconds=0.01,
    lease_retry_seconds=0.0,
    log_idle_seconds=0.05,
    log_reconnect_seconds=0.02,
)
GRACE_SECONDS = 120.0
LEASE_SECONDS = 60.0
LABELS = {"app": "keycloak", "app.kubernetes.io/instance": "kc"}


class FakeCore:
    """A minimal core behind ``KubeSink``."""

    def __init__(
        self,
        clock: Clock,
        *,
        view: ClusterView | None = None,
        started: bool = True,
        db_down: bool = False,
        fatal: str = "",
    ) -> None:
        self.clock = clock
        self.view = view
        self.started = started
        self.db_down = db_down
        self.fatal = fatal
        self.facts: KubeFacts | None = None
        self.evidence_since: float | None = None
        self.restarts: list[tuple[int, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.log = bytearray()
        self.idles = 0

    def update_kube(self, facts: KubeFacts) -> None:
        self.facts = facts

    def container_restarted(self, restart_count: int, container_id: str, now: float) -> None:
        self.restarts.append((restart_count, container_id))
        self.fatal = ""
        self.view = None
        self.evidence_since = None

    def count_api_error(self, operation: str, code: str) -> None:
        self.errors.append((operation, code))

    def feed_log(self, chunk: bytes) -> None:
        assert chunk.endswith(b"\n")
        self.log += chunk

    def log_idle(self) -> None:
        self.idles += 1

    async def wait_for_change(self, timeout_seconds: float) -> None:
        await asyncio.sleep(timeout_seconds)  # no change feed here: poll at the tuning

    def membership(self) -> MembershipAssessment:
        result = assess_membership(
            view=self.view,
            facts=self.facts,
            started=self.started,
            db_down=self.db_down,
            evidence_since=self.evidence_since,
            now=self.clock.monotonic(),
            grace_seconds=GRACE_SECONDS,
        )
        self.evidence_since = result.since
        return result

    def current_verdicts(self) -> VerdictView:
        membership = self.membership()
        kill_reason = self.fatal or (membership.reason if membership.kill_wanted else "")
        budget = self.facts is not None and self.facts.budget_enabled
        held = self.facts is not None and self.facts.kill_slot_held
        wanted = bool(kill_reason)
        return VerdictView(
            started=self.started,
            live=not (wanted and (held or not budget)),
            ready=membership.ok and not wanted,
            kill_wanted=wanted,
            kill_reason=kill_reason,
            kill_deferred=wanted and budget and not held,
            membership=membership,
        )


async def until(predicate: Callable[[], bool], what: str, limit_seconds: float = 10.0) -> None:
    """Wait (short real sleeps) until ``predicate()``; the limit is only a backstop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def ticks(count: int = 20) -> None:
    """Let the workers run ``count`` verdict intervals."""
    for _ in range(count):
        await asyncio.sleep(FAST.verdict_interval_seconds)


def make_settings(double: KubeApiDouble, tmp_path: Path, **overrides: str) -> Settings:
    args = {
        "kubeconfig": str(double.write_kubeconfig(tmp_path)),
        "membership_grace_seconds": f"{GRACE_SECONDS}s",
        "kill_lease_duration_seconds": f"{LEASE_SECONDS}s",
    }
    args.update(overrides)
    return load_settings(args, {})


@asynccontextmanager
async def running(
    settings: Settings, pod: str, core: FakeCore, clock: Clock
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        kube_worker(
            settings=settings,
            sink=core,
            clock=clock,
            stop=stop,
            environ={"POD_NAME": pod, "POD_NAMESPACE": "ns"},
            tuning=FAST,
        ),
        name=f"kube-worker-{pod}",
    )
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def double() -> AsyncIterator[KubeApiDouble]:
    async with KubeApiDouble(bookmark_interval_seconds=0.05) as server:
        yield server


def singleton(pod: str, view_id: int = 5) -> ClusterView:
    return ClusterView(view_id=view_id, coordinator=f"{pod}-111", members=(f"{pod}-111",), size=1)


def both_views() -> ClusterView:
    return ClusterView(view_id=2, coordinator="kc-0-111", members=("kc-0-111", "kc-1-222"), size=2)


def holders(double: KubeApiDouble) -> list[str]:
    return [
        double.lease_holder(name) for name in sorted(double.leases) if double.lease_holder(name)
    ]


def test_default_selector_uses_app_labels() -> None:
    assert (
        default_selector(
            {"app": "keycloak", "app.kubernetes.io/instance": "kc", "pod-template-hash": "abc"}
        )
        == "app=keycloak,app.kubernetes.io/instance=kc"
    )
    assert default_selector({"pod-template-hash": "abc"}) == ""


async def test_partition_ready_false_at_once_kill_after_grace_one_at_a_time(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    settings = make_settings(double, tmp_path)
    core_a = FakeCore(clock, view=singleton("kc-0"))
    core_b = FakeCore(clock, view=singleton("kc-1"))
    async with running(settings, "kc-0", core_a, clock), running(settings, "kc-1", core_b, clock):
        await until(
            lambda: core_a.evidence_since is not None and core_b.evidence_since is not None,
            "evidence on both sides",
        )
        first = core_a.current_verdicts()
        assert (first.ready, first.live, first.kill_wanted) == (False, True, False)
        assert first.membership is not None
        assert first.membership.reason == "cluster_peers_missing"
        clock.advance(GRACE_SECONDS)
        await until(lambda: len(holders(double)) == 1, "one slot taken")
        await ticks()
        assert len(holders(double)) == 1
        holder = holders(double)[0]
        winner, loser = (core_a, core_b) if holder == "kc-0" else (core_b, core_a)
        assert not winner.current_verdicts().live
        waiting = loser.current_verdicts()
        assert (waiting.live, waiting.ready, waiting.kill_deferred) == (True, False, True)
        double.restart_container(holder)
        await until(lambda: winner.restarts != [], "re-armed")
        await until(lambda: holders(double) == [], "slot released after the restart")
        await ticks()
        assert holders(double) == []  # the peer restarted: the loser has nothing to kill for


async def test_database_down_for_every_replica_kills_nobody(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    settings = make_settings(double, tmp_path)
    cores = [FakeCore(clock, view=singleton(pod), db_down=True) for pod in ("kc-0", "kc-1")]
    async with (
        running(settings, "kc-0", cores[0], clock),
        running(settings, "kc-1", cores[1], clock),
    ):
        await until(lambda: all(c.facts and c.facts.peers for c in cores), "peers listed")
        for _ in range(5):
            clock.advance(GRACE_SECONDS)
            await ticks(5)
        verdicts = [c.current_verdicts() for c in cores]
        assert [(v.ready, v.live, v.kill_wanted) for v in verdicts] == [(False, True, False)] * 2
        assert double.ops("leases_get") == []
        assert double.leases == {}


async def test_two_fatal_starts_restart_one_after_the_other(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS, ready=False)
    double.add_pod("kc-1", LABELS, ready=False)
    settings = make_settings(double, tmp_path)
    cores = {pod: FakeCore(clock, started=False, fatal="startup_fatal") for pod in ("kc-0", "kc-1")}
    async with (
        running(settings, "kc-0", cores["kc-0"], clock),
        running(settings, "kc-1", cores["kc-1"], clock),
    ):
        await until(lambda: len(holders(double)) == 1, "first slot taken")
        first = holders(double)[0]
        second = "kc-1" if first == "kc-0" else "kc-0"
        await ticks()
        assert holders(double) == [first]
        assert cores[second].current_verdicts().live
        assert not cores[first].current_verdicts().live
        double.restart_container(first)
        await until(lambda: holders(double) == [second], "second replica's turn")
        assert cores[first].restarts == [(1, f"containerd://{first}-1")]
        assert not cores[second].current_verdicts().live
        events = [e["reason"] for e in double.events.values()]
        assert events.count("KeycloakStartupFailed") == 2
        assert "KeycloakKillDeferred" in events
        assert "KeycloakRestarted" in events


async def test_rbac_forbidden_no_crash_no_membership_kill(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    for operation in ("pods_list", "pods_watch", "leases_get", "events_create"):
        double.fail(operation, 403)
    settings = make_settings(double, tmp_path, peer_selector="app=keycloak")
    core = FakeCore(clock, view=singleton("kc-0"))
    async with running(settings, "kc-0", core, clock):
        await until(lambda: ("pods_list", "forbidden") in core.errors, "403 counted")
        clock.advance(10 * GRACE_SECONDS)
        await ticks()
        assert core.facts is not None
        assert (core.facts.api_ok, core.facts.api_error) == (False, "forbidden")
        verdicts = core.current_verdicts()
        assert verdicts.membership is not None
        assert verdicts.membership.unknown
        assert (verdicts.live, verdicts.kill_wanted) == (True, False)
        assert double.leases == {}


async def test_broken_api_never_blocks_a_kill_on_log_evidence(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS, ready=False)
    for operation in ("leases_get", "leases_create", "leases_update"):
        double.fail(operation, 403)
    settings = make_settings(double, tmp_path)
    core = FakeCore(clock, started=False, fatal="startup_fatal")
    async with running(settings, "kc-0", core, clock):
        await until(lambda: ("leases_get", "forbidden") in core.errors, "lease refused")
        assert core.current_verdicts().kill_deferred
        clock.advance(LEASE_SECONDS + 1)
        await until(
            lambda: core.facts is not None and not core.facts.budget_enabled,
            "budget off after the lease duration",
        )
        assert not core.current_verdicts().live


async def test_watch_410_relists_and_misses_nothing(double: KubeApiDouble, tmp_path: Path) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    settings = make_settings(double, tmp_path)
    core = FakeCore(clock, view=both_views())
    async with running(settings, "kc-0", core, clock):
        await until(lambda: bool(core.facts and core.facts.peers), "peers listed")
        lists_before = len(double.ops("pods_list"))
        double.set_ready("kc-1", False)
        double.add_pod("kc-2", LABELS)
        double.compact()
        double.drop_watches()
        await until(lambda: ("pods_watch", "gone") in core.errors, "410 seen")
        await until(
            lambda: (
                core.facts is not None
                and {p.name: p.keycloak_ready for p in core.facts.peers}
                == {"kc-1": False, "kc-2": True}
            ),
            "changes after the 410 seen",
        )
        # the 410 may come first on the own-pod watch: its relist can follow the facts
        await until(lambda: len(double.ops("pods_list")) > lists_before, "relisted")
        assert core.facts is not None
        assert core.facts.api_ok


async def test_silent_watch_relists_and_stays_usable(double: KubeApiDouble, tmp_path: Path) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    settings = make_settings(double, tmp_path, peer_selector="app=keycloak")
    double.silence("pods_watch", times=1)
    core = FakeCore(clock)
    async with running(settings, "kc-0", core, clock):
        await until(lambda: ("pods_watch", "timeout") in core.errors, "silence detected")
        double.add_pod("kc-1", LABELS)
        await until(lambda: bool(core.facts and core.facts.peers), "new peer seen")
        assert core.facts is not None
        assert core.facts.api_ok


async def test_events_are_aggregated(double: KubeApiDouble, tmp_path: Path) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS, ready=False)
    settings = make_settings(double, tmp_path, kill_budget="0")
    core = FakeCore(clock, started=False, fatal="startup_fatal")
    async with running(settings, "kc-0", core, clock):
        await until(lambda: len(double.events) == 2, "failed + liveness events")
        for _ in range(2):
            core.fatal = ""
            await ticks(5)
            core.fatal = "startup_fatal"
            await ticks(5)
        await until(lambda: len(double.ops("events_patch")) >= 4, "repeats patched")
    counts = {e["reason"]: e["count"] for e in double.events.values()}
    assert counts == {"KeycloakStartupFailed": 3, "KeycloakLivenessFailing": 3}
    assert all(e["involvedObject"]["uid"] == "uid-kc-0" for e in double.events.values())


async def test_readiness_gate_patched_only_on_change(double: KubeApiDouble, tmp_path: Path) -> None:
    clock = ManualClock()
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    gate = "keycloak.org/cluster-member"
    settings = make_settings(double, tmp_path, readiness_gate_condition=gate)
    core = FakeCore(clock, view=both_views())

    def condition() -> tuple[str, str]:
        found = [c for c in double.pods["kc-0"]["status"]["conditions"] if c["type"] == gate]
        return (found[0]["status"], found[0]["reason"]) if found else ("", "")

    async with running(settings, "kc-0", core, clock):
        await until(lambda: condition() == ("True", "ClusterMember"), "gate True")
        await ticks()
        patches = len(double.ops("pods_status_patch"))
        core.view = singleton("kc-0", view_id=0)
        await until(lambda: condition() == ("False", "ClusterNeverJoined"), "gate False")
        await ticks()
        assert len(double.ops("pods_status_patch")) == patches + 1
    ready = [c for c in double.pods["kc-0"]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == [{"type": "Ready", "status": "True"}]


async def test_peer_gate_condition_reaches_the_facts(double: KubeApiDouble, tmp_path: Path) -> None:
    clock = ManualClock()
    gate = "keycloak.org/cluster-member"
    double.add_pod("kc-0", LABELS)
    double.add_pod("kc-1", LABELS)
    double.modify_pod(
        "kc-1", lambda pod: pod["status"]["conditions"].append({"type": gate, "status": "False"})
    )
    settings = make_settings(double, tmp_path, readiness_gate_condition=gate)
    core = FakeCore(clock, view=both_views())
    async with running(settings, "kc-0", core, clock):
        await until(lambda: bool(core.facts and core.facts.peers), "peers listed")
        assert core.facts is not None
        assert core.facts.peers[0].membership_condition == "False"


async def test_log_source_follows_across_restarts_without_loss_or_duplicates(
    double: KubeApiDouble, tmp_path: Path
) -> None:
    double.add_pod("kc-0", LABELS)
    double.append_log("kc-0", "boot 1\nline a")
    settings = make_settings(double, tmp_path, log_source="kubernetes")
    core = FakeCore(SystemClock())
    async with running(settings, "kc-0", core, SystemClock()):
        await until(lambda: bytes(core.log).endswith(b"line a\n"), "first lines")
        double.append_log("kc-0", "line b")
        double.restart_container("kc-0")
        double.append_log("kc-0", "boot 2\nline c")
        await until(lambda: bytes(core.log).endswith(b"line c\n"), "new container's lines")
        double.reset_connection("pods_log", times=1)
        double.drop_watches()
        double.append_log("kc-0", "line d")
        double.logs[("kc-0", "keycloak")][-1].notify()
        await until(lambda: bytes(core.log).endswith(b"line d\n"), "after a reconnect")
    assert bytes(core.log).decode().splitlines() == [
        "boot 1",
        "line a",
        "line b",
        "boot 2",
        "line c",
        "line d",
    ]
    assert core.restarts == [(1, "containerd://kc-0-1")]


async def test_without_api_configuration_facts_say_so(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = load_settings({"kubeconfig": str(tmp_path / "missing")}, {})
    core = FakeCore(clock, fatal="startup_fatal")
    async with running(settings, "kc-0", core, clock):
        await until(lambda: core.facts is not None, "facts published")
    assert core.facts is not None
    assert (core.facts.api_ok, core.facts.api_error, core.facts.budget_enabled) == (
        False,
        "not_configured",
        False,
    )
    assert not core.current_verdicts().live


def test_database_events_say_not_ready_and_no_restart() -> None:
    """db_unavailable is a readiness matter: an Event when it begins and when it ends."""
    from sidecar.kube.notices import verdict_notes
    from sidecar.kube.world import VerdictView

    up = VerdictView(started=True, live=True, ready=True, kill_wanted=False)
    down = VerdictView(started=True, live=True, ready=False, kill_wanted=False,
                       ready_reason="db_unavailable", db_unavailable=True)
    began = verdict_notes(up, down)
    assert [(n.reason, n.type) for n in began] == [("KeycloakDatabaseUnavailable", "Warning")]
    assert "no restart" in began[0].message
    assert [n.reason for n in verdict_notes(down, down)] == []
    assert [n.reason for n in verdict_notes(down, up)] == ["KeycloakDatabaseAvailable"]
