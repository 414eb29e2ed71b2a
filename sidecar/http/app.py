"""The sidecar's HTTP endpoints: verdicts for the kubelet, metrics, and a status page.

Handlers do no I/O beyond writing the response: each one calls ``ctx.verdicts()`` (pure,
microseconds) and renders.  Responses carry only reason codes, message codes, names and
numbers, never raw log text (a log line can hold secrets).

``/livez``, ``/readyz``, ``/startupz``
    200 or 503 with a JSON body; ``?verbose`` (any value) answers in the text style of the
    Kubernetes API server's ``/livez?verbose``.  The top-level ``since`` of a failing verdict
    is when its earliest failing check began; of a passing one, when the verdict last
    changed (``ctx.tracker``; ``/startupz`` uses the ``started`` verdict's change time).
``/healthz``
    The sidecar's OWN health, never Keycloak's: 200 while every worker made progress within
    ``--worker-stall-timeout``, else 503 naming the stalled workers.  For the sidecar
    container's own probes (a hung event loop does not answer at all).
``/metrics``
    ``prometheus_client``'s aiohttp handler on ``ctx.registry`` (text or OpenMetrics by
    ``Accept``), or an equivalent fallback when that module is missing.
``/status``
    Everything the sidecar knows, as JSON, for humans and ``kubectl port-forward``.
``/``
    A browser (``Accept: text/html``) gets the status page (``statuspage``, rendered from
    the ``/status`` document); anything else the plain-text help.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sidecar import __version__
from sidecar.context import Context
from sidecar.core.events import ClusterView
from sidecar.core.health import Check, Verdict, Verdicts
from sidecar.core.membership import KubeFacts, MembershipAssessment, member_to_pod
from sidecar.core.redact import redacted_url, shown_member
from sidecar.core.state import ProbeTrack
from sidecar.http import statuspage
from sidecar.http.server import cache_hook

CONTEXT_KEY: Final = web.AppKey("context", Context)


class _RenderCache:
    """Rendered verdict bodies for the current ``Verdicts`` object (reused while the state
    is unchanged, see ``Context.verdicts``): a kubelet probe costs a dict lookup."""

    def __init__(self) -> None:
        self.verdicts: Verdicts | None = None
        self.bodies: dict[tuple[str, bool], tuple[int, str, str]] = {}

    def get(self, verdicts: Verdicts, key: tuple[str, bool]) -> tuple[int, str, str] | None:
        if verdicts is not self.verdicts:
            self.verdicts = verdicts
            self.bodies.clear()
            return None
        return self.bodies.get(key)


RENDER_KEY: Final = web.AppKey("render_cache", _RenderCache)
JSON_CONTENT_TYPE: Final = "application/json"
TEXT_CONTENT_TYPE: Final = "text/plain"


@dataclasses.dataclass(frozen=True, slots=True)
class _Endpoint:
    """A verdict endpoint: which verdict it serves and whose change time is its ``since``."""

    verdict: str  # the name in the body ("live", "ready", "startup")
    tracker_name: str  # TransitionTracker entry ("live", "ready", "started")
    select: Callable[[Verdicts], Verdict]


_ENDPOINTS: Final = {
    "/livez": _Endpoint("live", "live", lambda v: v.live),
    "/readyz": _Endpoint("ready", "ready", lambda v: v.ready),
    "/startupz": _Endpoint("startup", "started", lambda v: v.startup_probe),
}
#: /status shows the ``started`` verdict too
_STATUS_VERDICTS: Final = (
    _Endpoint("started", "started", lambda v: v.started),
    *_ENDPOINTS.values(),
)
_INDEX: Final = """keycloak-sidecar {version}

