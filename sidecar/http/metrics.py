"""Prometheus metrics: two instruments the probe worker updates, the rest rendered at scrape.

Everything except the probe instruments is computed by ``StateCollector`` when Prometheus
scrapes, from ONE ``ctx.verdicts()`` call plus the state, the pipeline's counters and the log
source's counters: the gauges can never disagree with ``/livez`` and ``/readyz``, and nothing
is counted twice.  All metrics live on the injected ``ctx.registry``, never on the global one.

Label values come from bounded sets only: verdict names, ``health.REASONS``, ``EventKind``,
``events.STARTUP_FATAL_REASONS``, ``events.DB_UNAVAILABLE_REASONS``, probe target names
(``started``, ``live``, ``ready``), probe error classes and Kubernetes (operation, code) pairs.
Never a log line, URL or pod name.

``_created`` series: ``CounterMetricFamily`` emits none unless given a timestamp.  The two
instruments would, and ``prometheus_client.disable_created_metrics()`` flips a process-wide
flag (a global that changes every other registry in the process), so instead they are
registered through ``_WithoutCreated``, which drops their ``_created`` samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sidecar import __version__
from sidecar.context import Context
from sidecar.core.events import (
    DB_UNAVAILABLE_REASONS,
    ERROR_CLASSES,
    STARTUP_FATAL_REASONS,
    EventKind,
    ProbeResult,
)
from sidecar.core.health import REASONS, Verdicts

PREFIX: Final = "keycloak_sidecar_"
#: 1 ms .. 10 s: a local health endpoint answers in milliseconds, the probe timeout is seconds
PROBE_BUCKETS_SECONDS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: ``ProbeResult.error`` classes; anything else is counted as "other"
PROBE_ERRORS: Final = ERROR_CLASSES
VERDICT_NAMES: Final = ("started", "live", "ready")


@dataclass(frozen=True, slots=True)
class Metrics:
    """The instruments workers update directly."""

    probe_duration_seconds: Histogram  # labels: target
    probe_failures_total: Counter  # labels: target, reason


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """One metric family the collector renders: name without prefix, type, help, labels."""

    name: str
    kind: str  # "gauge" or "counter"
    documentation: str
    labels: tuple[str, ...] = ()

    def empty(self) -> GaugeMetricFamily | CounterMetricFamily:
        family = GaugeMetricFamily if self.kind == "gauge" else CounterMetricFamily
        return family(PREFIX + self.name, self.documentation, labels=self.labels)


FAMILIES: Final = (
    FamilySpec("live", "gauge", "1 when the liveness verdict (/livez) passes"),
    FamilySpec("ready", "gauge", "1 when the readiness verdict (/readyz) passes"),
    FamilySpec("started", "gauge", "1 when Keycloak finished starting in the current boot"),
    FamilySpec(
        "failing",
        "gauge",
        "1 when a liveness or readiness check currently fails with this reason",
        ("reason",),
    ),
    FamilySpec(
        "verdict_change_timestamp_seconds",
        "gauge",
        "wall-clock time the verdict last changed between passing and failing",
        ("verdict",),
    ),
    FamilySpec("log_lines", "counter", "log lines read from Keycloak's log"),
    FamilySpec("log_lines_truncated", "counter", "log lines cut to the maximum line length"),
    FamilySpec(
        "log_records_truncated",
        "counter",
        "multi-line log records cut to the maximum number of continuation lines",
    ),
    FamilySpec("log_events", "counter", "classified log events by kind", ("event",)),
    FamilySpec(
        "startup_fatal",
        "counter",
        "fatal startup conditions seen in the log by reason",
        ("reason",),
    ),
    FamilySpec(
        "db_unavailable",
        "counter",
        "records saying the database cannot be used, by reason (never a restart)",
        ("reason",),
    ),
    FamilySpec("boots", "counter", "Keycloak boots seen (log, container or HTTP restarts)"),
    FamilySpec(
        "boot_start_timestamp_seconds", "gauge", "wall-clock time the current Keycloak boot began"
    ),
    FamilySpec(
        "probe_up", "gauge", "1 when the last HTTP probe of this target passed", ("target",)
    ),
    FamilySpec("cluster_members", "gauge", "members in the current cluster view (0: none seen)"),
    FamilySpec("cluster_view_id", "gauge", "id of the current cluster view (-1: none seen)"),
    FamilySpec(
        "cluster_expected_members",
        "gauge",
        "cluster size expected from the ready peer pods, this replica included",
    ),
    FamilySpec("kill_budget_held", "gauge", "1 while this replica holds a kill-budget slot"),
    FamilySpec(
        "kube_api_errors",
        "counter",
        "failed Kubernetes API calls by operation and code",
        ("operation", "code"),
    ),
    FamilySpec("log_source_up", "gauge", "1 when the Keycloak log source is readable"),
    FamilySpec(
        "last_log_line_timestamp_seconds",
        "gauge",
        "wall-clock time the last log line was read",
    ),
    FamilySpec("build_info", "gauge", "the sidecar's version (value always 1)", ("version",)),
)
_SPECS: Final = {spec.name: spec for spec in FAMILIES}


def build_metrics(registry: CollectorRegistry) -> Metrics:
    """Create the probe instruments and register them on ``registry`` (no ``_created``)."""
    duration = Histogram(
        PREFIX + "probe_duration_seconds",
        "duration of one HTTP probe of Keycloak",
        ("target",),
        buckets=PROBE_BUCKETS_SECONDS,
        registry=None,
    )
    failures = Counter(
        PREFIX + "probe_failures_total",
        "failed HTTP probes of Keycloak by error class",
        ("target", "reason"),
        registry=None,
    )
    registry.register(_WithoutCreated(duration))
    registry.register(_WithoutCreated(failures))
    return Metrics(probe_duration_seconds=duration, probe_failures_total=failures)


def observe_probe(metrics: Metrics, result: ProbeResult) -> None:
    """Record one probe: its duration always, a failure by error class when it failed."""
    metrics.probe_duration_seconds.labels(result.target).observe(result.latency_seconds)
    if not result.ok:
        reason = result.error if result.error in PROBE_ERRORS else "other"
        metrics.probe_failures_total.labels(result.target, reason).inc()


def register_all(ctx: Context) -> Metrics:
    """Everything on ``ctx.registry``: instruments, state collector, process and platform."""
    metrics = build_metrics(ctx.registry)
    for target in ctx.state.probes:
        metrics.probe_duration_seconds.labels(target)
        for reason in PROBE_ERRORS:
            metrics.probe_failures_total.labels(target, reason)
    ctx.registry.register(StateCollector(ctx))
    ProcessCollector(registry=ctx.registry)
    PlatformCollector(registry=ctx.registry)
    GCCollector(registry=ctx.registry)
    return metrics


class _WithoutCreated:
    """Wraps an instrument and drops its ``_created`` samples."""

    def __init__(self, inner: Counter | Histogram) -> None:
        self._inner = inner

    def describe(self) -> Iterable[Metric]:
        return self._inner.describe()

    def collect(self) -> Iterable[Metric]:
        for metric in self._inner.collect():
            stripped = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            stripped.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield stripped


class StateCollector:
    """Renders the verdicts and the state at scrape time (one ``ctx.verdicts()`` call)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def describe(self) -> Iterable[Metric]:
        """Every family this collector can emit, so ``name[]`` filters find them all."""
        return [spec.empty() for spec in FAMILIES]

    def collect(self) -> Iterable[Metric]:
        verdicts = self._ctx.verdicts()
        yield from self._verdict_families(verdicts)
        yield from self._log_families()
        yield from self._boot_families()
        yield from self._probe_families()
        yield from self._cluster_families()
        yield from self._kube_families(verdicts)
        yield _gauge("build_info", 1.0, (__version__,))

    def _verdict_families(self, verdicts: Verdicts) -> Iterator[Metric]:
        yield _gauge("live", float(verdicts.live.ok))
        yield _gauge("ready", float(verdicts.ready.ok))
        yield _gauge("started", float(verdicts.started.ok))
        failing_reasons = set(verdicts.live.reasons) | set(verdicts.ready.reasons)
        failing = _SPECS["failing"].empty()
        for reason in REASONS:
            failing.add_metric([reason], float(reason in failing_reasons))
        yield failing
        changes = _SPECS["verdict_change_timestamp_seconds"].empty()
        for name in VERDICT_NAMES:
            changed_at = self._ctx.to_wall(self._ctx.tracker.since(name))
            if changed_at is not None:
                changes.add_metric([name], changed_at)
        yield changes

    def _log_families(self) -> Iterator[Metric]:
        ctx = self._ctx
        source = ctx.source
        yield _counter("log_lines", ctx.pipeline.lines_total)
        yield _counter("log_lines_truncated", 0 if source is None else source.lines_truncated)
        yield _counter("log_records_truncated", ctx.pipeline.records_truncated)
        events = _SPECS["log_events"].empty()
        for kind in EventKind:
            events.add_metric([kind.value], ctx.state.events_total.get(kind.value, 0))
        yield events
        yield _gauge("log_source_up", float(source is not None and source.present))
        last_line_at = ctx.to_wall(ctx.state.last_line_at)
        if last_line_at is not None:
            yield _gauge("last_log_line_timestamp_seconds", last_line_at)

    def _boot_families(self) -> Iterator[Metric]:
        state = self._ctx.state
        fatal = _SPECS["startup_fatal"].empty()
        for reason in sorted(STARTUP_FATAL_REASONS):
            fatal.add_metric([reason], state.startup_fatal_total.get(reason, 0))
        yield fatal
        database = _SPECS["db_unavailable"].empty()
        for reason in sorted(DB_UNAVAILABLE_REASONS):
            database.add_metric([reason], state.db_unavailable_total.get(reason, 0))
        yield database
        yield _counter("boots", state.boots_total)
        started_at = self._ctx.to_wall(state.boot.started_at)
        assert started_at is not None
        yield _gauge("boot_start_timestamp_seconds", started_at)

    def _probe_families(self) -> Iterator[Metric]:
        up = _SPECS["probe_up"].empty()
        for target, track in sorted(self._ctx.state.probes.items()):
            if track.last is not None:
                up.add_metric([target], float(track.last.ok))
        yield up

    def _cluster_families(self) -> Iterator[Metric]:
        view = self._ctx.state.view
        yield _gauge("cluster_members", 0.0 if view is None else float(view.size))
        yield _gauge("cluster_view_id", -1.0 if view is None else float(view.view_id))

    def _kube_families(self, verdicts: Verdicts) -> Iterator[Metric]:
        ctx = self._ctx
        kube = ctx.state.kube
        if kube is not None and verdicts.membership is not None:
            yield _gauge("cluster_expected_members", float(verdicts.membership.expected_members))
        yield _gauge("kill_budget_held", float(kube is not None and kube.kill_slot_held))
        errors = _SPECS["kube_api_errors"].empty()
        for (operation, code), count in sorted(ctx.kube_api_errors.items()):
            errors.add_metric([operation, code], count)
        yield errors


def _gauge(name: str, value: float, labels: tuple[str, ...] = ()) -> Metric:
    family = _SPECS[name].empty()
    family.add_metric(list(labels), value)
    return family


def _counter(name: str, value: float) -> Metric:
    family = _SPECS[name].empty()
    family.add_metric([], value)
    return family
