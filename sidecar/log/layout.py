"""Keycloak log layouts: strip the wrappers around a line and parse its header.

Pure.  Handles the Quarkus pattern ``yyyy-MM-dd HH:mm:ss,SSS LEVEL [category] (thread) msg``,
WildFly console (time only) and server.log, Quarkus JSON (default and ECS field names),
``kubectl logs --timestamps`` prefixes, docker-compose / journal / Rancher / CloudWatch /
OpenShift / stern prefixes, colour-code remnants, an empty thread ``()``, abbreviated
categories and bare ``ERROR: ...`` lines printed before logging is configured.
"""

from __future__ import annotations

import calendar
import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

# --- wrappers put in front of every physical line by tools (kubectl, compose, journald, ...)
_WRAPPERS = (
    # kubectl logs --timestamps, aggregator exports: RFC3339 then space or tab
    r"(?P<rfc>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)[ \t]+",
    # syslog JSON header: "<rfc3339> host keycloak pid logger - "
    r"\d{4}-\d\d-\d\dT\S+ \S+ \S+ \d+ \S+ - (?=\{)",
    # Docker Desktop / aggregator "<date> <time>" + space or tab (no comma millis: that is KC)
    r"(?P<dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?:\t|[ ](?=\d{4}-\d\d-\d\d |\D))",
    # log viewer "<date time> | stdout | "
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| (?:stdout|stderr) \| ",
    # Rancher "Fri, Apr 15 2022 2:20:13 pm | "
    r"[A-Z][a-z]{2}, [A-Z][a-z]{2} \d{1,2} \d{4} \d{1,2}:\d\d:\d\d [ap]m \| ?",
    # CloudWatch console copy "May 06, 2024 at 14:59 (UTC+5:30)<TAB>"
    r"[A-Z][a-z]{2} \d\d, \d{4} at \d\d:\d\d \(UTC[^)]*\)\t",
    # systemd journal "Jun 25 20:41:36 host kc.sh[386275]: "
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [\w.-]+\[\d+\]: ",
    # docker-compose v1/v2 "name_1  | " and OpenShift console "  | "
    r"\s*+[\w.-]*+\s*+\| ?",
    # stern / kubetail "<pod> <container> " (only when a layout follows)
    r"[\w.-]+ [\w.-]+ (?=(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d,\d{3} )",
)
_WRAPPER_RE = re.compile("|".join(f"(?:{w})" for w in _WRAPPERS))

