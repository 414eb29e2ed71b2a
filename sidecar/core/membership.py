"""Cluster membership: Infinispan member names -> pods, and the membership-loss assessment.

Pure: no I/O, no clock.  The Kubernetes worker (``kube/worker.py``) observes the API and
hands the core a ``KubeFacts``; the core calls ``assess_membership`` with the current
cluster view from the log and its own time axis.

Evidence bookkeeping
    ``assess_membership`` returns ``since``: the start of the current continuous evidence.
    The core stores it and passes it back as ``evidence_since`` on the next call (``None``
    when the last assessment had no evidence).  Any call without evidence (membership
    fine, unknown, not started) ends the run, so only uninterrupted evidence reaches the
    grace.  While the database looks down the evidence start is pushed to ``now``: the
    grace counts again from the end of the outage, because a restart cannot fix a
    membership problem the outage causes, and the cluster needs time to re-form after it.

Who is expected in the view
    A peer is *expected* when its pod is Running, not terminating, and
      * its Keycloak container is ready, or
      * its readiness-gate condition says ``False`` (it reports a membership loss itself:
        its NotReady is ours, not its own), or
      * its Keycloak container, in this incarnation, was ready within
        ``grace_seconds + PEER_MEMORY_MARGIN_SECONDS`` (``PeerPod.ready_at``).
    The last two rules stop the two-replica flip-flop: in a symmetric partition both
    replicas turn NotReady, and without a memory each would drop the other from the
    expected set, turn ready again, see the peer ready, and so on, never reaching the
    grace.  A container restart starts a new incarnation (``ready_at`` cleared by the
    worker), so a restarted peer is expected again only once it is ready.

Who is at fault
    Evidence needs the own side not to be a strict majority: if the own view holds more
    than half of the expected members (self included), the missing peers are the ones cut
    off and restarting *this* replica cannot help (``ok`` stays true).  In a 1-against-2
    partition only the single replica sees evidence; with two replicas both do, and the
    kill budget (a Lease) restarts one after the other.

When a restart cannot help (``kill_wanted`` stays false)
    * the database looks down;
    * membership is unknown (``ok`` true, ``unknown`` true): no Kubernetes facts, API
      unusable, no cluster view seen yet, the own member not mappable to the own pod, or
      expected peers missing while some view members cannot be mapped (UUIDs);
    * at least two expected peers and every one of them reports the same loss through
      its readiness-gate condition (a cluster-wide failure such as broken discovery).
      With a single peer this rule would block the symmetric two-replica partition
      forever, so it needs two.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from sidecar.core.events import ClusterView

#: How long past the grace a peer that was ready stays expected while NotReady.
PEER_MEMORY_MARGIN_SECONDS = 60.0

REASON_NEVER_JOINED = "cluster_never_joined"
REASON_PEERS_MISSING = "cluster_peers_missing"
REASON_UNKNOWN = "membership_unknown"

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_RANDOM_SUFFIX = re.compile(r"^(?P<host>.+)-\d{1,6}$")
#: Linux truncates the host name (= pod name) to 63 characters.
_HOSTNAME_MAX = 63


@dataclass(frozen=True, slots=True)
class PeerPod:
    """What the API says about one other pod matched by the peer selector."""

    name: str
    running: bool
    terminating: bool
    keycloak_ready: bool
    ip: str
    #: the peer's readiness-gate condition: "True", "False" or "" (none / gate unused)
    membership_condition: str = ""
    #: monotonic time this container incarnation was last seen ready (None: never)
    ready_at: float | None = None


@dataclass(frozen=True, slots=True)
class KubeFacts:
    """The Kubernetes side's observations, stored by the core as one value."""

    api_ok: bool
    api_error: str
    own_pod: str
    peers: tuple[PeerPod, ...]
    kill_slot_held: bool
    budget_enabled: bool
    observed_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipAssessment:
    """``ok`` is true when membership is fine *or unknown*; ``reason`` says which."""

    ok: bool
    reason: str
    since: float | None
    kill_wanted: bool
    unknown: bool
    expected_members: int
    detail: str


