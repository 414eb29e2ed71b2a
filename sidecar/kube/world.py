"""State and vocabulary shared by the Kubernetes worker's tasks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sidecar.clock import Clock
from sidecar.core.membership import KubeFacts, MembershipAssessment, PeerPod
from sidecar.kube.api import (
    Identity,
    PodInfo,
)
from sidecar.settings import Settings

log = logging.getLogger(__name__)


COMPONENT = "keycloak-sidecar"
PEER_OPERATIONS = frozenset({"pods_list", "pods_watch"})


@dataclass(frozen=True, slots=True)
class EventNote:
    """One Kubernetes Event to emit (or to aggregate with an identical earlier one)."""

    reason: str
    type: str
    message: str


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
    #: readiness fails because the database cannot be used (never a restart)
    db_unavailable: bool = False


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

    async def wait_for_change(self, timeout_seconds: float) -> None:
        """Return when the verdicts may have changed (the state changed, a stop was
        requested), at the latest after ``timeout_seconds`` (deadlines pass silently)."""


@dataclass(frozen=True, slots=True)
class KubeTuning:
    """Timing constants (not settings); tests shorten them."""

    watch_timeout_seconds: int = 300
    watch_silence_seconds: float = 90.0  # no line, not even a bookmark: re-list
    request_timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    # longest wait between verdict rounds (Lease, Events, gate); a state change wakes the
    # loop at once, so a wanted kill takes its slot as soon as the evidence arrives
    verdict_interval_seconds: float = 1.0
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


def default_selector(labels: Mapping[str, str]) -> str:
    """The peer selector from the own pod's app labels ("" when it has none)."""
    keys = (
        "app",
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    )
    return ",".join(f"{key}={labels[key]}" for key in keys if labels.get(key))


class World:
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
        peer_failures = [code for op, code in self.failing.items() if op in PEER_OPERATIONS]
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