_LEVELS = "TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|SEVERE"
# colour remnants: ESC[31m, "31m", "←[0m"
_COLOUR = r"(?:(?:\x1b|\u2190)?\[[0-9;]*m|(?<![\w:])\d{1,2}m(?=\d\d:))*"
_PLAIN_RE = re.compile(
    _COLOUR + r"(?:(?P<date>\d{4}-\d\d-\d\d)[ T])?(?P<time>\d\d:\d\d:\d\d)(?:[,.](?P<ms>\d{1,9}))?"
    r"(?:[+-]\d\d(?::?\d\d)?)?\s+"
    rf"(?P<level>{_LEVELS})\s+"
    r"(?:\[(?P<category>[^\]]*)\]\s+)?"
    r"(?:\((?P<thread>[^)]*+)\)\s?)?"
    r"(?:\[[^\]]*\]\s?)?"  # MDC field of vendor patterns, e.g. oVirt "[]"
)
# header whose timestamp was trimmed: "INFO  [org.jboss.as] (Controller Boot Thread) ..."
_NO_TIME_RE = re.compile(
    rf"(?P<level>{_LEVELS})\s+\[(?P<category>[^\]]*)\]\s+"
    r"(?:\((?P<thread>[^)]*+)\)\s?)?"
)
# header with only "[category] (thread)" left: "[io.quarkus] (main) Keycloak ..."
_CATEGORY_ONLY_RE = re.compile(r"\[(?P<category>[\w.$]+)\] \((?P<thread>[^)]*)\)\s?")
# lines that start a record although they have no log layout
_BARE_STARTERS = re.compile(
    r"(?:ERROR: |WARN: |Updating the configuration|Server configuration updated|"
    r"Changes detected in configuration|The DelayedHandler was closed|Fatal glibc error|"
    r"# A fatal error has been detected|\*\*\* JBossAS process|JAVA_OPTS already set|"
    r"Keycloak - Open Source Identity|Exception in thread \"|Picked up JAVA_TOOL_OPTIONS|"
    r"\[KEYCLOAK DOCKER IMAGE\]|Added '|=+\s*$|\s*JBoss Bootstrap Environment|"
    r"Find more information at|Error: Could not create the Java|"
    r"Error occurred during initialization of VM|Keycloak \S+ on JVM|"
    r"(?:ISPN|JGRP|WFLY[A-Z]*|KC-SERVICES|MSC|JBAS|ARJUNA|IJ)\d{4,6}:|"
    r"\[0\.\d+s\]\[warning\])"
)
_CONTINUATION_STARTS = ("at ", "Caused by:", "...", "Suppressed:", "Error details:")
# Kibana CSV export: "Oct 9, 2025 @ 17:06:39.736",INFO,"<message>","<host>","<logger>"
_KIBANA_RE = re.compile(
    r'"(?P<ts>[A-Z][a-z]{2} \d{1,2}, \d{4} @ [\d:.]+)",(?P<level>[A-Z]+),'
    r'"(?P<message>(?:[^"]|"")*)"(?:,"[^"]*")?(?:,"(?P<category>[^"]*)")?'
)


@dataclass(frozen=True, slots=True)
class Header:
    """What the first line of a record says about itself."""

    level: str  # "" when the line has no level (bare stdout text)
    category: str
    thread: str
    message: str
    timestamp: float | None  # epoch seconds (local time read as UTC), None when absent
    time_only: bool  # WildFly console: a time of day without a date
    layout: str  # "plain", "json", "bare"
    json_fields: dict[str, object] | None = None


def strip_wrappers(line: str) -> tuple[str, float | None]:
    """Remove tool prefixes; return the rest and the wrapper's own timestamp if any."""
    wrapper_ts: float | None = None
    for _ in range(3):
        match = _WRAPPER_RE.match(line)
        if match is None or match.end() == 0:
            break
        if wrapper_ts is None:
            wrapper_ts = _iso_to_epoch(match.group("rfc") or match.group("dd") or "")
        line = line[match.end() :]
    return line, wrapper_ts


def is_header(line: str) -> bool:
    """True when the line opens a new record (after its wrappers are removed).

    A line that a tool stamped with its own timestamp (kubectl --timestamps, log exports)
    opens a record unless it looks like a Java continuation (indented, ``at``, ``Caused
    by:``, ...): exports of message-only lines must not collapse into one record.
    """
    body, wrapper_ts = strip_wrappers(line)
    if not body or body[0] in " \t":
        return False
    if wrapper_ts is not None:
        return not body.startswith(_CONTINUATION_STARTS)
    return bool(
        body.startswith('{"')
        or _PLAIN_RE.match(body)
        or _NO_TIME_RE.match(body)
        or _BARE_STARTERS.match(body)
        or _CATEGORY_ONLY_RE.match(body)
        or (body[0] == '"' and _KIBANA_RE.match(body))
    )


