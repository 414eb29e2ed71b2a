"""MonitorState: the single mutable record of what the sidecar knows about Keycloak.

Workers write into it (log events, probe results, Kubernetes facts); handlers and the metrics
collector read frozen snapshots.  It keeps only the current boot: a new boot (a boot line in
the log, the container restarting, or the HTTP target going away and coming back) starts a
fresh ``BootRecord`` with fresh deadlines.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.core.events import (
    STARTUP_ONLY_REASONS,
    ClusterView,
    EventKind,
    LogEvent,
    ProbeResult,
)
from sidecar.core.membership import KubeFacts, MembershipAssessment

_GONE_ERRORS = frozenset({"refused", "connection"})
_RECENT_BOOT_SECONDS = 120.0
#: recorded events kept for the status page's timeline
RECENT_EVENTS_MAX = 40
_SEEN_VIEWS_MAX = 16
_TIMEOUT_PAIR_SECONDS = 60.0
#: degraded reasons that are routine once (a timeout under load, a send that failed while a
#: peer restarted): two within _TIMEOUT_PAIR_SECONDS are needed
_REPEATED_DEGRADED = frozenset({"request_timeout", "peer_unreachable", "peer_suspected"})
#: reported (events, metrics, Events) but no reason to leave the Services: Infinispan logs
#: "possible split brain" on the survivor of a crashed peer as on each side of a partition,
#: and a 2-replica cluster would lose its last ready replica; JGroups logs "no physical
#: address" (JGRP000032) at every join (the joiner's address not learned yet) and leave (the
#: leaver's forgotten), repeatedly while discovery catches up.  A real partition or a lost
#: peer is caught by the membership check (the views against the peers the API says are
#: ready), which reads neither
_INFORMATIONAL_DEGRADED = frozenset({"split_brain", "peer_address_unknown"})
#: degraded reasons about one peer: resolved once a view without that peer is installed
_PEER_DEGRADED = frozenset({"peer_unreachable", "peer_suspected"})


def _member_name(name: str) -> str:
    """A member as a view and a JGroups message name it: ``kc1``, ``kc1(v=16.0.14)``,
    ``kc1:`` are one member."""
    return name.split("(", 1)[0].rstrip(":").strip()


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """One recorded event for the timeline: codes and times only, never log text."""

    kind: str
    reason: str
    code: str
    at: float
    line: int


@dataclass(slots=True)
class BootRecord:
    """Everything about the current Keycloak boot.  Times are on the state's time axis."""

    number: int
    started_at: float
    cause: str  # "initial", "log", "container_restart", "http_restart"
    named: bool = False  # a boot line in the log named it
    embedded: bool = False
    markers: set[str] = field(default_factory=set)
    complete_at: float | None = None
    fatal_at: float | None = None
    fatal_reasons: list[str] = field(default_factory=list)
    fatal_code: str = ""
    runtime_fatal_at: float | None = None
    runtime_fatal_reason: str = ""
    shutdown_at: float | None = None
    last_progress_at: float | None = None
    #: a boot marker other than the 'started' line itself was seen in this boot
    marked: bool = False
    #: Keycloak 26.6+ async bootstrap: 'started' came before any other boot marker, so the
    #: bootstrap (migration, Infinispan, JGroups) still follows in this very boot, until
    #: "Bootstrap completed"; its markers then begin no new boot
    bootstrapping: bool = False

    @property
    def terminal(self) -> bool:
        return any(
            t is not None
            for t in (self.complete_at, self.fatal_at, self.runtime_fatal_at, self.shutdown_at)
        )

    @property
    def ended(self) -> bool:
        """Failed or stopped: any further boot marker begins a new boot."""
        return any(t is not None for t in (self.fatal_at, self.runtime_fatal_at, self.shutdown_at))


