"""Settings: one table, every entry a CLI flag and a ``SIDECAR_*`` environment variable.

``load_settings(argv, environ)`` validates everything and raises one ``ConfigError``
that lists every problem at once.  Pure: no file or network access here (files named
by settings are checked by ``check_files``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sidecar.core.health import Policy
from sidecar.core.redact import redacted_url


class ConfigError(Exception):
    """One or more settings are invalid; ``problems`` lists each one.

    ``values`` holds the settings that did parse, so that files they name can still be
    checked and every problem reported at once.
    """

    def __init__(self, problems: Sequence[str], values: Mapping[str, Any] | None = None) -> None:
        self.problems = tuple(problems)
        self.values: Mapping[str, Any] = values or {}
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_URL = re.compile(r"^https?://(?:[^@/\s]*@)?(\[[^\]/]+\]|[^:/\s]+)(?::(\d+))?(?:/|$)")
#: hosts by which a URL can reach the sidecar itself (0.0.0.0 connects to the local host)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})  # noqa: S104
_RESERVED_PORTS = {
    8080: "Keycloak HTTP",
    8443: "Keycloak HTTPS",
    9000: "Keycloak management",
    7800: "JGroups",
    9990: "WildFly management",
    57800: "JGroups FD_SOCK2",
}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"250ms"``, ``"2m"``, ``"1m30s"``, ``"1h"`` -> seconds.

    Units combine largest first as in Kubernetes and Go (``1h30m``, ``1m30s``); a bare
    number is seconds.
    """
    compact = "".join(text.split())
    if _NUMBER.fullmatch(compact):
        return float(compact)
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (use e.g. 250ms, 30s, 1m30s, 1h)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"not HOST:PORT: {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    if port in _RESERVED_PORTS:
        raise ValueError(f"port {port} collides with {_RESERVED_PORTS[port]} in the Keycloak pod")
    return (host.strip("[]") or "0.0.0.0", port)  # noqa: S104 - probes come from the kubelet


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


def _url_or_empty(text: str) -> str:
    text = text.strip().rstrip("/")
    if not text:
        return text
    match = _URL.match(text)
    if match is None:
        raise ValueError(f"not an http(s) URL: {redacted_url(text)!r}")
    if match.group(2) is not None and not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"port out of range: {int(match.group(2))}")
    return text


def url_host_port(url: str) -> tuple[str, int]:
    """Host and port of a URL accepted by ``_url_or_empty`` (default 80 or 443)."""
    match = _URL.match(url)
    if match is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if url.startswith("https:") else 80
    return match.group(1).strip("[]"), int(match.group(2) or default)


def _path(text: str) -> str:
    if text and not text.startswith("/"):
        raise ValueError(f"HTTP path must start with '/': {text!r}")
    return text


