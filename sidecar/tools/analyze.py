"""``keycloak-sidecar analyze FILE [--json]``: replay a log through the daemon's own pipeline.

Same parser, classifier, state and policy as the daemon; time comes from the log's own
timestamps.  Exit 0 when the file was analysed, whatever the verdict; 2 for unusable input,
including input in which no Keycloak record at all was recognised (another program's log);
141 (as SIGPIPE) without a traceback when the reader of the output went away.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from sidecar import libc
from sidecar.core.events import LogEvent
from sidecar.core.health import Policy, Verdicts, evaluate
from sidecar.core.state import MonitorState
from sidecar.log import layout
from sidecar.log.pipeline import Pipeline
from sidecar.log.rules import Rule
from sidecar.log.source import LineFramer

EXIT_OK = 0
EXIT_UNUSABLE = 2
#: the reader went away (``analyze ... | head``): what a tool killed by SIGPIPE returns
EXIT_READER_GONE = 128 + 13
_BLOCK_BYTES = 1 << 19
_BINARY_SAMPLE_BYTES = 4096
_BINARY_RATIO = 0.3
#: lines at the start of the input checked for Keycloak's log layouts
_SNIFF_LINES = 2000


class UnusableInputError(Exception):
    """The input cannot be analysed (missing, unreadable, a directory, binary)."""


@dataclass(frozen=True, slots=True)
class AnalyzeResult:
    verdicts: Verdicts
    lines: int
    events_total: dict[str, int]
    state: MonitorState
    #: multi-line records cut to ``max_record_lines``
    records_truncated: int = 0
    #: lines in Keycloak's layouts among the first ones, or events found: Keycloak's log
    recognised: bool = True


def read_blocks(
    path: str, max_line_bytes: int, framer: LineFramer | None = None
) -> Iterator[bytes]:
    """Complete, capped lines from a file or ``-`` (stdin), in large blocks."""
    framer = framer or LineFramer(max_line_bytes)
    libc.reuse_freed_blocks(_BLOCK_BYTES)
    if path == "-":
        stream = sys.stdin.buffer
        yield from _framed(iter(lambda: stream.read(_BLOCK_BYTES), b""), framer)
        return
    _check_usable(path)
    with open(path, "rb") as handle:
        yield from _framed(iter(lambda: handle.read(_BLOCK_BYTES), b""), framer)


def _framed(blocks: Iterator[bytes], framer: LineFramer) -> Iterator[bytes]:
    for block in blocks:
        lines = framer.feed(block)
        if lines:
            yield lines
    rest = framer.flush()
    if rest:
        yield rest


def _check_usable(path: str) -> None:
    if not os.path.exists(path):
        raise UnusableInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UnusableInputError(f"{path}: is a directory, expected a log file")
    try:
        with open(path, "rb") as handle:
            sample = handle.read(_BINARY_SAMPLE_BYTES)
    except OSError as error:
        raise UnusableInputError(f"{path}: cannot read: {error.strerror}") from error
    if sample.startswith((b"\x1f\x8b", b"PK\x03\x04", b"\x28\xb5\x2f\xfd", b"BZh")):
        raise UnusableInputError(f"{path}: compressed file; decompress it first (e.g. zcat)")
    controls = sum(1 for byte in sample if byte < 9 or 13 < byte < 32)
    if sample and controls / len(sample) > _BINARY_RATIO:
        raise UnusableInputError(f"{path}: looks like binary data, not a log")


class _ReportingSink:
    """The state, reporting each recorded event with the verdicts right after it."""

    def __init__(
        self,
        state: MonitorState,
        policy: Policy,
        on_event: Callable[[LogEvent, Verdicts | None], None] | None,
    ) -> None:
        self._state, self._policy, self._on_event = state, policy, on_event

    def apply(self, event: LogEvent, now: float) -> list[LogEvent]:
        recorded = self._state.apply(event, now)
        if self._on_event is not None:
            for item in recorded:
                self._on_event(item, evaluate(self._state.snapshot(), now, self._policy))
        return recorded

    def wants_boot_scan(self) -> bool:
        return self._state.wants_boot_scan()

    def log_time_started(self, stamp: float) -> None:
        self._state.log_time_started(stamp)


def analyze(
    blocks: Iterator[bytes],
    rules: Sequence[Rule],
    policy: Policy,
    *,
    max_record_lines: int = 512,
    on_event: Callable[[LogEvent, Verdicts | None], None] | None = None,
) -> AnalyzeResult:
    """Run the pipeline over ``blocks`` with log time; report each event as it is recorded,
    with the verdicts as they stand right after it."""
    state = MonitorState(0.0)
    state.log_present = state.log_caught_up = True
    pipeline = Pipeline(
        rules, _ReportingSink(state, policy, on_event), max_record_lines=max_record_lines
    )
    sniffer = _LayoutSniffer()
    for chunk in blocks:
        sniffer.look(chunk)
        pipeline.feed(chunk)
    pipeline.flush()
    now = pipeline.last_log_time if pipeline.last_log_time is not None else 0.0
    verdicts = evaluate(state.snapshot(), now, policy)
    return AnalyzeResult(
        verdicts,
        pipeline.lines_total,
        dict(state.events_total),
        state,
        records_truncated=pipeline.records_truncated,
        recognised=bool(state.events_total) or sniffer.found,
    )


class _LayoutSniffer:
    """Looks at the first lines for a record in one of Keycloak's layouts (a level and a
    logger category): a Keycloak log that happens to hold no event is still one."""

    def __init__(self) -> None:
        self.found = False
        self._seen = 0

    def look(self, chunk: bytes) -> None:
        if self.found or self._seen >= _SNIFF_LINES:
            return
        for raw in chunk.split(b"\n", _SNIFF_LINES - self._seen)[: _SNIFF_LINES - self._seen]:
            self._seen += 1
            header = layout.parse_header(raw.decode("utf-8", "replace"))
            if header.level and header.category:
                self.found = True
                return


def verdict_json(verdicts: Verdicts) -> dict[str, object]:
    reasons = list(dict.fromkeys([*verdicts.live.reasons, *verdicts.ready.reasons]))
    return {
        "verdict": {
            "started": verdicts.started.ok,
            "live": verdicts.live.ok,
            "ready": verdicts.ready.ok,
            "reasons": reasons,
        }
    }


class TimelinePrinter:
    """Human-readable output: events and the verdict changes they cause."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last: tuple[bool, bool, bool] | None = None

    def __call__(self, event: LogEvent, verdicts: Verdicts | None) -> None:
        details = [
            f"{k}={v}"
            for k, v in event.to_json().items()
            if k not in {"line", "event", "timestamp"}
        ]
        self._out.write(f"line {event.line:>7}  {event.kind.value:<17} {' '.join(details)}\n")
        if verdicts is None:
            return
        current = (verdicts.started.ok, verdicts.live.ok, verdicts.ready.ok)
        if current != self._last:
            self._last = current
            reasons = ",".join(dict.fromkeys([*verdicts.live.reasons, *verdicts.ready.reasons]))
            self._out.write(
                f"{'':14}-> started={_yn(current[0])} live={_yn(current[1])} "
                f"ready={_yn(current[2])}{'  (' + reasons + ')' if reasons else ''}\n"
            )


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def run(
    path: str,
    rules: Sequence[Rule],
    policy: Policy,
    *,
    as_json: bool,
    quiet: bool,
    max_line_bytes: int,
    max_record_lines: int,
    out: TextIO,
) -> int:
    """The CLI entry: print events and the final verdict; return the exit code."""
    try:
        code = _run(
            path,
            rules,
            policy,
            as_json=as_json,
            quiet=quiet,
            max_line_bytes=max_line_bytes,
            max_record_lines=max_record_lines,
            out=out,
        )
        out.flush()
    except BrokenPipeError:
        # the reader closed the pipe: stop quietly, and keep the interpreter's own last
        # flush of stdout from raising it again
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_READER_GONE
    return code