@dataclass(slots=True)
class ProbeTrack:
    """History of one HTTP target within the current boot."""

    last: ProbeResult | None = None
    ok_since: float | None = None
    failing_since: float | None = None
    positive_failing_since: float | None = None  # failures that are evidence (not timeouts)
    gone_since: float | None = None  # nothing listening
    ok_in_boot: bool = False
    answered_in_boot: bool = False  # any HTTP answer in the current boot
    went_away_after_answer: bool = False
    observed_at: float | None = None  # when the last result was recorded


@dataclass(frozen=True, slots=True)
class ProbeSnapshot:
    ok: bool | None  # None: no result yet
    failing_since: float | None
    positive_failing_since: float | None
    ok_in_boot: bool
    error: str
    database_down: bool
    initializing: bool  # Keycloak 26.6+ "Keycloak Initialized" check is DOWN
    observed_at: float | None  # when the last result was recorded (None: no result yet)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A frozen copy of what the policy needs."""

    boot_started_at: float
    boot_embedded: bool
    #: positive evidence that this boot began where the sidecar could see it: a boot line in
    #: the log, a container restart seen through the API, or an HTTP target gone and back
    boot_seen: bool
    complete_at: float | None
    fatal_at: float | None
    fatal_reasons: tuple[str, ...]
    runtime_fatal_at: float | None
    runtime_fatal_reason: str
    shutdown_at: float | None
    last_progress_at: float | None
    db_error_at: float | None
    degraded_at: float | None
    degraded_reason: str
    view: ClusterView | None
    probes: dict[str, ProbeSnapshot]
    kube: KubeFacts | None
    membership_evidence_since: float | None
    log_present: bool
    log_caught_up: bool