def _str(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its field, flag, parser, default and help text."""

    name: str
    parse: Callable[[str], Any]
    default: str
    help: str
    metavar: str = ""
    flag: str = ""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.removesuffix("_seconds").replace("_", "-")

    @property
    def env(self) -> str:
        return "SIDECAR_" + self.cli_flag.removeprefix("--").replace("-", "_").upper()


def _duration(text: str) -> float:
    return _positive(parse_duration(text))


SPECS: tuple[Spec, ...] = (
    # --- log input
    Spec(
        "log_source",
        _choice("file", "kubernetes"),
        "file",
        "where Keycloak's log comes from: a file (shared volume, or standard input with "
        "--log-file=-) or the Kubernetes API",
        "{file,kubernetes}",
    ),
    Spec(
        "log_file",
        _str,
        "/var/log/keycloak/keycloak.log",
        "Keycloak log file to follow (like tail -F); '-' reads standard input",
        "PATH",
    ),
    Spec(
        "log_max_line_bytes",
        _positive_int,
        "65536",
        "longer physical lines are cut to this size and counted",
        "BYTES",
    ),
    Spec(
        "log_max_record_lines",
        _positive_int,
        "512",
        "continuation lines kept per multi-line record (the rest are counted)",
        "LINES",
    ),
    Spec(
        "log_poll_interval_seconds",
        _duration,
        "1s",
        "fallback poll of the log file (inotify wakes the sidecar at once; each poll is a wake-up)",
        "DURATION",
    ),
    Spec(
        "rules_file",
        _str,
        "",
        "extra classification rules (TOML or JSON), validated at start-up",
        "PATH",
    ),
    # --- HTTP probing of Keycloak
    Spec(
        "keycloak_url",
        _url_or_empty,
        "http://127.0.0.1:9000",
        "base URL of Keycloak's health endpoints (port 9000 since 25, 8080 for 17-24, "
        "the WildFly era uses /auth on 8080); empty disables HTTP probing",
        "URL",
    ),
    Spec(
        "probe_started_path",
        _path,
        "/health/started",
        "started target below --keycloak-url; empty disables it",
        "PATH",
    ),
    Spec(
        "probe_live_path",
        _path,
        "/health/live",
        "liveness target below --keycloak-url; empty disables it",
        "PATH",
    ),
    Spec(
        "probe_ready_path",
        _path,
        "/health/ready",
        "readiness target below --keycloak-url; empty disables it",
        "PATH",
    ),
    Spec("probe_interval_seconds", _duration, "5s", "how often Keycloak is probed", "DURATION"),
    Spec("probe_timeout_seconds", _duration, "2s", "timeout of one probe request", "DURATION"),
    Spec("probe_ca_file", _str, "", "CA bundle to verify Keycloak's TLS certificate", "PATH"),
    Spec(
        "probe_insecure_skip_verify",
        parse_bool,
        "false",
        "do not verify Keycloak's TLS certificate",
        "BOOL",
    ),
    # --- health policy
    Spec(
        "startup_deadline_seconds",
        _duration,
        "20m",
        "a boot with no 'started' by then AND no progress for --progress-timeout is hung "
        "(longer than Keycloak's 900 s database-lock wait)",
        "DURATION",
    ),
    Spec(
        "progress_timeout_seconds",
        _duration,
        "5m",
        "silence (no startup progress line) that, past the deadline, counts as hung",
        "DURATION",
    ),
    Spec(
        "liveness_grace_seconds",
        _duration,
        "60s",
        "after startup, the HTTP liveness target must fail this long before live turns false",
        "DURATION",
    ),
    Spec(
        "degraded_hold_seconds",
        _duration,
        "60s",
        "readiness stays false this long after the last cluster-degraded line",
        "DURATION",
    ),
    Spec(
        "db_down_hold_seconds",
        _duration,
        "60s",
        "the database counts as down this long after the last database error line",
        "DURATION",
    ),
    # --- serving
    Spec(
        "listen",
        parse_listen,
        "0.0.0.0:9095",
        "address of the sidecar's endpoints (must not collide with Keycloak's ports)",
        "HOST:PORT",
    ),
    Spec(
        "http_idle_timeout_seconds",
        _duration,
        "5s",
        "a connection to the endpoints with no request in progress (idle keep-alive, headers "
        "never finished) is closed after this",
        "DURATION",
    ),
    Spec(
        "http_max_connections",
        _positive_int,
        "512",
        "open connections to the endpoints at most; a new one closes the oldest idle one, so "
        "the kubelet's probes always get in",
        "COUNT",
    ),
    Spec(
        "http_cache_seconds",
        _duration,
        "1s",
        "/metrics and /status bodies are reused this long unless the state or the log input "
        "changed (a scrape storm cannot starve the probes)",
        "DURATION",
    ),
    Spec(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "info",
        "the sidecar's own log level (JSON lines on stderr)",
        "{debug,info,warning,error}",
    ),
    Spec(
        "worker_stall_timeout_seconds",
        _duration,
        "45s",
        "a worker without progress for this long fails /healthz (the sidecar's own liveness)",
        "DURATION",
    ),
    # --- Kubernetes
    Spec(
        "no_kubernetes",
        parse_bool,
        "false",
        "turn the whole Kubernetes side off",
        "BOOL",
        flag="--no-kubernetes",
    ),
    Spec(
        "kubeconfig",
        _str,
        "",
        "kubeconfig file (outside a pod); default: in-cluster or $KUBECONFIG",
        "PATH",
    ),
    Spec(
        "keycloak_container",
        _str,
        "keycloak",
        "name of the Keycloak container in the own pod",
        "NAME",
    ),
    Spec(
        "peer_selector",
        _str,
        "",
        "label selector of the Keycloak peers; default: from the own pod's app labels",
        "SELECTOR",
    ),
    Spec(
        "membership_grace_seconds",
        _duration,
        "2m",
        "continuous membership-loss evidence needed before live turns false",
        "DURATION",
    ),
    Spec(
        "kill_budget",
        _non_negative_int,
        "1",
        "replicas that may be failing liveness at once (0 disables the budget)",
        "N",
    ),
    Spec(
        "kill_lease_name",
        _str,
        "keycloak-sidecar-kill-budget",
        "name prefix of the coordination Lease(s) that hold the kill budget",
        "NAME",
    ),
    Spec(
        "kill_lease_duration_seconds",
        _duration,
        "5m",
        "a kill slot whose holder stops renewing expires after this",
        "DURATION",
    ),
    Spec(
        "readiness_gate_condition",
        _str,
        "",
        "pod condition type to maintain for a readiness gate (e.g. keycloak.org/cluster-member)",
        "TYPE",
    ),
    Spec("emit_events", parse_bool, "true", "create Kubernetes Events on verdict changes", "BOOL"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings.  Field names carry units; see ``SPECS`` for help and defaults."""

    log_source: str
    log_file: str
    log_max_line_bytes: int
    log_max_record_lines: int
    log_poll_interval_seconds: float
    rules_file: str
    keycloak_url: str
    probe_started_path: str
    probe_live_path: str
    probe_ready_path: str
    probe_interval_seconds: float
    probe_timeout_seconds: float
    probe_ca_file: str
    probe_insecure_skip_verify: bool
    startup_deadline_seconds: float
    progress_timeout_seconds: float
    liveness_grace_seconds: float
    degraded_hold_seconds: float
    db_down_hold_seconds: float
    listen: tuple[str, int]
    http_idle_timeout_seconds: float
    http_max_connections: int
    http_cache_seconds: float
    log_level: str
    worker_stall_timeout_seconds: float
    no_kubernetes: bool
    kubeconfig: str
    keycloak_container: str
    peer_selector: str
    membership_grace_seconds: float
    kill_budget: int
    kill_lease_name: str
    kill_lease_duration_seconds: float
    readiness_gate_condition: str
    emit_events: bool

    def probe_targets(self) -> dict[str, str]:
        """Enabled HTTP targets by name (``started``, ``live``, ``ready``) -> full URL."""
        if not self.keycloak_url:
            return {}
        paths = {
            "started": self.probe_started_path,
            "live": self.probe_live_path,
            "ready": self.probe_ready_path,
        }
        return {name: self.keycloak_url + path for name, path in paths.items() if path}


assert [s.name for s in SPECS] == [f.name for f in fields(Settings)], "SPECS and Settings differ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every setting as a flag; values stay strings (parsed in ``load_settings``)."""
    for spec in SPECS:
        if spec.parse is parse_bool:
            parser.add_argument(
                spec.cli_flag,
                dest=spec.name,
                nargs="?",
                const="true",
                default=None,
                metavar=spec.metavar or "BOOL",
                help=f"{spec.help} (env {spec.env}, default {spec.default})",
            )
        else:
            parser.add_argument(
                spec.cli_flag,
                dest=spec.name,
                default=None,
                metavar=spec.metavar or None,
                help=f"{spec.help} (env {spec.env}, default {spec.default!r})",
            )


def load_settings(args: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Flags win over ``SIDECAR_*`` variables, which win over defaults.  All errors at once."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    known_env = {spec.env for spec in SPECS}
    for key in sorted(environ):
        if key.startswith("SIDECAR_") and key not in known_env:
            problems.append(f"{key}: unknown setting (known: see --help)")
    for spec in SPECS:
        raw = args.get(spec.name)
        origin = spec.cli_flag
        if raw is None:
            raw = environ.get(spec.env)
            origin = spec.env
        if raw is None:
            raw, origin = spec.default, f"default of {spec.cli_flag}"
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as error:
            problems.append(f"{origin}={raw!r}: {error}")
    problems.extend(_cross_checks(values))
    if problems:
        raise ConfigError(problems, values)
    return Settings(**values)


_CROSS_CHECKS: tuple[tuple[tuple[str, ...], Callable[..., bool], str], ...] = (
    (
        ("probe_timeout_seconds", "probe_interval_seconds"),
        lambda timeout, interval: timeout > interval,
        "--probe-timeout must not exceed --probe-interval",
    ),
    (
        (
            "worker_stall_timeout_seconds",
            "probe_interval_seconds",
            "probe_timeout_seconds",
            "log_poll_interval_seconds",
        ),
        lambda stall, interval, timeout, poll: stall <= max(interval + timeout, poll),
        "--worker-stall-timeout must exceed a worker's longest healthy round"
        " (--probe-interval + --probe-timeout, --log-poll-interval)",
    ),
    (
        ("probe_insecure_skip_verify", "probe_ca_file"),
        lambda skip, ca_file: bool(skip and ca_file),
        "--probe-ca-file and --probe-insecure-skip-verify exclude each other",
    ),
    (
        ("log_source", "no_kubernetes"),
        lambda source, off: source == "kubernetes" and off,
        "--log-source kubernetes needs the Kubernetes side (--no-kubernetes set)",
    ),
    (
        ("log_source", "log_file"),
        lambda source, path: source == "file" and not path,
        "--log-file is empty",
    ),
    (
        ("startup_deadline_seconds", "progress_timeout_seconds"),
        lambda deadline, progress: deadline < progress,
        "--startup-deadline must not be shorter than --progress-timeout",
    ),
)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    """Checks between settings; one whose inputs did not parse is skipped (already reported)."""
    problems = [
        message
        for names, fails, message in _CROSS_CHECKS
        if all(name in values for name in names) and fails(*(values[name] for name in names))
    ]
    if "keycloak_url" in values and "listen" in values:
        problems.extend(_probes_itself(values["keycloak_url"], values["listen"]))
    return problems


def _probes_itself(keycloak_url: str, listen: tuple[str, int]) -> list[str]:
    if not keycloak_url:
        return []
    host, port = url_host_port(keycloak_url)
    listen_host, listen_port = listen
    same_host = host in _LOOPBACK_HOSTS or host == listen_host
    if port != listen_port or not same_host:
        return []
    return [
        f"--keycloak-url={keycloak_url!r} is the sidecar's own --listen address "
        f"(port {listen_port}): it would probe itself, not Keycloak"
    ]


def check_files(values: Settings | Mapping[str, Any]) -> list[str]:
    """Problems with files the settings name: readable CA file, rules file and kubeconfig;
    a log file that is a directory.  Takes ``Settings`` or the values that parsed."""
    if isinstance(values, Settings):
        values = {f.name: getattr(values, f.name) for f in fields(Settings)}
    problems = []
    for label, name in (
        ("--probe-ca-file", "probe_ca_file"),
        ("--rules-file", "rules_file"),
        ("--kubeconfig", "kubeconfig"),
    ):
        path = values.get(name, "")
        if path and not os.access(path, os.R_OK):
            problems.append(f"{label}={path!r}: file is missing or not readable")
    log_file = values.get("log_file", "")
    if values.get("log_source") == "file" and log_file != "-" and os.path.isdir(log_file):
        problems.append(f"--log-file={log_file!r}: is a directory, not a log file")
    return problems


def policy_from_settings(settings: Settings) -> Policy:
    """The core's thresholds, taken from the settings (the core never imports them)."""
    return Policy(
        startup_deadline_seconds=settings.startup_deadline_seconds,
        progress_timeout_seconds=settings.progress_timeout_seconds,
        liveness_grace_seconds=settings.liveness_grace_seconds,
        degraded_hold_seconds=settings.degraded_hold_seconds,
        db_down_hold_seconds=settings.db_down_hold_seconds,
        membership_grace_seconds=settings.membership_grace_seconds,
        probe_evidence_max_age_seconds=3
        * (settings.probe_interval_seconds + settings.probe_timeout_seconds),
    )
