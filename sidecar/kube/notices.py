"""Kubernetes Events on verdict transitions (aggregated) and the readiness-gate condition."""

from __future__ import annotations

import logging
import re

from sidecar.kube.api import (
    KubeApi,
    KubeError,
    format_time,
)
from sidecar.kube.world import COMPONENT, EventNote, VerdictView, World

log = logging.getLogger(__name__)


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
    notes += _database_notes(before, current)
    if not before.started and current.started and previous is not None:
        notes.append(EventNote("KeycloakStarted", "Normal", "Keycloak startup complete"))
    return notes


def _database_notes(before: VerdictView, current: VerdictView) -> list[EventNote]:
    if current.db_unavailable and not before.db_unavailable:
        return [
            EventNote(
                "KeycloakDatabaseUnavailable",
                "Warning",
                "the database cannot be used: not ready; no restart (a restart cannot help)",
            )
        ]
    if before.db_unavailable and not current.db_unavailable:
        message = "no database errors within --db-down-hold"
        return [EventNote("KeycloakDatabaseAvailable", "Normal", message)]
    return []


class EventEmitter:
    """Creates Events on the own pod; identical repeats patch count and lastTimestamp."""

    def __init__(self, world: World, api: KubeApi) -> None:
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


class ReadinessGate:
    """PATCHes the own pod's condition, only when status or reason change."""

    def __init__(self, world: World, api: KubeApi) -> None:
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
