"""The Kubernetes worker: connects ``kube.py`` (the API edge) to the core through ``KubeSink``.

One coroutine, ``kube_worker``, runs named sub-tasks in its own TaskGroup (the pieces live in
``kubeworld.py`` (shared state), ``killbudget.py``, ``kubeevents.py`` and ``kubelog.py``):

``kube-own-pod``   list+watch of the own pod (fieldSelector): restart re-arm, labels, gate
``kube-peers``     list+watch of the peers: ``KubeFacts`` for the membership assessment
``kube-verdicts``  on every state change, at least every ``verdict_interval_seconds``: the
                   kill-budget Lease, Events on verdict transitions, the readiness-gate
                   condition, fresh facts
``kube-log``       (``--log-source kubernetes``) follows the Keycloak container's log

Expected failures (401/403/404/409/410/429/5xx, resets, timeouts, silent watches) are
handled here: one log line per transition, ``count_api_error``, capped jittered backoff,
and ``KubeFacts.api_ok`` false while the peer watch is unusable (membership is then
*unknown*: never a kill).  Anything else escapes and ends the sidecar (crash-only).

Kill budget
    ``--kill-budget N`` slots are N Leases ``<kill-lease-name>-<i>``.  A slot is taken only
    while the core's verdicts say ``kill_wanted``, renewed every third of the lease
    duration, and given back when the Keycloak container restarted (re-arm) or the kill
    is no longer wanted.  A holder that stops renewing loses the slot when the lease
    expires.  ``budget_enabled`` is false when the budget is 0, when no API is
    configured, and when the API (or the Lease API) has been failing for longer than the
    lease duration: a broken API never blocks a kill that log evidence alone justifies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Coroutine, Mapping

from sidecar.clock import Clock, sleep_until
from sidecar.core.membership import KubeFacts
from sidecar.kube.api import (
    KubeApi,
    KubeConfigError,
    KubeError,
    PodInfo,
    WatchEvent,
    connect,
    own_identity,
)
from sidecar.kube.budget import KillBudget
from sidecar.kube.logstream import LogCursor, log_task, parse_timestamp_ns
from sidecar.kube.notices import (
    EventEmitter,
    ReadinessGate,
    gate_condition,
    verdict_notes,
)
from sidecar.kube.world import (
    DEFAULT_TUNING,
    EventNote,
    KubeSink,
    KubeTuning,
    VerdictView,
    World,
    backoff_seconds,
    default_selector,
)
from sidecar.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TUNING",
    "EventNote",
    "KubeSink",
    "KubeTuning",
    "LogCursor",
    "VerdictView",
    "backoff_seconds",
    "default_selector",
    "gate_condition",
    "kube_worker",
    "parse_timestamp_ns",
    "verdict_notes",
]


async def _list_watch(
    world: World,
    api: KubeApi,
    stop: asyncio.Event,
    tuning: KubeTuning,
    *,
    label_selector: str,
    field_selector: str,
    on_list: Callable[[list[PodInfo]], None],
    on_event: Callable[[WatchEvent], None],
) -> None:
    """List, then watch from the list's version; re-list on 410 or a silent watch."""
    namespace, container = world.identity.namespace, world.settings.keycloak_container
    rng, version, attempt = random.Random(), "", 0  # noqa: S311 - jitter only
    while not stop.is_set():
        try:
            if not version:
                items, version = await api.list_pods(
                    namespace,
                    container,
                    label_selector=label_selector,
                    field_selector=field_selector,
                )
                world.ok("pods_list")
                on_list(items)
            async for event in api.watch_pods(
                namespace,
                container,
                resource_version=version,
                timeout_seconds=tuning.watch_timeout_seconds,
                silence_seconds=tuning.watch_silence_seconds,
                label_selector=label_selector,
                field_selector=field_selector,
            ):
                version = event.resource_version or version
                world.ok("pods_watch")
                if event.type != "BOOKMARK":
                    on_event(event)
            attempt = 0
        except KubeError as error:
            if error.code in {"gone", "timeout"} and error.operation == "pods_watch":
                log.info("Pod watch restarts with a fresh list", extra={"code": error.code})
                world.sink.count_api_error(error.operation, error.code)
                version = ""
                continue
            world.fail(error.operation, error.code)
            world.publish()
            attempt += 1
            await sleep_until(stop, backoff_seconds(attempt, tuning, rng))


async def _own_pod_task(
    world: World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning
) -> None:
    def on_pod(pod: PodInfo) -> None:
        world.own = pod
        _check_restart(world, pod)
        world.own_seen.set()

    def on_list(items: list[PodInfo]) -> None:
        for pod in items:
            on_pod(pod)

    def on_event(event: WatchEvent) -> None:
        if event.pod is not None and event.type != "DELETED":
            on_pod(event.pod)

    await _list_watch(
        world,
        api,
        stop,
        tuning,
        label_selector="",
        field_selector=f"metadata.name={world.identity.pod_name}",
        on_list=on_list,
        on_event=on_event,
    )


