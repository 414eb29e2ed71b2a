"""The core's side of the Kubernetes worker's ``KubeSink`` protocol."""

from __future__ import annotations

import logging

from sidecar.clock import sleep_until
from sidecar.context import Context
from sidecar.core.membership import KubeFacts
from sidecar.ingest import LineSink
from sidecar.kube.worker import VerdictView

log = logging.getLogger(__name__)


class CoreSink:
    """Stores Kubernetes facts in the state (then runs the core step) and hands verdicts
    back; the container's log goes through the one ingest door."""

    def __init__(self, ctx: Context, lines: LineSink) -> None:
        self._ctx = ctx
        self._lines = lines
        self._changed = ctx.changes.subscribe()

    async def wait_for_change(self, timeout_seconds: float) -> None:
        self._ctx.beat("kube-worker")  # called once per round of the kube verdict loop
        await sleep_until(self._changed, timeout_seconds, clear=True)

    def update_kube(self, facts: KubeFacts) -> None:
        self._ctx.state.update_kube(facts)
        self._ctx.verdicts()

    def container_restarted(self, restart_count: int, container_id: str, now: float) -> None:
        if self._ctx.state.rearm(now, "container_restart"):
            log.info(
                "Keycloak container restarted: boot state re-armed",
                extra={"restart_count": restart_count, "boot": self._ctx.state.boot.number},
            )
            self._ctx.verdicts()

    def current_verdicts(self) -> VerdictView:
        verdicts = self._ctx.verdicts()
        ready_reasons = verdicts.ready.reasons
        return VerdictView(
            started=verdicts.started.ok,
            live=verdicts.live.ok,
            ready=verdicts.ready.ok,
            kill_wanted=bool(verdicts.kill_wanted),
            kill_reason=verdicts.kill_wanted,
            kill_deferred=verdicts.kill_deferred,
            ready_reason=ready_reasons[0] if ready_reasons else "",
            membership=verdicts.membership,
            db_unavailable=verdicts.db_down,
        )

    def count_api_error(self, operation: str, code: str) -> None:
        errors = self._ctx.kube_api_errors
        errors[(operation, code)] = errors.get((operation, code), 0) + 1

    def feed_log(self, chunk: bytes) -> None:
        self._lines.feed(chunk)

    def log_idle(self) -> None:
        self._lines.idle()
