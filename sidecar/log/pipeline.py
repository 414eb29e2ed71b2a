"""Byte chunks of complete lines -> records -> events -> state.

The hot path stays at C speed: lines are counted with ``bytes.count``, candidate lines are
found with a few substring scans over the whole chunk (the pre-filter, ``scan.py``), and
only candidate lines are framed into records (header + continuation lines), decoded,
parsed and classified.  While a boot is in progress every rule's substring is a candidate;
after startup only a handful of anchors that cover the runtime rules are scanned for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Protocol

from sidecar.core.events import LogEvent
from sidecar.log import layout
from sidecar.log.classify import Record, RuleIndex, classify, make_record
from sidecar.log.rules import (
    RUNTIME_ANCHORS_CSV,
    RUNTIME_ANCHORS_JSON,
    RUNTIME_ANCHORS_PLAIN,
    RUNTIME_ISPN_CODES,
    Rule,
)
from sidecar.log.scan import Scanner, best_scanner

_DAY_SECONDS = 86400.0
_HEADER_PROBE_BYTES = 4096
_HALF_DAY_SECONDS = 43200.0


class EventSink(Protocol):
    """What the pipeline feeds (``MonitorState`` in the daemon)."""

    def apply(self, event: LogEvent, now: float) -> list[LogEvent]:
        """Record an event; return the events actually recorded (derived ones included)."""
        ...

    def wants_boot_scan(self) -> bool:
        """True while a boot is in progress: scan for every rule, not only runtime anchors."""
        ...

    def log_time_started(self, stamp: float) -> None:
        """Log time mode: the first timestamp the log carries (where its history begins)."""
        ...


class Pipeline:
    """Frames, classifies and applies.  ``now=None`` means: take time from the log."""

    def __init__(
        self,
        rules: Sequence[Rule],
        sink: EventSink,
        *,
        max_record_lines: int = 512,
        scanner: Scanner | None = None,
    ) -> None:
        self._rules = RuleIndex(rules)
        self._runtime_rules = RuleIndex(runtime_rules(rules))
        self._sink = sink
        self._scan = scanner or best_scanner()
        self._max_record_lines = max_record_lines
        rule_needles = [r.contains.encode() for r in rules if r.contains]
        self._boot_needles = _minimal_needles(
            [*rule_needles, *RUNTIME_ANCHORS_PLAIN, *RUNTIME_ANCHORS_JSON, *RUNTIME_ANCHORS_CSV]
        )
        # built-in runtime rules are covered by the anchors; user rules always scan
        user = [r.contains.encode() for r in rules if r.contains and r.origin != "built-in"]
        self._runtime_plain = _minimal_needles([*RUNTIME_ANCHORS_PLAIN, *user])
        self._runtime_json = _minimal_needles([*RUNTIME_ANCHORS_JSON, *user])
        self._runtime_csv = _minimal_needles([*RUNTIME_ANCHORS_CSV, *user])
        self._carry = b""
        self._carry_line = 1
        self._last_log_time: float | None = None
        self.records_classified = 0
        self.records_truncated = 0
        #: bytes fed so far (the housekeeper watches it for the end of a burst)
        self.bytes_total = 0

    # --- public API -----------------------------------------------------------------------
    def feed(self, chunk: bytes, now: float | None = None) -> list[LogEvent]:
        """Consume complete lines; the last record is held until the next header or flush."""
        if not chunk:
            return []
        self.bytes_total += len(chunk)
        events: list[LogEvent] = []
        data = chunk
        if self._carry:
            if self._is_header_at(chunk, 0):
                # the pending record ended with the last chunk: no copy of this one needed
                events = self.flush(now)
            else:
                data = self._carry + chunk
        tail = self._last_record_start(data)
        events += self._process_region(data, tail, now)
        self._carry = data[tail:]
        return events

    def flush(self, now: float | None = None) -> list[LogEvent]:
        """The source is idle: the pending record is complete."""
        if not self._carry:
            return []
        data, self._carry = self._carry, b""
        return self._process_region(data, len(data), now)

    def _process_region(self, data: bytes, end: int, now: float | None) -> list[LogEvent]:
        """Process ``data[:end]``; every newline in it is counted exactly once."""
        events, counted_to, counted_line = self._process(data, 0, end, self._carry_line, now)
        self._carry_line = counted_line + data.count(b"\n", counted_to, end)
        return events

    @property
    def lines_total(self) -> int:
        """Lines fed so far (the pending record included)."""
        return self._carry_line - 1 + self._carry.count(b"\n")

    @property
    def has_pending(self) -> bool:
        return bool(self._carry)

    @property
    def last_log_time(self) -> float | None:
        """The newest timestamp read from the log (log time mode)."""
        return self._last_log_time

    # --- framing ------------------------------------------------------------------------------
    def _process(
        self, data: bytes, start: int, end: int, base_line: int, now: float | None
    ) -> tuple[list[LogEvent], int, int]:
        """Events of the records in ``data[start:end]``, and how far lines were counted."""
        events: list[LogEvent] = []
        position = start
        counted_to, counted_line = start, base_line
        while position < end:
            boot_scan = self._sink.wants_boot_scan()
            hits = self._hits(data, position, end, boot_scan)
            if not hits:
                break
            mode_changed = False
            for hit in hits:
                if hit < position or (not boot_scan and _boring_ispn(data, hit)):
                    continue
                record_start, record_end = self._record_bounds(data, hit, position, end)
                # line numbers are counted lazily, only up to records that are classified
                counted_line += data.count(b"\n", counted_to, record_start)
                counted_to = record_start
                record = self._record(data, record_start, record_end, counted_line)
                position = record_end
                events.extend(self._apply(record, now))
                if self._sink.wants_boot_scan() != boot_scan:
                    mode_changed = True  # rescan the rest with the other needle set
                    break
            if not mode_changed:
                break
        return events, counted_to, counted_line

    def _hits(self, data: bytes, start: int, end: int, boot_scan: bool) -> list[int]:
        if boot_scan:
            needles = self._boot_needles
        elif b'{"' in data[start : start + 256]:
            needles = self._runtime_json
        elif data.startswith(b'"', start):  # a Kibana CSV export: '"Oct 9, 2025 @ ...",ERROR,'
            needles = self._runtime_csv
        else:
            needles = self._runtime_plain
        return self._scan(data, needles, start, end)

    def _record_bounds(self, data: bytes, hit: int, floor: int, end: int) -> tuple[int, int]:
        """The record around ``hit``: back to its header line, forward to the next header."""
        line_start = data.rfind(b"\n", floor, hit) + 1 or floor
        line_start = max(line_start, floor)
        hit_line = line_start
        steps = 0
        header = False
        while line_start > floor and steps < self._max_record_lines:
            if self._is_header_at(data, line_start):
                header = True
                break
            line_start = max(data.rfind(b"\n", floor, line_start - 1) + 1, floor)
            steps += 1
        header = header or self._is_header_at(data, line_start)
        if not header and _console_lines(data, line_start, hit_line):
            # no header above, only console lines (kc.sh's own output: "Unknown option: ..."):
            # each is a line of its own, the record begins where the evidence is
            line_start = hit_line
        next_line = data.find(b"\n", hit, end) + 1 or end
        while next_line < end and not self._is_header_at(data, next_line):
            next_line = data.find(b"\n", next_line, end) + 1 or end
        return line_start, next_line

    def _is_header_at(self, data: bytes, position: int) -> bool:
        if _QUARKUS_HEADER.match(data, position):
            return True
        if data.startswith(_CONTINUATIONS, position):
            return False
        line_end = data.find(b"\n", position)
        line_end = line_end if line_end != -1 else len(data)
        # a header shows in its first characters: no pattern reads a long line whole
        raw = data[position : min(line_end, position + _HEADER_PROBE_BYTES)]
        return layout.is_header(raw.decode("utf-8", "replace"))

    def _last_record_start(self, data: bytes) -> int:
        position = len(data)
        for _ in range(self._max_record_lines):
            if position <= 0:
                return 0
            line_start = data.rfind(b"\n", 0, position - 1) + 1
            if self._is_header_at(data, line_start):
                return line_start
            position = line_start
        return position

    def _record(self, data: bytes, start: int, end: int, line_number: int) -> Record:
        text = data[start:end].decode("utf-8", "replace").replace("\x00", "\ufffd")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > self._max_record_lines + 1:
            self.records_truncated += 1
            lines = lines[: self._max_record_lines + 1]
        return make_record(lines or [""], line_number)

    # --- classification and time ---------------------------------------------------------------
    def _apply(self, record: Record, now: float | None) -> list[LogEvent]:
        self.records_classified += 1
        rules = self._rules if self._sink.wants_boot_scan() else self._runtime_rules
        found = classify(record, rules)
        if not found:
            if now is None:
                self._log_time(record)
            return []
        when = now if now is not None else self._log_time(record)
        # a record without a time of its own (kc.sh's console lines) is placed at the last
        # time read, but its event claims none: a log with no times at all said 1970
        stamped = now is None and record.header.timestamp is not None
        out: list[LogEvent] = []
        for event in found:
            timed = event
            if stamped and event.timestamp != when:
                timed = dataclasses.replace(event, timestamp=when)
            out.extend(self._sink.apply(timed, when))
        return out

    def _log_time(self, record: Record) -> float:
        """Log time: the record's timestamp, with WildFly's time-of-day rolled over midnight."""
        stamp = record.header.timestamp
        last = self._last_log_time
        if stamp is None:
            return last if last is not None else 0.0
        if record.header.time_only and last is not None:
            days = (last - stamp + _HALF_DAY_SECONDS) // _DAY_SECONDS
            stamp += max(days, 0.0) * _DAY_SECONDS
        if last is None:
            self._sink.log_time_started(stamp)
        if last is None or stamp >= last or last - stamp > _DAY_SECONDS:
            self._last_log_time = stamp
        return stamp


_QUARKUS_HEADER = re.compile(
    rb'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:TRACE|DEBUG|INFO |WARN |ERROR|FATAL) \[|\{"'
)
_CONTINUATIONS = (b"\tat ", b"\t... ", b"Caused by: ", b"    at ", b"\tSuppressed: ")


def _console_lines(data: bytes, start: int, end: int) -> bool:
    """Lines in ``data[start:end]`` that are plain console output, none a stack frame, a
    cause or an indented continuation."""
    return not any(
        line[:1] in (b" ", b"\t") or line.startswith((b"Caused by", b"at "))
        for line in data[start:end].split(b"\n")
    )


def runtime_rules(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """The rules that still matter after startup: plain progress lines change nothing."""
    return tuple(r for r in rules if r.event != "startup_progress" or r.boot_marker)


def _boring_ispn(data: bytes, hit: int) -> bool:
    """An Infinispan code that cannot matter after startup (rebalance, ...)."""
    if data[hit : hit + 4] != b"ISPN":
        return False
    code = data[hit + 4 : hit + 10]
    return code.isdigit() and code not in RUNTIME_ISPN_CODES


def _minimal_needles(needles: Sequence[bytes]) -> tuple[bytes, ...]:
    """Drop needles that contain another needle: the shorter one already finds them."""
    unique = sorted(set(needles), key=len)
    kept: list[bytes] = []
    for needle in unique:
        if not any(k in needle for k in kept):
            kept.append(needle)
    return tuple(kept)
