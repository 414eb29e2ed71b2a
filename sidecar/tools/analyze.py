"""``keycloak-sidecar analyze FILE [--json]``: replay a log through the daemon's own pipeline.

Same parser, classifier, state and policy as the daemon; time comes from the log's own
timestamps.  Exit 0 when the file was analysed, whatever the verdict; 2 for unusable input.
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
from sidecar.log.pipeline import Pipeline
from sidecar.log.rules import Rule
from sidecar.log.source import LineFramer

EXIT_OK = 0
EXIT_UNUSABLE = 2
_BLOCK_BYTES = 1 << 19
_BINARY_SAMPLE_BYTES = 4096
_BINARY_RATIO = 0.3


class UnusableInputError(Exception):
    """The input cannot be analysed (missing, unreadable, a directory, binary)."""


@dataclass(frozen=True, slots=True)
class AnalyzeResult:
    verdicts: Verdicts
    lines: int
    events_total: dict[str, int]
    state: MonitorState


def read_blocks(path: str, max_line_bytes: int) -> Iterator[bytes]:
    """Complete, capped lines from a file or ``-`` (stdin), in large blocks."""
    framer = LineFramer(max_line_bytes)
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


def analyze(
    blocks: Iterator[bytes],
    rules: Sequence[Rule],
    policy: Policy,
    *,
    max_record_lines: int = 512,
    on_event: Callable[[LogEvent, Verdicts | None], None] | None = None,
) -> AnalyzeResult:
    """Run the pipeline over ``blocks`` with log time; report each event as it is recorded."""
    state = MonitorState(0.0)
    state.log_present = state.log_caught_up = True
    pipeline = Pipeline(rules, state, max_record_lines=max_record_lines)

    def deliver(events: list[LogEvent]) -> None:
        if on_event is None:
            return
        for event in events:
            now = event.timestamp if event.timestamp is not None else 0.0
            on_event(event, evaluate(state.snapshot(), now, policy))

    for chunk in blocks:
        deliver(pipeline.feed(chunk))
    deliver(pipeline.flush())
    now = pipeline.last_log_time if pipeline.last_log_time is not None else 0.0
    verdicts = evaluate(state.snapshot(), now, policy)
    return AnalyzeResult(verdicts, pipeline.lines_total, dict(state.events_total), state)


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
        blocks = read_blocks(path, max_line_bytes)
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
    except OSError as error:
        sys.stderr.write(f"keycloak-sidecar analyze: {path}: {error.strerror or error}\n")
        return EXIT_UNUSABLE
    summary = verdict_json(result.verdicts)
    if quiet:
        summary.update(lines=result.lines, events=result.events_total)
        out.write(json.dumps(summary) + "\n")
    elif as_json:
        out.write(json.dumps(summary) + "\n")
    else:
        verdict = summary["verdict"]
        out.write(f"\n{result.lines} lines; verdict: {json.dumps(verdict)}\n")
    return EXIT_OK
