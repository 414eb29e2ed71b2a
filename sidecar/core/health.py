"""The health policy: a pure function of (snapshot, now, policy) -> verdicts.

Rules that make it trustworthy:

* ``live`` fails only on positive evidence about Keycloak: a fatal startup line in the current
  boot, a runtime fatal (OutOfMemoryError, JVM crash), a hung bootstrap (no 'started' by the
  deadline AND no progress for the progress timeout), Keycloak's own liveness endpoint failing
  with an answer (not a timeout) for the grace period, or lost cluster membership that a
  restart can fix.  Never because the database is down, never on "unknown", never because the
  sidecar itself is in trouble (log file missing, its own probe timing out).
* Before ``live`` turns false, a kill-budget slot must be held when a budget is in force;
  without one ``live`` stays true and ``ready`` says ``kill_deferred``.
* ``startup_probe`` (``/startupz``) passes once the startup phase is over, successfully or
  not, so that a failed startup is restarted through the liveness probe at once instead of
  after the kubelet's whole startup budget.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from sidecar.core.membership import MembershipAssessment, assess_membership
from sidecar.core.state import HealthSnapshot, ProbeSnapshot

#: every reason code a check can fail with (bounded label values for metrics)
REASONS: tuple[str, ...] = (
    "not_started",
    "startup_fatal",
    "runtime_fatal",
    "startup_hung",
    "liveness_probe_failing",
    "readiness_probe_failing",
    "shutting_down",
    "cluster_degraded",
    "db_unavailable",
    "cluster_never_joined",
    "cluster_peers_missing",
    "kill_deferred",
)
_GENERIC_FATAL = frozenset({"failed_to_start"})
_NO_BOOT_SEEN = "no boot seen in this log"


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds, all in seconds."""

    startup_deadline_seconds: float = 1200.0
    progress_timeout_seconds: float = 300.0
    liveness_grace_seconds: float = 60.0
    degraded_hold_seconds: float = 60.0
    db_down_hold_seconds: float = 60.0
    membership_grace_seconds: float = 120.0
    #: a failing answer older than this is no evidence: the prober that would renew it is
    #: stalled (the sidecar's own /healthz fails), and a stale failure must not kill
    probe_evidence_max_age_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    """One named piece of evidence.  ``since``: when the failure began (time axis of now)."""

    name: str
    ok: bool
    _: KW_ONLY
    reason: str = ""
    since: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.reason for c in self.checks if not c.ok))

    @property
    def since(self) -> float | None:
        times = [c.since for c in self.checks if not c.ok and c.since is not None]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Verdicts:
    started: Verdict
    live: Verdict
    ready: Verdict
    startup_probe: Verdict
    #: reason a restart is wanted ("" when none); the Kubernetes side takes a slot for it
    kill_wanted: str
    #: a restart is wanted but no kill-budget slot is held: ``live`` stays true for now
    kill_deferred: bool
    membership: MembershipAssessment | None
    db_down: bool


def evaluate(snap: HealthSnapshot, now: float, policy: Policy) -> Verdicts:
    """All verdicts at ``now``.  Pure."""
    started_check = _started(snap)
    db_down = _db_down(snap, now, policy)
    membership = _membership(snap, started_check.ok, db_down, now, policy)
    kill_checks = _kill_checks(snap, started_check.ok, now, policy, membership)
    kill_wanted = next((c.reason for c in kill_checks if not c.ok), "")
    deferred = bool(kill_wanted) and _budget_blocks(snap)
    live_checks = (
        kill_checks
        if not deferred
        else tuple(Check(c.name, True, detail=c.detail) for c in kill_checks)
    )
    live = Verdict(all(c.ok for c in live_checks), live_checks)
    ready_checks = (
        started_check,
        *kill_checks,
        *_ready_checks(snap, now, policy, db_down, membership),
    )
    if deferred:
        ready_checks = (
            *ready_checks,
            Check(
                "kill_budget",
                False,
                reason="kill_deferred",
                since=now,
                detail=f"waiting for a slot to restart: {kill_wanted}",
            ),
        )
    ready = Verdict(all(c.ok for c in ready_checks), ready_checks)
    started = Verdict(started_check.ok, (started_check,))
    startup_probe = _startup_probe(snap, started_check.ok, live.ok, now, policy)
    return Verdicts(
        started=started,
        live=live,
        ready=ready,
        startup_probe=startup_probe,
        kill_wanted=kill_wanted,
        kill_deferred=deferred,
        membership=membership,
        db_down=db_down,
    )