/livez      liveness verdict (point the Keycloak container's livenessProbe here)
/readyz     readiness verdict (readinessProbe)
/startupz   startup verdict (startupProbe)
            add ?verbose for one line per check
/healthz    the sidecar's own health (its workers make progress; for its own probes)
/metrics    Prometheus metrics (text or OpenMetrics)
/status     everything the sidecar knows, as JSON
/           this help; in a browser (Accept: text/html) the status page
"""


def create_app(ctx: Context) -> web.Application:
    """The application; the runtime serves it with ``AppRunner(access_log=None)``."""
    app = web.Application()
    app[CONTEXT_KEY] = ctx
    app[RENDER_KEY] = _RenderCache()
    app.router.add_get("/", _index)
    for path, endpoint in _ENDPOINTS.items():
        app.router.add_get(path, partial(_verdict, endpoint))
    app.router.add_get("/healthz", _healthz)
    cache = cache_hook(ctx, ctx.settings.http_cache_seconds)
    app.router.add_get("/metrics", cache(metrics_handler(ctx.registry)))
    app.router.add_get("/status", cache(_status))
    return app


def metrics_handler(registry: CollectorRegistry, *, prefer_library: bool = True) -> Handler:
    """``make_aiohttp_handler`` (prometheus_client >= 0.24) or the same thing done here."""
    if prefer_library:
        try:
            from prometheus_client.aiohttp import make_aiohttp_handler
        except ImportError:
            pass
        else:
            return make_aiohttp_handler(registry)
    return partial(_metrics_fallback, registry)


async def _metrics_fallback(registry: CollectorRegistry, request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(",".join(request.headers.getall(hdrs.ACCEPT, [])))
    names = request.query.getall("name[]", [])
    source = registry.restricted_registry(names) if names else registry
    return web.Response(body=encoder(source), headers={hdrs.CONTENT_TYPE: content_type})


async def _index(request: web.Request) -> web.Response:
    """A browser gets the status page (HTML), anything else the plain-text help."""
    if statuspage.wants_html(",".join(request.headers.getall(hdrs.ACCEPT, []))):
        page = statuspage.render_page(status_document(request.app[CONTEXT_KEY]))
        return web.Response(text=page, content_type=statuspage.HTML_CONTENT_TYPE)
    return web.Response(text=_INDEX.format(version=__version__), content_type=TEXT_CONTENT_TYPE)


async def _verdict(endpoint: _Endpoint, request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    verdicts = ctx.verdicts()
    verbose = "verbose" in request.query
    key = (request.path, verbose)
    cache = request.app[RENDER_KEY]
    rendered = cache.get(verdicts, key)
    if rendered is None:
        verdict = endpoint.select(verdicts)
        status = 200 if verdict.ok else 503
        if verbose:
            rendered = (
                status,
                _verbose_text(ctx, verdict, request.path.removeprefix("/")),
                TEXT_CONTENT_TYPE,
            )
        else:
            rendered = (
                status,
                json.dumps(_verdict_json(ctx, verdict, endpoint)),
                JSON_CONTENT_TYPE,
            )
        cache.bodies[key] = rendered
    status, text, content_type = rendered
    return web.Response(status=status, text=text, content_type=content_type)


async def _healthz(request: web.Request) -> web.Response:
    document = healthz_document(request.app[CONTEXT_KEY])
    return web.json_response(document, status=200 if document["status"] == "ok" else 503)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(status_document(request.app[CONTEXT_KEY]))


# --- rendering (pure functions of the context) -----------------------------------------------


def rfc3339(wall_seconds: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds (``2024-12-07T17:52:23.717Z``)."""
    if wall_seconds is None:
        return None
    moment = datetime.fromtimestamp(wall_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _wall(ctx: Context, moment: float | None) -> str | None:
    return rfc3339(ctx.to_wall(moment))


def _verdict_json(ctx: Context, verdict: Verdict, endpoint: _Endpoint) -> dict[str, Any]:
    since = verdict.since if not verdict.ok else None
    if since is None:
        since = ctx.tracker.since(endpoint.tracker_name)
    return {
        "status": "ok" if verdict.ok else "failing",
        "verdict": endpoint.verdict,
        "reasons": list(verdict.reasons),
        "since": _wall(ctx, since),
        "checks": [_check_json(ctx, check) for check in verdict.checks],
    }


def _check_json(ctx: Context, check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "ok": check.ok,
        "reason": check.reason,
        "since": _wall(ctx, check.since),
        "detail": check.detail,
    }


def _verbose_text(ctx: Context, verdict: Verdict, endpoint_name: str) -> str:
    lines = []
    for check in verdict.checks:
        if check.ok:
            lines.append(f"[+]{check.name} ok")
            continue
        parts = [f"reason={check.reason}"]
        if check.detail:
            parts.append(f"detail={json.dumps(check.detail)}")
        since = _wall(ctx, check.since)
        if since is not None:
            parts.append(f"since={since}")
        lines.append(f"[-]{check.name} failed: {' '.join(parts)}")
    if endpoint_name == "readyz":
        lines.append(_log_source_line(ctx))
    lines.append(f"{endpoint_name} check {'passed' if verdict.ok else 'failed'}")
    return "\n".join(lines) + "\n"


def _log_source_line(ctx: Context) -> str:
    """Information, not a check: ``[i]`` never counts towards the verdict."""
    state, detail = ctx.log_source_state()
    if not detail:
        return f"[i]log_source {state} (information, not a check)"
    return f"[i]log_source {state}: detail={json.dumps(detail)} (information, not a check)"


def healthz_document(ctx: Context) -> dict[str, Any]:
    """The ``/healthz`` body: each watched worker's seconds since its last progress."""
    now = ctx.clock.monotonic()
    threshold = ctx.settings.worker_stall_timeout_seconds
    stalled = ctx.heartbeats.stalled(now, threshold)
    return {
        "status": "failing" if stalled else "ok",
        "stalled": [stall.worker for stall in stalled],
        "worker_stall_timeout_seconds": threshold,
        "workers": {name: round(age, 3) for name, age in ctx.heartbeats.ages(now).items()},
    }


def status_document(ctx: Context) -> dict[str, Any]:
    """The ``/status`` body."""
    verdicts = ctx.verdicts()
    state = ctx.state
    document: dict[str, Any] = {
        "version": __version__,
        "now": rfc3339(ctx.clock.wall()),
        "boot": _boot_json(ctx),
        "verdicts": {
            endpoint.verdict: {
                "ok": endpoint.select(verdicts).ok,
                **_verdict_json(ctx, endpoint.select(verdicts), endpoint),
            }
            for endpoint in _STATUS_VERDICTS
        },
        "kill_wanted": verdicts.kill_wanted,
        "db_down": verdicts.db_down,
        "cluster": _cluster_json(ctx),
        "probes": {target: _probe_json(ctx, track) for target, track in state.probes.items()},
        "kube": _kube_json(ctx, state.kube, verdicts.membership),
        "log": _log_json(ctx),
        "events_total": dict(sorted(state.events_total.items())),
        "startup_fatal_total": dict(sorted(state.startup_fatal_total.items())),
        "db_unavailable_total": dict(sorted(state.db_unavailable_total.items())),
        "boots_total": state.boots_total,
        "recent_boots": [
            {"number": number, "cause": cause, "started_at": _wall(ctx, started_at)}
            for number, cause, started_at in state.recent_boots
        ],
        "recent_events": [
            {**dataclasses.asdict(event), "at": _wall(ctx, event.at)}
            for event in state.recent_events
        ],
        "settings": _settings_json(ctx),
    }
    return document


def _boot_json(ctx: Context) -> dict[str, Any]:
    boot = ctx.state.boot
    return {
        "number": boot.number,
        "cause": boot.cause,
        "started_at": _wall(ctx, boot.started_at),
        "complete_at": _wall(ctx, boot.complete_at),
        "fatal_at": _wall(ctx, boot.fatal_at),
        "fatal_reasons": list(boot.fatal_reasons),
        "fatal_code": boot.fatal_code,
        "runtime_fatal_at": _wall(ctx, boot.runtime_fatal_at),
        "runtime_fatal_reason": boot.runtime_fatal_reason,
        "shutdown_at": _wall(ctx, boot.shutdown_at),
        "last_progress_at": _wall(ctx, boot.last_progress_at),
        "embedded": boot.embedded,
    }


def _cluster_json(ctx: Context) -> dict[str, Any]:
    state = ctx.state
    view = state.view
    return {
        "view": None if view is None else _view_json(view),
        "members": [] if view is None else _members_json(view.members, state.kube),
        "view_since": _wall(ctx, state.view_since),
        "degraded_at": _wall(ctx, state.degraded_at),
        "degraded_reason": state.degraded_reason,
        "db_error_at": _wall(ctx, state.db_error_at),
    }


def _view_json(view: ClusterView) -> dict[str, Any]:
    """Member names only as the member-name parser reads them: never raw log text."""
    return {
        **dataclasses.asdict(view),
        "coordinator": shown_member(view.coordinator),
        "members": [shown_member(member) for member in view.members],
    }


def _members_json(members: tuple[str, ...], facts: KubeFacts | None) -> list[dict[str, Any]]:
    """Each view member with the pod it belongs to (None: unknown, or no Kubernetes side)."""
    pods = set() if facts is None else {facts.own_pod, *(peer.name for peer in facts.peers)}
    return [
        {"member": shown_member(member), "pod": member_to_pod(member, pods)} for member in members
    ]


def _probe_json(ctx: Context, track: ProbeTrack) -> dict[str, Any]:
    last = track.last
    return {
        "ok": None if last is None else last.ok,
        "error": "" if last is None else last.error,
        "status": None if last is None else last.status,
        "latency_seconds": None if last is None else round(last.latency_seconds, 6),
        "keycloak_status": "" if last is None else last.keycloak_status,
        "database_down": False if last is None else last.database_down,
        "checks": [] if last is None else [{"name": c.name, "up": c.up} for c in last.checks],
        "ok_since": _wall(ctx, track.ok_since),
        "failing_since": _wall(ctx, track.failing_since),
        "ok_in_boot": track.ok_in_boot,
    }


def _kube_json(
    ctx: Context, facts: KubeFacts | None, membership: MembershipAssessment | None
) -> dict[str, Any] | None:
    if facts is None:
        return None
    peers = [
        {**dataclasses.asdict(peer), "ready_at": _wall(ctx, peer.ready_at)} for peer in facts.peers
    ]
    membership_json = None
    if membership is not None:
        membership_json = {
            **dataclasses.asdict(membership),
            "since": _wall(ctx, membership.since),
        }
    return {
        "api_ok": facts.api_ok,
        "api_error": facts.api_error,
        "own_pod": facts.own_pod,
        "peers": peers,
        "kill_slot_held": facts.kill_slot_held,
        "budget_enabled": facts.budget_enabled,
        "observed_at": _wall(ctx, facts.observed_at),
        "membership": membership_json,
    }


def _log_json(ctx: Context) -> dict[str, Any]:
    source = ctx.source
    state, detail = ctx.log_source_state()
    return {
        "state": state,
        "state_detail": detail,
        "present": source is not None and source.present,
        "caught_up": source is not None and source.caught_up,
        "lines_total": ctx.pipeline.lines_total,
        "records_classified": ctx.pipeline.records_classified,
        "lines_truncated": 0 if source is None else source.lines_truncated,
        "records_truncated": ctx.pipeline.records_truncated,
        "last_error": "" if source is None else source.last_error,
        "last_line_at": _wall(ctx, ctx.state.last_line_at),
    }


def _settings_json(ctx: Context) -> dict[str, Any]:
    """An allow-list: a setting added later is not shown until it is known to be harmless."""
    settings = ctx.settings
    host, port = settings.listen
    return {
        "log_source": settings.log_source,
        "log_file": settings.log_file,
        "keycloak_url": redacted_url(settings.keycloak_url),
        "probe_targets": sorted(settings.probe_targets()),
        "probe_interval_seconds": settings.probe_interval_seconds,
        "probe_timeout_seconds": settings.probe_timeout_seconds,
        "listen": f"{host}:{port}",
        "worker_stall_timeout_seconds": settings.worker_stall_timeout_seconds,
        "policy": dataclasses.asdict(ctx.policy),
        "kubernetes": not settings.no_kubernetes,
        "peer_selector": settings.peer_selector,
        "kill_budget": settings.kill_budget,
        "kill_lease_duration_seconds": settings.kill_lease_duration_seconds,
        "readiness_gate_condition": settings.readiness_gate_condition,
        "emit_events": settings.emit_events,
    }
