"""The Kubernetes worker: connects ``kube.py`` (the API edge) to the core through ``KubeSink``.

One coroutine, ``kube_worker``, runs named sub-tasks in its own TaskGroup:

``kube-own-pod``   list+watch of the own pod (fieldSelector): restart re-arm, labels, gate
``kube-peers``     list+watch of the peers: ``KubeFacts`` for the membership assessment
``kube-verdicts``  every ``verdict_interval_seconds``: the kill-budget Lease, Events on
                   verdict transitions, the readiness-gate condition, fresh facts
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
import dataclasses
import logging
import math
import os
import random
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sidecar.clock import Clock
from sidecar.kube import (
    Identity,
    KubeApi,
    KubeConfigError,
    KubeError,
    Lease,
    PodInfo,
    WatchEvent,
    connect,
    format_time,
    own_identity,
)
from sidecar.membership import KubeFacts, MembershipAssessment, PeerPod
from sidecar.settings import Settings

log = logging.getLogger(__name__)

COMPONENT = "keycloak-sidecar"
_PEER_OPERATIONS = frozenset({"pods_list", "pods_watch"})


@dataclass(frozen=True, slots=True)
class VerdictView:
    """What the worker needs from the core's current verdicts.

    ``kill_wanted``: a restart is justified now (any reason) *before* the budget: true
    both while ``live`` is false and while the kill is deferred for want of a slot.
    ``kill_reason``: the reason code behind it (``startup_fatal``, ``startup_hung``,
    ``cluster_peers_missing``, ...), "" when none.  ``kill_deferred``: wanted, but live
    stays true because no slot is held.
    """

    started: bool
    live: bool
    ready: bool
    kill_wanted: bool
    kill_reason: str = ""
    kill_deferred: bool = False
    ready_reason: str = ""
    membership: MembershipAssessment | None = None


class KubeSink(Protocol):
    """What the core provides to the worker.  All methods are quick and never block."""

    def update_kube(self, facts: KubeFacts) -> None:
        """Store the latest facts (replaces the previous ones)."""

    def container_restarted(self, restart_count: int, container_id: str, now: float) -> None:
        """The Keycloak container restarted: reset the boot state and its deadlines."""

    def current_verdicts(self) -> VerdictView:
        """The verdicts as of now (Events, Lease and the readiness gate follow them)."""
        ...

    def count_api_error(self, operation: str, code: str) -> None:
        """Count one failed API call (``keycloak_sidecar_kube_api_errors_total``)."""

    def feed_log(self, chunk: bytes) -> None:
        """Complete log lines (``\\n``-terminated, timestamp prefix removed)."""

    def log_idle(self) -> None:
        """No more log data for now (flush pending multi-line records)."""


@dataclass(frozen=True, slots=True)
class KubeTuning:
    """Timing constants (not settings); tests shorten them."""

    watch_timeout_seconds: int = 300
    watch_silence_seconds: float = 90.0  # no line, not even a bookmark: re-list
    request_timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    verdict_interval_seconds: float = 0.25  # how soon a wanted kill takes its slot
    lease_retry_seconds: float = 2.0
    log_idle_seconds: float = 0.5
    log_since_margin_seconds: int = 10
    log_reconnect_seconds: float = 1.0


DEFAULT_TUNING = KubeTuning()


def backoff_seconds(attempt: int, tuning: KubeTuning, rng: random.Random) -> float:
    """Capped exponential backoff with jitter (half to full of the step)."""
    step = min(
        tuning.backoff_max_seconds, tuning.backoff_initial_seconds * 2.0 ** max(0, attempt - 1)
    )
    return step * rng.uniform(0.5, 1.0)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, or return early when the worker stops."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return


def default_selector(labels: Mapping[str, str]) -> str:
    """The peer selector from the own pod's app labels ("" when it has none)."""
    keys = (
        "app",
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    )
    return ",".join(f"{key}={labels[key]}" for key in keys if labels.get(key))