def _startup_probe(
    snap: HealthSnapshot, started: bool, live: bool, now: float, policy: Policy
) -> Verdict:
    """The startup phase is over once started, failed, or (no boot ever seen) past the
    deadline: a boot the sidecar never saw must not end in the startup probe's kill either."""
    unseen_over = not snap.boot_seen and now >= (
        snap.boot_started_at + policy.startup_deadline_seconds
    )
    over = started or not live or unseen_over
    if started:
        detail = "started"
    elif not live:
        detail = "failed"
    else:
        detail = _NO_BOOT_SEEN if unseen_over else "starting"
    check = Check(
        "startup_phase",
        over,
        reason="" if over else "not_started",
        since=None if over else snap.boot_started_at,
        detail=detail,
    )
    return Verdict(over, (check,))


def _started(snap: HealthSnapshot) -> Check:
    if snap.complete_at is not None and not snap.boot_embedded:
        return Check("started", True, detail="log")
    probe = snap.probes.get("started")
    if probe is not None and probe.ok_in_boot:
        return Check("started", True, detail="http")
    return Check("started", False, reason="not_started", since=snap.boot_started_at)


def _db_down(snap: HealthSnapshot, now: float, policy: Policy) -> bool:
    recent_error = (
        snap.db_error_at is not None and now - snap.db_error_at <= policy.db_down_hold_seconds
    )
    ready = snap.probes.get("ready")
    return recent_error or (ready is not None and ready.ok is False and ready.database_down)


def _kill_checks(
    snap: HealthSnapshot,
    started: bool,
    now: float,
    policy: Policy,
    membership: MembershipAssessment | None,
) -> tuple[Check, ...]:
    checks = [
        _fatal_check(snap),
        _runtime_check(snap),
        _hung_check(snap, started, now, policy),
        _live_endpoint_check(snap, started, now, policy),
    ]
    if membership is not None and membership.kill_wanted:
        checks.append(_membership_check(membership))
    return tuple(checks)


def _fatal_check(snap: HealthSnapshot) -> Check:
    if snap.fatal_at is None:
        return Check("startup", True)
    specific = [r for r in snap.fatal_reasons if r not in _GENERIC_FATAL]
    if not specific and _db_unavailable_in_boot(snap):
        # "Failed to start server" because the database cannot be used: a restart cannot help
        return Check("startup", True, detail="database unavailable at startup")
    return Check(
        "startup",
        False,
        reason="startup_fatal",
        since=snap.fatal_at,
        detail=(specific or ["failed_to_start"])[0],
    )


def _db_unavailable_in_boot(snap: HealthSnapshot) -> bool:
    return snap.db_error_at is not None and snap.db_error_at >= snap.boot_started_at


def _runtime_check(snap: HealthSnapshot) -> Check:
    if snap.runtime_fatal_at is None:
        return Check("runtime", True)
    return Check(
        "runtime",
        False,
        reason="runtime_fatal",
        since=snap.runtime_fatal_at,
        detail=snap.runtime_fatal_reason,
    )


def _hung_check(snap: HealthSnapshot, started: bool, now: float, policy: Policy) -> Check:
    last_activity = max(snap.boot_started_at, snap.last_progress_at or snap.boot_started_at)
    deadline_at = snap.boot_started_at + policy.startup_deadline_seconds
    silent_at = last_activity + policy.progress_timeout_seconds
    if snap.fatal_at is not None or snap.shutdown_at is not None:
        return Check("bootstrap", True)
    if not snap.log_present:
        # no log to read: silence is the sidecar's blind spot, not evidence about Keycloak
        return Check("bootstrap", True, detail="no log evidence")
    initializing = _initializing_since(snap)
    if started and initializing is None:
        return Check("bootstrap", True)
    if initializing is None and not snap.boot_seen:
        # the log began after the boot (rotated, or the sidecar started beside a running
        # Keycloak): "no boot seen" is not "boot hung"; readiness says not_started instead
        return Check("bootstrap", True, detail=_NO_BOOT_SEEN)
    if now < deadline_at or now < silent_at:
        return Check("bootstrap", True)
    detail = (
        "initialization (Keycloak Initialized) never finished"
        if started
        else "no 'started' line and no progress"
    )
    return Check(
        "bootstrap", False, reason="startup_hung", since=max(deadline_at, silent_at), detail=detail
    )


def _initializing_since(snap: HealthSnapshot) -> float | None:
    """Keycloak 26.6+ async bootstrap: ready stays DOWN on 'Keycloak Initialized'."""
    ready = snap.probes.get("ready")
    if ready is None or not ready.initializing or ready.failing_since is None:
        return None
    return ready.failing_since