def _run(
    path: str,
    rules: Sequence[Rule],
    policy: Policy,
    *,
    as_json: bool,
    quiet: bool,
    max_line_bytes: int,
    max_record_lines: int,
    out: TextIO,
) -> int:
    framer = LineFramer(max_line_bytes)
    try:
        blocks = read_blocks(path, max_line_bytes, framer)
        if as_json:

            def emit(event: LogEvent, _verdicts: Verdicts | None) -> None:
                out.write(json.dumps(event.to_json()) + "\n")

            callback: Callable[[LogEvent, Verdicts | None], None] | None = emit
        else:
            callback = None if quiet else TimelinePrinter(out)
        result = analyze(
            blocks, rules, policy, max_record_lines=max_record_lines, on_event=callback
        )
    except UnusableInputError as error:
        sys.stderr.write(f"keycloak-sidecar analyze: {error}\n")
        return EXIT_UNUSABLE
    except BrokenPipeError:
        raise  # the output's reader went away, not the input: run() ends quietly
    except OSError as error:
        sys.stderr.write(f"keycloak-sidecar analyze: {path}: {error.strerror or error}\n")
        return EXIT_UNUSABLE
    if not result.recognised:
        sys.stderr.write(
            f"keycloak-sidecar analyze: {path}: no Keycloak records recognised in "
            f"{result.lines} lines\n"
        )
        return EXIT_UNUSABLE
    _summarise(result, framer.lines_truncated, as_json=as_json, quiet=quiet, out=out)
    return EXIT_OK


def _summarise(
    result: AnalyzeResult, lines_truncated: int, *, as_json: bool, quiet: bool, out: TextIO
) -> None:
    summary = verdict_json(result.verdicts)
    truncated = {"lines_truncated": lines_truncated, "records_truncated": result.records_truncated}
    if quiet:
        summary.update(lines=result.lines, events=result.events_total, **truncated)
        out.write(json.dumps(summary) + "\n")
    elif as_json:
        summary.update(truncated)
        out.write(json.dumps(summary) + "\n")
    else:
        verdict = summary["verdict"]
        cut = ""
        if lines_truncated or result.records_truncated:
            cut = (
                f" ({lines_truncated} lines cut to the maximum line length, "
                f"{result.records_truncated} records to the maximum record lines)"
            )
        out.write(f"\n{result.lines} lines{cut}; verdict: {json.dumps(verdict)}\n")