def member_to_pod(member: str, pod_names: Collection[str]) -> str | None:
    """The pod an Infinispan/JGroups member name belongs to, or None when unknowable.

    Shapes: ``keycloak-0`` (WildFly, node name = host name), ``keycloak-0/keycloak``
    (WildFly ``<node>/<cluster>``), ``keycloak-0-12345`` (Quarkus ``<host>-<random>``),
    topology suffixes ``(site-id=.., rack-id=.., machine-id=..)`` even when cut short, and
    host names truncated to 63 characters.  Raw UUIDs and ``(starting)`` give None.
    """
    name = _base_name(member)
    if name is None:
        return None
    if name in pod_names:
        return name
    match = _RANDOM_SUFFIX.match(name)
    if match is None:
        return None
    host = match.group("host")
    if host in pod_names:
        return host
    if len(host) == _HOSTNAME_MAX:
        candidates = [pod for pod in pod_names if pod.startswith(host)]
        if len(candidates) == 1:
            return candidates[0]
    return None


def _base_name(member: str) -> str | None:
    """Strip topology and cluster suffixes; None for placeholders and UUIDs."""
    if "(starting)" in member:
        return None
    name = member.split("(", 1)[0].split("/", 1)[0].strip()
    if not name or _UUID.match(name):
        return None
    return name


def is_expected(peer: PeerPod, *, now: float, grace_seconds: float) -> bool:
    """See the module docstring: ready, reporting our loss, or ready recently."""
    if not peer.running or peer.terminating:
        return False
    if peer.keycloak_ready or peer.membership_condition == "False":
        return True
    memory_seconds = grace_seconds + PEER_MEMORY_MARGIN_SECONDS
    return peer.ready_at is not None and now - peer.ready_at <= memory_seconds


def _fine(expected: int, detail: str = "") -> MembershipAssessment:
    return MembershipAssessment(
        ok=True,
        reason="",
        since=None,
        kill_wanted=False,
        unknown=False,
        expected_members=expected,
        detail=detail,
    )


def _unknown(expected: int, detail: str) -> MembershipAssessment:
    return MembershipAssessment(
        ok=True,
        reason=REASON_UNKNOWN,
        since=None,
        kill_wanted=False,
        unknown=True,
        expected_members=expected,
        detail=detail,
    )


def assess_membership(  # noqa: PLR0911 - a decision ladder reads best flat
    *,
    view: ClusterView | None,
    facts: KubeFacts | None,
    started: bool,
    db_down: bool,
    evidence_since: float | None,
    now: float,
    grace_seconds: float,
) -> MembershipAssessment:
    """Is this replica missing from the cluster its ready peers form?  Pure."""
    if facts is None:
        return _unknown(0, "kubernetes side off")
    if not facts.api_ok:
        return _unknown(0, f"kubernetes api unusable: {facts.api_error or 'unknown'}")
    expected = [p for p in facts.peers if is_expected(p, now=now, grace_seconds=grace_seconds)]
    size = len(expected) + 1
    if not started or not expected:
        return _fine(size)
    if view is None:
        return _unknown(size, "no cluster view seen in the log")
    names = {p.name for p in facts.peers} | {facts.own_pod}
    mapped = [member_to_pod(m, names) for m in view.members]
    if facts.own_pod not in mapped:
        return _unknown(size, "own member not found in the view")
    missing = sorted({p.name for p in expected} - set(mapped))
    if not missing:
        return _fine(size)
    if None in mapped:
        return _unknown(size, "view members that cannot be mapped to pods")
    present = size - len(missing)
    if present * 2 > size:
        return _fine(size, f"{len(missing)} peer(s) cut off from the majority")
    return _evidence(
        view=view,
        expected=expected,
        missing=missing,
        db_down=db_down,
        evidence_since=evidence_since,
        now=now,
        grace_seconds=grace_seconds,
    )


def _evidence(
    *,
    view: ClusterView,
    expected: list[PeerPod],
    missing: list[str],
    db_down: bool,
    evidence_since: float | None,
    now: float,
    grace_seconds: float,
) -> MembershipAssessment:
    singleton_from_start = view.size <= 1 and view.view_id == 0
    reason = REASON_NEVER_JOINED if singleton_from_start else REASON_PEERS_MISSING
    since = now if db_down or evidence_since is None else evidence_since
    all_report_loss = len(expected) >= 2 and all(
        p.membership_condition == "False" for p in expected
    )
    kill_wanted = now - since >= grace_seconds and not db_down and not all_report_loss
    detail = f"view {view.view_id} has {view.size} member(s); missing {', '.join(missing)}"
    if db_down:
        detail += "; database down, no restart"
    elif all_report_loss:
        detail += "; every peer reports the same loss, no restart"
    return MembershipAssessment(
        ok=False,
        reason=reason,
        since=since,
        kill_wanted=kill_wanted,
        unknown=False,
        expected_members=len(expected) + 1,
        detail=detail,
    )