def _live_endpoint_check(snap: HealthSnapshot, started: bool, now: float, policy: Policy) -> Check:
    probe = snap.probes.get("live")
    if not started or probe is None or probe.positive_failing_since is None:
        return Check("keycloak_live_endpoint", True)
    # the grace runs from the later of the first failing answer and the start: answers given
    # while Keycloak was still booting are no evidence against a server that has just started
    if probe.observed_at is None or now - probe.observed_at > policy.probe_evidence_max_age_seconds:
        return Check("keycloak_live_endpoint", True, detail="no fresh answer (prober stalled?)")
    failing_since = max(probe.positive_failing_since, snap.complete_at or float("-inf"))
    failing_for = now - failing_since
    if failing_for < policy.liveness_grace_seconds:
        return Check(
            "keycloak_live_endpoint", True, detail=f"failing for {failing_for:.0f}s ({probe.error})"
        )
    return Check(
        "keycloak_live_endpoint",
        False,
        reason="liveness_probe_failing",
        since=failing_since + policy.liveness_grace_seconds,
        detail=probe.error,
    )


def _membership(
    snap: HealthSnapshot, started: bool, db_down: bool, now: float, policy: Policy
) -> MembershipAssessment | None:
    if snap.kube is None:
        return None
    return assess_membership(
        view=snap.view,
        facts=snap.kube,
        started=started,
        db_down=db_down,
        evidence_since=snap.membership_evidence_since,
        now=now,
        grace_seconds=policy.membership_grace_seconds,
    )


def _membership_check(membership: MembershipAssessment) -> Check:
    return Check(
        "cluster_membership",
        False,
        reason=membership.reason,
        since=membership.since,
        detail=membership.detail,
    )


def _budget_blocks(snap: HealthSnapshot) -> bool:
    kube = snap.kube
    return kube is not None and kube.budget_enabled and not kube.kill_slot_held


def _ready_checks(
    snap: HealthSnapshot,
    now: float,
    policy: Policy,
    db_down: bool,
    membership: MembershipAssessment | None,
) -> tuple[Check, ...]:
    checks = [_ready_endpoint_check(snap.probes.get("ready"))]
    if snap.shutdown_at is not None:
        checks.append(Check("shutdown", False, reason="shutting_down", since=snap.shutdown_at))
    degraded = (
        snap.degraded_at is not None and now - snap.degraded_at <= policy.degraded_hold_seconds
    )
    if degraded:
        checks.append(
            Check(
                "cluster",
                False,
                reason="cluster_degraded",
                since=snap.degraded_at,
                detail=snap.degraded_reason,
            )
        )
    if db_down:
        checks.append(Check("database", False, reason="db_unavailable", since=snap.db_error_at))
    if membership is not None and not membership.ok and not membership.kill_wanted:
        checks.append(_membership_check(membership))
    return tuple(checks)


def _ready_endpoint_check(probe: ProbeSnapshot | None) -> Check:
    if probe is None:
        return Check("keycloak_ready_endpoint", True, detail="not probed")
    if probe.ok is None:
        return Check(
            "keycloak_ready_endpoint",
            False,
            reason="readiness_probe_failing",
            detail="no result yet",
        )
    if probe.ok:
        return Check("keycloak_ready_endpoint", True)
    return Check(
        "keycloak_ready_endpoint",
        False,
        reason="readiness_probe_failing",
        since=probe.failing_since,
        detail=probe.error,
    )


@dataclass(frozen=True, slots=True)
class Transition:
    verdict: str  # "started", "live", "ready"
    ok: bool
    reasons: tuple[str, ...]
    at: float


class TransitionTracker:
    """Remembers when each verdict last changed, so ok verdicts have a 'since' too."""

    def __init__(self, now: float) -> None:
        self._state: dict[str, tuple[bool, tuple[str, ...], float]] = {}
        self._start = now

    def observe(self, verdicts: Verdicts, now: float) -> list[Transition]:
        """Record the verdicts; return the changes since the last call."""
        changes = []
        for name, verdict in (
            ("started", verdicts.started),
            ("live", verdicts.live),
            ("ready", verdicts.ready),
        ):
            reasons = verdict.reasons
            previous = self._state.get(name)
            if previous is None or previous[0] != verdict.ok or previous[1] != reasons:
                at = now if previous is not None else self._start
                if previous is not None and previous[0] == verdict.ok:
                    at = previous[2]  # same ok/failing state, other reasons: keep its start
                self._state[name] = (verdict.ok, reasons, at)
                changes.append(Transition(name, verdict.ok, reasons, now))
        return changes

    def since(self, name: str) -> float | None:
        entry = self._state.get(name)
        return None if entry is None else entry[2]