class MonitorState:
    """The one mutable record.  Not thread-safe: used from the event loop only."""

    def __init__(self, now: float, *, probe_targets: tuple[str, ...] = ()) -> None:
        self.boot = BootRecord(number=0, started_at=now, cause="initial")
        self.boots_total = 0
        self.events_total: Counter[str] = Counter()
        self.startup_fatal_total: Counter[str] = Counter()
        self.db_unavailable_total: Counter[str] = Counter()
        self.db_error_at: float | None = None
        self.degraded_at: float | None = None
        self.degraded_reason = ""
        self._last_routine_degraded: dict[str, float] = {}
        self.view: ClusterView | None = None
        self.view_since: float | None = None
        self._seen_views: list[tuple[str, int]] = []
        self._last_node_event: tuple[str, str, int] | None = None
        self.probes: dict[str, ProbeTrack] = {t: ProbeTrack() for t in probe_targets}
        self.kube: KubeFacts | None = None
        self.membership_evidence_since: float | None = None
        self.log_present = False
        self.log_caught_up = False
        self.last_line_at: float | None = None
        self.recent_boots: list[tuple[int, str, float]] = []
        self.recent_events: deque[RecentEvent] = deque(maxlen=RECENT_EVENTS_MAX)
        #: bumped on every change that can alter a verdict (lets handlers reuse a verdict)
        self.version = 0
        #: called after each bump (the daemon wakes its verdict worker with it)
        self.on_change: Callable[[], None] = _nothing

    def _bump(self) -> None:
        self.version += 1
        self.on_change()

    # --- log events ------------------------------------------------------------------------
    def wants_boot_scan(self) -> bool:
        """While a boot is in progress, every rule matters; afterwards only runtime ones."""
        boot = self.boot
        return boot.complete_at is None or boot.embedded

    def apply(self, event: LogEvent, now: float) -> list[LogEvent]:
        """Record one classified event; return what was recorded (derived ``boot`` first)."""
        recorded: list[LogEvent] = []
        decision = self._boot_decision(event) if event.boot_marker else ""
        if decision:
            recorded.append(
                LogEvent(
                    EventKind.BOOT,
                    reason="marker",
                    line=event.line,
                    timestamp=event.timestamp,
                    code=event.code,
                    rule=event.rule,
                    embedded=event.embedded,
                )
            )
            if decision == "new":
                self._begin_boot(now, "log", named=True)
            else:
                self.boot.named = True
                self.boots_total += 1
                self._note_boot()
        if event.boot_marker and event.kind is not EventKind.STARTUP_COMPLETE:
            self.boot.marked = True
        if event.once_per_boot:
            self.boot.markers.add(event.rule)
            self.boot.embedded = self.boot.embedded or event.embedded
        converted = self._convert(event)
        if converted is not None and self._record(converted, now):
            recorded.append(converted)
        if recorded:
            self._bump()
        for item in recorded:
            self.recent_events.append(
                RecentEvent(item.kind.value, item.reason, item.code, now, item.line)
            )
            self.events_total[item.kind.value] += 1
            if item.kind is EventKind.STARTUP_FATAL:
                self.startup_fatal_total[item.reason] += 1
            elif item.kind is EventKind.DB_UNAVAILABLE:
                self.db_unavailable_total[item.reason] += 1
        return recorded

    def begin_log_time(self) -> None:
        """A replay in log time begins: the boot's origin is the log's first timestamp
        (``log_time_started``), 0 until one is read."""
        self.boot.started_at = 0.0

    def log_time_started(self, stamp: float) -> None:
        """A replay in log time reached the log's first timestamp: the boot the log begins
        with (no boot line seen yet) started no later than that."""
        if self.boot.number == 0 and self.boot.cause == "initial":
            self.boot.started_at = stamp

    def _boot_decision(self, event: LogEvent) -> str:
        """'' (same boot), 'name' (the boot seen so far gets its first marker), or 'new'."""
        boot = self.boot
        if event.rule in boot.markers or boot.ended:
            return "new"
        if boot.terminal and not boot.bootstrapping:
            return "new"
        return "" if boot.named else "name"

    def _convert(self, event: LogEvent) -> LogEvent | None:
        """A 'startup' fatal after startup completed is a runtime matter."""
        started = self.boot.complete_at is not None and not self.boot.embedded
        if event.kind is not EventKind.STARTUP_FATAL or not started:
            return event
        if event.reason == "db_config":
            # a running server whose new connections are refused their credentials (rotated
            # under it): the database is unusable for it, which is no reason to restart
            return dataclasses.replace(event, kind=EventKind.DB_UNAVAILABLE, reason="credentials")
        if event.reason == "jvm":
            return dataclasses.replace(event, kind=EventKind.RUNTIME_FATAL, reason="jvm_crash")
        if event.reason in STARTUP_ONLY_REASONS:
            # e.g. a realm's key provider failing to load a keystore at runtime: not a reason
            # to restart a server that started (bootstrap causes such as liquibase still
            # count: 26.6+ runs migrations after the 'started' line)
            return None
        return event

    def _record(self, event: LogEvent, now: float) -> bool:  # noqa: PLR0912
        boot = self.boot
        kind = event.kind
        if kind is EventKind.STARTUP_PROGRESS:
            boot.last_progress_at = now
            if event.reason == "bootstrap":  # 26.6+: the async bootstrap after 'started' ended
                boot.bootstrapping = False
        elif kind is EventKind.STARTUP_COMPLETE:
            if event.embedded:
                boot.embedded = True
                boot.complete_at = boot.complete_at or now
            elif boot.complete_at is None or boot.embedded:
                boot.complete_at, boot.embedded = now, False
                boot.bootstrapping = not boot.marked
            boot.last_progress_at = now
        elif kind is EventKind.STARTUP_FATAL:
            if boot.fatal_at is None:
                boot.fatal_at, boot.fatal_code = now, event.code
            if event.reason not in boot.fatal_reasons:
                boot.fatal_reasons.append(event.reason)
        elif kind is EventKind.RUNTIME_FATAL:
            if boot.runtime_fatal_at is None:
                boot.runtime_fatal_at, boot.runtime_fatal_reason = now, event.reason
        elif kind is EventKind.DB_UNAVAILABLE:
            self.db_error_at = now
        elif kind is EventKind.SHUTDOWN:
            boot.shutdown_at = boot.shutdown_at or now
        elif kind is EventKind.CLUSTER_DEGRADED:
            if not self._about_a_departed_member(event):
                self._record_degraded(event.reason, now)
        elif kind is EventKind.CLUSTER_VIEW:
            return self._record_view(event, now)
        elif kind in (EventKind.NODE_JOINED, EventKind.NODE_LEFT):
            view_id = self.view.view_id if self.view else -1
            key = (kind.value, event.node, view_id)
            if key == self._last_node_event:
                return False
            self._last_node_event = key
        return True

    def _record_degraded(self, reason: str, now: float) -> None:
        """A single remote-command timeout or unreachable-peer warning is routine; two close
        together are not.  Every other degraded reason (split brain, state transfer) counts
        at once."""
        if reason in _INFORMATIONAL_DEGRADED:
            return
        if reason in _REPEATED_DEGRADED:
            previous = self._last_routine_degraded.get(reason)
            self._last_routine_degraded[reason] = now
            if previous is None or now - previous > _TIMEOUT_PAIR_SECONDS:
                return
        self.degraded_at, self.degraded_reason = now, reason

    def _about_a_departed_member(self, event: LogEvent) -> bool:
        """Unreachable-peer evidence naming a member the current view no longer holds (or
        a bare address no view holds): JGroups retrying to a peer that has left."""
        if event.reason not in _PEER_DEGRADED or not event.node or self.view is None:
            return False
        return _member_name(event.node) not in {_member_name(m) for m in self.view.members}

    def _record_view(self, event: LogEvent, now: float) -> bool:
        view = event.view
        if view is None:
            return True
        key = (view.channel, view.view_id)
        if key in self._seen_views:
            return False
        self._seen_views = [*self._seen_views[-(_SEEN_VIEWS_MAX - 1) :], key]
        previous = self.view
        self.view, self.view_since = view, now
        left = previous is not None and bool(
            {_member_name(m) for m in previous.members} - {_member_name(m) for m in view.members}
        )
        if left and self.degraded_reason in _PEER_DEGRADED:
            # failure detection concluded: the unreachable peer is out of the view (a crashed
            # peer, or one side of a partition, which the membership check judges)
            self.degraded_at, self.degraded_reason = None, ""
            for reason in _PEER_DEGRADED:
                self._last_routine_degraded.pop(reason, None)
        return True

    # --- new boots -----------------------------------------------------------------------------
    def _begin_boot(self, now: float, cause: str, *, named: bool = False) -> None:
        self._bump()
        self.boot = BootRecord(
            number=self.boot.number + 1, started_at=now, cause=cause, named=named
        )
        self.boots_total += 1
        self._seen_views.clear()
        self.view, self.view_since = None, None
        self.degraded_at, self.degraded_reason = None, ""
        self.membership_evidence_since = None
        for track in self.probes.values():
            track.ok_in_boot = track.answered_in_boot = track.went_away_after_answer = False
            track.positive_failing_since = None
        self._note_boot()

    def _note_boot(self) -> None:
        self.recent_boots = [
            *self.recent_boots[-9:],
            (self.boot.number, self.boot.cause, self.boot.started_at),
        ]

    def rearm(self, now: float, cause: str) -> bool:
        """The container restarted (seen from the API): start a fresh boot unless the log
        already showed this boot begin."""
        boot = self.boot
        if boot.named and not boot.terminal and now - boot.started_at < _RECENT_BOOT_SECONDS:
            return False
        self._begin_boot(now, cause)
        return True

    # --- probes ----------------------------------------------------------------------------
    def record_probe(self, result: ProbeResult, now: float) -> None:
        self._bump()
        track = self.probes.setdefault(result.target, ProbeTrack())
        answered = result.error not in _GONE_ERRORS
        # only a target that answered in this boot, went away and answers again is a restart;
        # a port that opens for the first time (after a fatal line, say) is not
        if (
            answered
            and track.went_away_after_answer
            and self.boot.started_at < (track.gone_since or now)
        ):
            self._begin_boot(now, "http_restart")
        if answered:
            track.answered_in_boot = True
            track.went_away_after_answer = False
        elif track.answered_in_boot:
            track.went_away_after_answer = True
        track.last = result
        track.observed_at = now
        if result.ok:
            track.ok_since = track.ok_since if track.failing_since is None else now
            track.ok_since = track.ok_since or now
            track.failing_since = track.positive_failing_since = track.gone_since = None
            track.ok_in_boot = True
            return
        track.failing_since = track.failing_since or now
        track.ok_since = None
        if result.error in _GONE_ERRORS:
            track.gone_since = track.gone_since or now
        else:
            track.gone_since = None
        if result.error in ("http_status", "body", "refused"):
            track.positive_failing_since = track.positive_failing_since or now
        else:
            track.positive_failing_since = None

    # --- Kubernetes ----------------------------------------------------------------------------
    def update_kube(self, facts: KubeFacts) -> None:
        if facts != self.kube:
            self._bump()
        self.kube = facts

    def carry_membership_evidence(self, membership: MembershipAssessment | None) -> None:
        """Part of the core step: remember when the current run of membership-loss evidence
        began, for the next assessment (``membership.py``: evidence bookkeeping).  No
        version bump: the verdicts just evaluated already assumed this value."""
        evidence = membership is not None and not membership.ok and not membership.unknown
        self.membership_evidence_since = membership.since if evidence and membership else None

    # --- snapshot ------------------------------------------------------------------------------
    def snapshot(self) -> HealthSnapshot:
        boot = self.boot
        return HealthSnapshot(
            boot_started_at=boot.started_at,
            boot_embedded=boot.embedded,
            boot_seen=boot.named or boot.cause != "initial",
            complete_at=boot.complete_at,
            fatal_at=boot.fatal_at,
            fatal_reasons=tuple(boot.fatal_reasons),
            runtime_fatal_at=boot.runtime_fatal_at,
            runtime_fatal_reason=boot.runtime_fatal_reason,
            shutdown_at=boot.shutdown_at,
            last_progress_at=boot.last_progress_at,
            db_error_at=self.db_error_at,
            degraded_at=self.degraded_at,
            degraded_reason=self.degraded_reason,
            view=self.view,
            probes={name: _probe_snapshot(track) for name, track in self.probes.items()},
            kube=self.kube,
            membership_evidence_since=self.membership_evidence_since,
            log_present=self.log_present,
            log_caught_up=self.log_caught_up,
        )

    def shift_times(self, offset_seconds: float) -> None:
        """Move every stored time by ``offset_seconds`` (log time -> monotonic time after a
        recovery replay)."""

        def moved(value: float | None) -> float | None:
            return None if value is None else value + offset_seconds

        self._bump()
        boot = self.boot
        boot.started_at += offset_seconds
        for name in (
            "complete_at",
            "fatal_at",
            "runtime_fatal_at",
            "shutdown_at",
            "last_progress_at",
        ):
            setattr(boot, name, moved(getattr(boot, name)))
        self.db_error_at = moved(self.db_error_at)
        self.degraded_at = moved(self.degraded_at)
        self.view_since = moved(self.view_since)
        self.recent_boots = [(n, c, t + offset_seconds) for n, c, t in self.recent_boots]
        self.recent_events = deque(
            (dataclasses.replace(e, at=e.at + offset_seconds) for e in self.recent_events),
            maxlen=RECENT_EVENTS_MAX,
        )


def _nothing() -> None:
    """The default ``on_change``: nobody is waiting."""


def _probe_snapshot(track: ProbeTrack) -> ProbeSnapshot:
    last = track.last
    initializing = False
    if last is not None:
        initializing = any(not c.up and "initialized" in c.name.lower() for c in last.checks)
    return ProbeSnapshot(
        ok=None if last is None else last.ok,
        failing_since=track.failing_since,
        positive_failing_since=track.positive_failing_since,
        ok_in_boot=track.ok_in_boot,
        error="" if last is None else last.error,
        database_down=False if last is None else last.database_down,
        initializing=initializing,
        observed_at=track.observed_at,
    )
