"""Hostile log text: the layout patterns do work linear in the line, and a record's text
is bounded before any rule pattern sees it (issue 15, item 2).

Work is measured as a ratio, not a wall-clock budget: the CPU time of one call on an input
8x longer, relative to the shorter one (linear: ~8, quadratic: ~64), in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from sidecar.log import layout
from sidecar.log.classify import MAX_LINE_CHARS, MAX_RECORD_CHARS, make_record, parse_view

HEADER = "2024-03-01 10:00:00,123 ERROR [org.keycloak.services] "
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "run of spaces": lambda n: " " * n,
    "run of spaces then text": lambda n: " " * n + "x",
    "run of tabs": lambda n: "\t" * n,
    "header then run of (": lambda n: HEADER + "(" * n,
    "no-time header then run of (": lambda n: "ERROR [c] " + "(" * n,
    "time-only header then run of (": lambda n: "10:00:00,123 ERROR " + "(" * n,
    "thread of nested (": lambda n: "ERROR [c] (" + "a(" * (n // 2),
    "run of (": lambda n: "(" * n,
    "run of [": lambda n: "[" * n,
    "repeated words": lambda n: "ab " * (n // 3),
    "one long word": lambda n: "a" * n,
    "pod container words": lambda n: "a.b " * (n // 4),
    "run of |": lambda n: "|" * n,
    "kibana quotes": lambda n: '"Oct 9, 2025 @ 17:06:39.736",INFO,"' + '""' * (n // 2),
    "digits": lambda n: "1" * n,
    "colour codes": lambda n: "[0m" * (n // 3),
    "run of =": lambda n: "=" * n + " x",
    "cluster view members": lambda n: "cluster view: [a|1] (2) [" + "a, " * (n // 3),
}
LAYOUT_FUNCTIONS: tuple[Callable[[str], object], ...] = (
    layout.is_header,
    layout.parse_header,
    layout.continuation_text,
    parse_view,
)
SIZES = (1_562, 12_500, 100_000)  # x8 each step, up to the 100k characters
#: a linear pattern gives ~8 per step, a quadratic one ~64
MAX_GROWTH = 24.0


def _cpu_seconds_per_call(text: str) -> float:
    """Best of three: CPU seconds of one pass of every layout function over ``text``."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.process_time()
        while calls < 10_000:
            for function in LAYOUT_FUNCTIONS:
                function(text)
            calls += 1
            if time.process_time() - start >= 0.01:
                break
        best = min(best, (time.process_time() - start) / calls)
    return best


@pytest.mark.parametrize("make", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_layout_work_grows_linearly(make: Callable[[int], str]) -> None:
    previous = _cpu_seconds_per_call(make(SIZES[0]))
    for size in SIZES[1:]:
        spent = _cpu_seconds_per_call(make(size))
        growth = spent / max(previous, 1e-9)
        assert growth < MAX_GROWTH, f"{size} chars: x{growth:.0f} the work of 1/8 of it"
        previous = spent


def test_record_text_is_bounded_per_line_and_per_record() -> None:
    """No rule pattern sees more than MAX_LINE_CHARS of a line or MAX_RECORD_CHARS in all."""
    lines = [HEADER + "x" * 1_000_000, " " * 65_000, *(["y" * 10_000] * 50)]
    record = make_record(lines, 1)
    assert len(record.header.message) <= MAX_LINE_CHARS
    assert all(len(text) <= MAX_LINE_CHARS for text in record.continuation)
    assert len(record.body) <= MAX_RECORD_CHARS


def test_bounded_record_keeps_the_root_cause_over_frames() -> None:
    """Frames go first: the last ``Caused by:`` (the root cause) still reaches the rules."""
    frames = [f"\tat org.example.Deep.call{i}(Deep.java:{i})" for i in range(3000)]
    root = "Caused by: org.postgresql.util.PSQLException: Connection to db:5432 refused."
    lines = [HEADER + "Failed to start server", *frames, root, "\t... 42 more"]
    record = make_record(lines, 1)
    assert root in record.body
    assert len(record.body) <= MAX_RECORD_CHARS


def test_bounded_json_message() -> None:
    record = make_record(['{"level":"ERROR","message":"' + "z" * 100_000 + '"}'], 1)
    assert record.header.layout == "json"
    assert len(record.header.message) <= MAX_RECORD_CHARS
