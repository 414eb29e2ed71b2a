"""The cross-replica kill budget: Lease slots taken only while a restart is wanted."""

from __future__ import annotations

import dataclasses
import logging
import math

from sidecar.kube.api import (
    KubeApi,
    KubeError,
    Lease,
)
from sidecar.kube.world import KubeTuning, VerdictView, World

log = logging.getLogger(__name__)


class KillBudget:
    """Holds at most one slot of the cross-replica kill budget."""

    def __init__(self, world: World, api: KubeApi, tuning: KubeTuning) -> None:
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