class _World:
    """The worker's own mutable view, shared by its sub-tasks (one event loop)."""

    def __init__(
        self, settings: Settings, sink: KubeSink, clock: Clock, identity: Identity
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.identity = identity
        self.peers: dict[str, PodInfo] = {}
        self.ready_at: dict[str, tuple[str, float]] = {}
        self.own: PodInfo | None = None
        self.own_seen = asyncio.Event()
        self.own_container: tuple[int, str] | None = None
        self.rearmed = False
        self.listed = False
        self.failing: dict[str, str] = {}
        self.api_down_since: float | None = None
        self.lease_down_since: float | None = None
        self.slot = ""
        self.observed_at = clock.monotonic()
        self.notes: list[EventNote] = []
        self.restarts = 0

    def ok(self, operation: str) -> None:
        now = self.clock.monotonic()
        self.observed_at = now
        self.api_down_since = None
        if operation.startswith("leases"):
            self.lease_down_since = None
        if self.failing.pop(operation, None) is not None:
            log.info("Kubernetes API call recovered", extra={"operation": operation})

    def fail(self, operation: str, code: str) -> None:
        self.sink.count_api_error(operation, code)
        now = self.clock.monotonic()
        if self.api_down_since is None:
            self.api_down_since = now
        if operation.startswith("leases") and self.lease_down_since is None:
            self.lease_down_since = now
        if self.failing.get(operation) != code:
            log.warning("Kubernetes API call failing", extra={"operation": operation, "code": code})
        self.failing[operation] = code

    def budget_enabled(self) -> bool:
        if self.settings.kill_budget <= 0:
            return False
        now = self.clock.monotonic()
        limit = self.settings.kill_lease_duration_seconds
        return all(
            since is None or now - since <= limit
            for since in (self.api_down_since, self.lease_down_since)
        )

    def facts(self) -> KubeFacts:
        peer_failures = [code for op, code in self.failing.items() if op in _PEER_OPERATIONS]
        api_ok = self.listed and not peer_failures
        error = "" if api_ok else (peer_failures[0] if peer_failures else "starting")
        peers = tuple(self._peer(pod) for pod in self.peers.values())
        return KubeFacts(
            api_ok=api_ok,
            api_error=error,
            own_pod=self.identity.pod_name,
            peers=peers,
            kill_slot_held=bool(self.slot),
            budget_enabled=self.budget_enabled(),
            observed_at=self.observed_at,
        )

    def _peer(self, pod: PodInfo) -> PeerPod:
        container = pod.container
        memory = self.ready_at.get(pod.name)
        return PeerPod(
            name=pod.name,
            running=pod.phase == "Running" and bool(container and container.running),
            terminating=pod.terminating,
            keycloak_ready=bool(container and container.ready),
            ip=pod.ip,
            membership_condition=pod.conditions.get(self.settings.readiness_gate_condition, "")
            if self.settings.readiness_gate_condition
            else "",
            ready_at=memory[1] if memory else None,
        )

    def publish(self) -> None:
        self.sink.update_kube(self.facts())

    def set_peer(self, pod: PodInfo) -> None:
        if pod.name == self.identity.pod_name:
            return
        container = pod.container
        incarnation = container.container_id if container else ""
        memory = self.ready_at.get(pod.name)
        if memory is not None and memory[0] != incarnation:
            del self.ready_at[pod.name]
        if container is not None and container.ready:
            self.ready_at[pod.name] = (incarnation, self.clock.monotonic())
        elif memory is not None and memory[0] == incarnation and pod.name in self.peers:
            previous = self.peers[pod.name].container
            if previous is not None and previous.ready:
                self.ready_at[pod.name] = (incarnation, self.clock.monotonic())
        self.peers[pod.name] = pod

    def drop_peer(self, name: str) -> None:
        self.peers.pop(name, None)
        self.ready_at.pop(name, None)


# ---------------------------------------------------------------- list + watch


async def _list_watch(
    world: _World,
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
            await _sleep(stop, backoff_seconds(attempt, tuning, rng))


async def _own_pod_task(
    world: _World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning
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


def _check_restart(world: _World, pod: PodInfo) -> None:
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
    world.restarts += 1
    world.notes.append(
        EventNote(
            "KeycloakRestarted",
            "Normal",
            f"Keycloak container restarted (restartCount {container.restart_count}); "
            "health deadlines re-armed",
        )
    )


async def _peers_task(world: _World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning) -> None:
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


# ---------------------------------------------------------------- kill budget


class _KillBudget:
    """Holds at most one slot of the cross-replica kill budget."""

    def __init__(self, world: _World, api: KubeApi, tuning: KubeTuning) -> None:
        self.world = world
        self.api = api
        self.tuning = tuning
        self.held: Lease | None = None
        self.renewed_at = 0.0
        self.next_attempt = 0.0
        self.waiting_logged = False
        self.duration_seconds = max(1, math.ceil(world.settings.kill_lease_duration_seconds))

    @property
    def _me(self) -> str:
        return self.world.identity.pod_name

    async def step(self, verdicts: VerdictView) -> None:
        world = self.world
        if world.settings.kill_budget <= 0:
            return
        now = world.clock.monotonic()
        rearmed, world.rearmed = world.rearmed, False
        try:
            if self.held is not None and (rearmed or not verdicts.kill_wanted):
                await self.release()
            elif self.held is not None:
                if now - self.renewed_at >= self.duration_seconds / 3:
                    await self._renew()
            elif verdicts.kill_wanted and now >= self.next_attempt:
                await self._acquire()
        except KubeError as error:
            world.fail(error.operation, error.code)
            self.next_attempt = now + self.tuning.lease_retry_seconds

    def _mine(self, name: str, previous: Lease | None) -> Lease:
        transitions = (
            0 if previous is None else previous.transitions + (previous.holder != self._me)
        )
        return Lease(
            name=name,
            holder=self._me,
            renew_time=self.world.clock.wall(),
            duration_seconds=self.duration_seconds,
            transitions=transitions,
            resource_version=previous.resource_version if previous else "",
        )

    async def _acquire(self) -> None:
        world, namespace = self.world, self.world.identity.namespace
        for index in range(world.settings.kill_budget):
            name = f"{world.settings.kill_lease_name}-{index}"
            current = await self.api.read_lease(namespace, name)
            world.ok("leases_get")
            if (
                current is not None
                and current.holder != self._me
                and current.is_held(world.clock.wall())
            ):
                continue
            try:
                if current is None:
                    got = await self.api.create_lease(
                        namespace, self._mine(name, None), world.clock.wall()
                    )
                else:
                    got = await self.api.replace_lease(
                        namespace, self._mine(name, current), world.clock.wall()
                    )
            except KubeError as error:
                if error.code in {"conflict"}:
                    continue  # another replica was faster: try the next slot
                raise
            self._took(got)
            return
        self.next_attempt = world.clock.monotonic() + self.tuning.lease_retry_seconds
        if not self.waiting_logged:
            log.info("Kill deferred: every kill-budget slot is held by another replica")
            self.waiting_logged = True

    def _took(self, lease: Lease) -> None:
        self.held = lease
        self.renewed_at = self.world.clock.monotonic()
        self.waiting_logged = False
        self.world.slot = lease.name
        self.world.ok("leases_update")
        log.warning("Kill-budget slot acquired", extra={"lease": lease.name})
        self.world.publish()

    async def _renew(self) -> None:
        assert self.held is not None
        namespace = self.world.identity.namespace
        try:
            renewed = dataclasses.replace(self.held, renew_time=self.world.clock.wall())
            self.held = await self.api.replace_lease(namespace, renewed, None)
            self.renewed_at = self.world.clock.monotonic()
            self.world.ok("leases_update")
        except KubeError as error:
            if error.code != "conflict":
                raise
            current = await self.api.read_lease(namespace, self.held.name)
            if current is None or current.holder != self._me:
                self._lost()
            else:
                self.held = current

    def _lost(self) -> None:
        log.warning("Kill-budget slot lost to another replica")
        self.held = None
        self.world.slot = ""
        self.world.publish()

    async def release(self) -> None:
        """Give the slot back (holder cleared); on failure it simply expires."""
        held, self.held = self.held, None
        self.world.slot = ""
        self.world.publish()
        if held is None:
            return
        empty = dataclasses.replace(held, holder="", renew_time=None)
        try:
            await self.api.replace_lease(self.world.identity.namespace, empty, None)
        except KubeError as error:
            self.world.fail(error.operation, error.code)
            return
        log.info("Kill-budget slot released", extra={"lease": held.name})


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EventNote:
    """One Kubernetes Event to emit (or to aggregate with an identical earlier one)."""

    reason: str
    type: str
    message: str


def _kill_note(reason: str) -> EventNote:
    if "hung" in reason:
        return EventNote(
            "KeycloakStartupHung",
            "Warning",
            f"Keycloak startup hung ({reason}); a restart is wanted",
        )
    if reason.startswith("startup"):
        return EventNote(
            "KeycloakStartupFailed",
            "Warning",
            f"Keycloak startup failed ({reason}); a restart is wanted",
        )
    if reason.startswith("cluster"):
        return EventNote(
            "KeycloakClusterRestartWanted",
            "Warning",
            f"cluster membership lost for longer than the grace ({reason}); a restart is wanted",
        )
    return EventNote(
        "KeycloakUnhealthy", "Warning", f"Keycloak unhealthy ({reason}); a restart is wanted"
    )


def verdict_notes(previous: VerdictView | None, current: VerdictView) -> list[EventNote]:
    """The Events a verdict transition deserves.  Pure."""
    before = previous or VerdictView(started=False, live=True, ready=True, kill_wanted=False)
    notes = []
    if current.kill_reason and current.kill_reason != before.kill_reason:
        notes.append(_kill_note(current.kill_reason))
    if current.kill_deferred and not before.kill_deferred:
        notes.append(
            EventNote(
                "KeycloakKillDeferred",
                "Warning",
                "restart deferred: another replica holds the kill budget",
            )
        )
    if before.live and not current.live:
        reason = current.kill_reason or "unknown"
        notes.append(
            EventNote(
                "KeycloakLivenessFailing",
                "Warning",
                f"liveness failing ({reason}); the kubelet will restart the Keycloak container",
            )
        )
    now_m, was_m = current.membership, before.membership
    lost = now_m is not None and not now_m.ok
    was_lost = was_m is not None and not was_m.ok
    if lost and now_m is not None and (not was_lost or (was_m and was_m.reason != now_m.reason)):
        notes.append(
            EventNote(
                "KeycloakClusterMembershipLost", "Warning", f"{now_m.reason}: {now_m.detail}"[:512]
            )
        )
    if was_lost and now_m is not None and now_m.ok and not now_m.unknown:
        notes.append(
            EventNote(
                "KeycloakClusterRejoined",
                "Normal",
                f"cluster membership restored ({now_m.expected_members} expected members present)",
            )
        )
    if not before.started and current.started and previous is not None:
        notes.append(EventNote("KeycloakStarted", "Normal", "Keycloak startup complete"))
    return notes


class _EventEmitter:
    """Creates Events on the own pod; identical repeats patch count and lastTimestamp."""

    def __init__(self, world: _World, api: KubeApi) -> None:
        self.world = world
        self.api = api
        self.previous: VerdictView | None = None
        self.sent: dict[tuple[str, str], tuple[str, int]] = {}

    async def step(self, verdicts: VerdictView) -> None:
        notes = verdict_notes(self.previous, verdicts)
        self.previous = verdicts
        notes[:0], self.world.notes = self.world.notes, []
        if not self.world.settings.emit_events:
            return
        for note in notes:
            try:
                await self._emit(note)
            except KubeError as error:
                self.world.fail(error.operation, error.code)

    async def _emit(self, note: EventNote) -> None:
        namespace, now = self.world.identity.namespace, self.world.clock.wall()
        key = (note.reason, note.message)
        if key in self.sent:
            name, count = self.sent[key]
            try:
                await self.api.patch_event(namespace, name, count + 1, now)
            except KubeError as error:
                if error.code != "not_found":
                    raise
            else:
                self.sent[key] = (name, count + 1)
                self.world.ok("events_patch")
                return
        name = await self.api.create_event(namespace, self._body(note, now))
        self.sent[key] = (name, 1)
        self.world.ok("events_create")

    def _body(self, note: EventNote, now: float) -> dict[str, object]:
        identity, own = self.world.identity, self.world.own
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": identity.pod_name,
            "namespace": identity.namespace,
            "fieldPath": f"spec.containers{{{self.world.settings.keycloak_container}}}",
        }
        if own is not None and own.uid:
            involved["uid"] = own.uid
        stamp = format_time(now)
        return {
            "metadata": {"generateName": f"{identity.pod_name}.", "namespace": identity.namespace},
            "involvedObject": involved,
            "reason": note.reason,
            "message": note.message,
            "type": note.type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": identity.pod_name,
        }


# ---------------------------------------------------------------- readiness gate


def _camel(code: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", code) if part)


def gate_condition(verdicts: VerdictView) -> tuple[str, str, str]:
    """(status, reason, message) of the readiness-gate condition.  Pure."""
    membership = verdicts.membership
    if membership is None or membership.unknown:
        detail = membership.detail if membership else "not assessed"
        return "True", "MembershipUnknown", f"membership cannot be checked ({detail})"
    if membership.ok:
        return (
            "True",
            "ClusterMember",
            f"{membership.expected_members} expected member(s) in the cluster view",
        )
    return "False", _camel(membership.reason), membership.detail[:256]


class _ReadinessGate:
    """PATCHes the own pod's condition, only when status or reason change."""

    def __init__(self, world: _World, api: KubeApi) -> None:
        self.world = world
        self.api = api
        self.written: tuple[str, str] | None = None

    async def step(self, verdicts: VerdictView) -> None:
        condition_type = self.world.settings.readiness_gate_condition
        own = self.world.own
        if not condition_type or own is None:
            return
        status, reason, message = gate_condition(verdicts)
        if self.written == (status, reason):
            return
        body: dict[str, object] = {
            "type": condition_type,
            "status": status,
            "reason": reason,
            "message": message,
        }
        if own.conditions.get(condition_type) != status:
            body["lastTransitionTime"] = format_time(self.world.clock.wall())
        try:
            await self.api.patch_pod_condition(
                self.world.identity.namespace, self.world.identity.pod_name, body
            )
        except KubeError as error:
            self.world.fail(error.operation, error.code)
            return
        self.world.ok("pods_status_patch")
        self.written = (status, reason)
        log.info("Readiness-gate condition set", extra={"status": status, "reason": reason})


async def _verdicts_task(
    world: _World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning, budget: _KillBudget
) -> None:
    events = _EventEmitter(world, api)
    gate = _ReadinessGate(world, api)
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
        await _sleep(stop, tuning.verdict_interval_seconds)


# ---------------------------------------------------------------- log source


_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp_ns(text: bytes) -> int | None:
    """RFC 3339 (nano) as the kubelet prints it -> integer nanoseconds since the epoch."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    offset = "+00:00" if zone == b"Z" else zone.decode()
    seconds = int(datetime.fromisoformat(base.decode() + offset).astimezone(UTC).timestamp())
    return seconds * 1_000_000_000 + int((fraction or b"").ljust(9, b"0"))


class LogCursor:
    """Frames ``--timestamps`` log output into lines; drops lines already delivered.

    Lines are ordered by their timestamp; ``count_at_last`` remembers how many lines with
    the newest timestamp went out, so a re-read (reconnect with ``sinceSeconds``, the
    previous container) delivers neither a duplicate nor skips a line.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.last_ns: int | None = None
        self.count_at_last = 0
        self._stream_at_last = 0
        self._partial = b""
        self._overlong = False

    def new_stream(self) -> None:
        self._stream_at_last = 0
        self._partial = b""
        self._overlong = False

    def feed(self, chunk: bytes, *, final: bool = False) -> bytes:
        """Complete new lines (prefix stripped, ``\\n``-terminated); ``final`` flushes."""
        pieces = (self._partial + chunk).split(b"\n")
        self._partial = pieces.pop()
        if final and self._partial:
            pieces.append(self._partial)
            self._partial = b""
        limit = self.max_line_bytes + 64
        if len(self._partial) > 2 * limit:
            self._partial, self._overlong = self._partial[:limit], True
        out = []
        for raw in pieces:
            line = self._accept(raw.rstrip(b"\r"))
            if line is not None:
                out.append(line[: self.max_line_bytes] + b"\n")
            self._overlong = False
        return b"".join(out)

    def _accept(self, raw: bytes) -> bytes | None:
        stamp, _, text = raw.partition(b" ")
        ts_ns = parse_timestamp_ns(stamp)
        if ts_ns is None:
            return raw
        if self.last_ns is None or ts_ns > self.last_ns:
            self.last_ns, self.count_at_last, self._stream_at_last = ts_ns, 1, 1
            return text
        if ts_ns < self.last_ns:
            return None
        self._stream_at_last += 1
        if self._stream_at_last <= self.count_at_last:
            return None
        self.count_at_last = self._stream_at_last
        return text


async def _log_task(world: _World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning) -> None:
    """Follow the Keycloak container's log; across restarts, read the old one's tail first."""
    cursor = LogCursor(world.settings.log_max_line_bytes)
    rng, attempt, reading = random.Random(), 0, ""  # noqa: S311 - jitter only
    await world.own_seen.wait()
    while not stop.is_set():
        current = world.own_container[1] if world.own_container else ""
        try:
            if reading and current and current != reading:
                await _read_log(world, api, cursor, tuning, previous=True)
            reading = current
            await _read_log(world, api, cursor, tuning, previous=False)
            attempt = 0
            await _sleep(stop, tuning.log_reconnect_seconds)
        except KubeError as error:
            world.fail(error.operation, error.code)
            attempt += 1
            await _sleep(stop, backoff_seconds(attempt, tuning, rng))


async def _read_log(
    world: _World, api: KubeApi, cursor: LogCursor, tuning: KubeTuning, *, previous: bool
) -> None:
    since = None
    if cursor.last_ns is not None:
        age_seconds = world.clock.wall() - cursor.last_ns / 1e9
        since = max(1, math.ceil(age_seconds) + tuning.log_since_margin_seconds)
    cursor.new_stream()
    async for chunk in api.follow_log(
        world.identity.namespace,
        world.identity.pod_name,
        world.settings.keycloak_container,
        since_seconds=since,
        previous=previous,
        chunk_timeout_seconds=tuning.log_idle_seconds,
    ):
        world.ok("pods_log")
        if chunk is None:
            world.sink.log_idle()
            continue
        lines = cursor.feed(chunk)
        if lines:
            world.sink.feed_log(lines)
    lines = cursor.feed(b"", final=True)
    if lines:
        world.sink.feed_log(lines)
    world.sink.log_idle()


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
        world = _World(settings, sink, clock, identity)
        world.publish()
        budget = _KillBudget(world, api, tuning)
        try:
            await _run(world, api, stop, tuning, budget)
        finally:
            await _release_on_exit(budget, tuning)


async def _run(
    world: _World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning, budget: _KillBudget
) -> None:
    jobs: dict[str, Coroutine[None, None, None]] = {
        "kube-own-pod": _own_pod_task(world, api, stop, tuning),
        "kube-peers": _peers_task(world, api, stop, tuning),
        "kube-verdicts": _verdicts_task(world, api, stop, tuning, budget),
    }
    if world.settings.log_source == "kubernetes":
        jobs["kube-log"] = _log_task(world, api, stop, tuning)
    async with asyncio.TaskGroup() as group:
        tasks: list[asyncio.Task[None]] = [
            group.create_task(job, name=name) for name, job in jobs.items()
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()


async def _release_on_exit(budget: _KillBudget, tuning: KubeTuning) -> None:
    if budget.held is None:
        return
    try:
        async with asyncio.timeout(tuning.request_timeout_seconds):
            await budget.release()
    except TimeoutError:
        log.warning("Kill-budget slot not released on exit; it will expire")