def parse_header(line: str) -> Header:
    """Parse the first line of a record.  Never raises."""
    body: str = line
    wrapper_ts: float | None = None
    if not line.startswith("{"):  # JSON: no wrapper and no plain layout starts with a brace
        match = _PLAIN_RE.match(line)
        if match is not None and match.group("date") is not None:
            return _plain_header(match, line, None)
        body, wrapper_ts = strip_wrappers(line)
    if body.startswith("{"):
        parsed = _parse_json(body)
        if parsed is not None:
            return parsed
    kibana = _KIBANA_RE.match(body) if body.startswith('"') else None
    if kibana is not None:
        return Header(
            _norm_level(kibana.group("level")),
            kibana.group("category") or "",
            "",
            kibana.group("message").replace('""', '"'),
            _kibana_time(kibana["ts"]),
            False,
            "plain",
        )
    match = _PLAIN_RE.match(body)
    if match is not None:
        return _plain_header(match, body, wrapper_ts)
    for regex in (_NO_TIME_RE, _CATEGORY_ONLY_RE):
        match = regex.match(body)
        if match is not None:
            groups = match.groupdict()
            return Header(
                _norm_level(groups.get("level") or ""),
                groups["category"] or "",
                groups.get("thread") or "",
                body[match.end() :],
                wrapper_ts,
                False,
                "plain",
            )
    level = "ERROR" if body.startswith("ERROR:") else ""
    return Header(level, "", "", body, wrapper_ts, False, "bare")


def _plain_header(match: re.Match[str], body: str, wrapper_ts: float | None) -> Header:
    ts = _plain_timestamp(match.group("date"), match.group("time"), match.group("ms"))
    time_only = match.group("date") is None
    if wrapper_ts is not None and (ts is None or time_only):
        ts, time_only = wrapper_ts, False
    return Header(
        level=_norm_level(match.group("level")),
        category=match.group("category") or "",
        thread=match.group("thread") or "",
        message=body[match.end() :],
        timestamp=ts,
        time_only=time_only,
        layout="plain",
    )


def continuation_text(line: str) -> str:
    """A continuation line without the wrapper every physical line may carry."""
    body, _ = strip_wrappers(line)
    return body


def _kibana_time(text: str) -> float | None:
    try:
        moment = datetime.strptime(text, "%b %d, %Y @ %H:%M:%S.%f")
    except ValueError:
        return None
    return calendar.timegm(moment.timetuple()) + moment.microsecond / 1e6


def _norm_level(level: str) -> str:
    return {"WARNING": "WARN", "SEVERE": "ERROR"}.get(level, level)


def _plain_timestamp(date: str | None, time_text: str, ms: str | None) -> float | None:
    try:
        hour, minute, second = (int(part) for part in time_text.split(":"))
        fraction = float("0." + ms) if ms else 0.0
        if date is None:
            return hour * 3600 + minute * 60 + second + fraction
        return _day_start(date) + hour * 3600 + minute * 60 + second + fraction
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _day_start(date: str) -> float:
    year, month, day = (int(part) for part in date.split("-"))
    return float(calendar.timegm((year, month, day, 0, 0, 0)))


_ISO_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)?"
)


def _iso_to_epoch(text: str) -> float | None:
    """RFC 3339 / ISO 8601 date-time as epoch seconds (no zone: UTC).  ``fromisoformat`` (C,
    ~1 us) reads nearly every real stamp; the regex takes what it refuses (trailing text)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _iso_to_epoch_by_regex(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso_to_epoch_by_regex(text: str) -> float | None:
    match = _ISO_RE.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        epoch = float(calendar.timegm((year, month, day, hour, minute, second)))
    except ValueError:
        return None
    if match.group(7):
        epoch += float("0." + match.group(7))
    zone = match.group(8)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "+" else 1
        digits = zone[1:].replace(":", "")
        epoch += sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    return epoch


def _parse_json(body: str) -> Header | None:
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    message = str(fields.get("message", ""))
    exception = fields.get("exception")
    if isinstance(exception, dict):
        message += f"\n{exception.get('exceptionType', '')}: {exception.get('message', '')}"
    raw_ts = fields.get("timestamp", fields.get("@timestamp", ""))
    return Header(
        level=_norm_level(str(fields.get("level", fields.get("log.level", "")))),
        category=str(fields.get("loggerName", fields.get("log.logger", ""))),
        thread=str(fields.get("threadName", fields.get("process.thread.name", ""))),
        message=message,
        timestamp=_iso_to_epoch(str(raw_ts)) if raw_ts else None,
        time_only=False,
        layout="json",
        json_fields=fields,
    )