def _check_restart(world: World, pod: PodInfo) -> None:
    """Re-arm on a new restartCount or containerID of the Keycloak container."""
    container = pod.container
    if container is None:
        return
    last = world.own_container
    world.own_container = (
        container.restart_count,
        container.container_id or (last[1] if last else ""),
    )
    if last is None:
        return
    new_id = bool(container.container_id and last[1]) and container.container_id != last[1]
    if container.restart_count == last[0] and not new_id:
        return
    now = world.clock.monotonic()
    log.info("Keycloak container restarted", extra={"restart_count": container.restart_count})
    world.sink.container_restarted(container.restart_count, container.container_id, now)
    world.rearmed = True
    world.notes.append(
        EventNote(
            "KeycloakRestarted",
            "Normal",
            f"Keycloak container restarted (restartCount {container.restart_count}); "
            "health deadlines re-armed",
        )
    )


async def _peers_task(world: World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning) -> None:
    selector = world.settings.peer_selector
    if not selector:
        await world.own_seen.wait()
        assert world.own is not None
        selector = default_selector(world.own.labels)
    if not selector:
        log.error("No peer selector: set --peer-selector or give the pod an app label")
        world.failing["pods_list"] = "no_selector"
        world.publish()
        await stop.wait()
        return

    def on_list(items: list[PodInfo]) -> None:
        world.listed = True
        names = {pod.name for pod in items}
        for name in [name for name in world.peers if name not in names]:
            world.drop_peer(name)
        for pod in items:
            world.set_peer(pod)
        world.publish()

    def on_event(event: WatchEvent) -> None:
        assert event.pod is not None
        if event.type == "DELETED":
            world.drop_peer(event.pod.name)
        else:
            world.set_peer(event.pod)
        world.publish()

    await _list_watch(
        world,
        api,
        stop,
        tuning,
        label_selector=selector,
        field_selector="",
        on_list=on_list,
        on_event=on_event,
    )


# ------------------------------------------------- verdict round: budget, Events, gate


async def _verdicts_task(
    world: World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning, budget: KillBudget
) -> None:
    events = EventEmitter(world, api)
    gate = ReadinessGate(world, api)
    try:  # Events carry the own pod's uid when it can be read
        async with asyncio.timeout(tuning.request_timeout_seconds):
            await world.own_seen.wait()
    except TimeoutError:
        log.warning("Own pod not readable; Events go out without its uid")
    while not stop.is_set():
        verdicts = world.sink.current_verdicts()
        await budget.step(verdicts)
        await events.step(verdicts)
        await gate.step(verdicts)
        world.publish()
        await world.sink.wait_for_change(tuning.verdict_interval_seconds)


# ---------------------------------------------------------------- entry point


async def kube_worker(
    *,
    settings: Settings,
    sink: KubeSink,
    clock: Clock,
    stop: asyncio.Event,
    environ: Mapping[str, str] | None = None,
    tuning: KubeTuning = DEFAULT_TUNING,
) -> None:
    """Run the Kubernetes side until ``stop`` is set.  Never raises on API trouble."""
    env = os.environ if environ is None else environ
    identity = own_identity(env)
    try:
        api = await connect(settings, env, tuning.request_timeout_seconds)
    except KubeConfigError as error:
        log.warning(
            "Kubernetes API not configured; working on log and HTTP evidence",
            extra={"error": str(error)[:200]},
        )
        sink.update_kube(
            KubeFacts(
                api_ok=False,
                api_error="not_configured",
                own_pod=identity.pod_name,
                peers=(),
                kill_slot_held=False,
                budget_enabled=False,
                observed_at=clock.monotonic(),
            )
        )
        await stop.wait()
        return
    async with api:
        world = World(settings, sink, clock, identity)
        world.publish()
        budget = KillBudget(world, api, tuning)
        try:
            await _run(world, api, stop, tuning, budget)
        finally:
            await _release_on_exit(budget, tuning)


async def _run(
    world: World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning, budget: KillBudget
) -> None:
    jobs: dict[str, Coroutine[None, None, None]] = {
        "kube-own-pod": _own_pod_task(world, api, stop, tuning),
        "kube-peers": _peers_task(world, api, stop, tuning),
        "kube-verdicts": _verdicts_task(world, api, stop, tuning, budget),
    }
    if world.settings.log_source == "kubernetes":
        jobs["kube-log"] = log_task(world, api, stop, tuning)
    async with asyncio.TaskGroup() as group:
        tasks: list[asyncio.Task[None]] = [
            group.create_task(job, name=name) for name, job in jobs.items()
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()


async def _release_on_exit(budget: KillBudget, tuning: KubeTuning) -> None:
    if budget.held is None:
        return
    try:
        async with asyncio.timeout(tuning.request_timeout_seconds):
            await budget.release()
    except TimeoutError:
        log.warning("Kill-budget slot not released on exit; it will expire")
