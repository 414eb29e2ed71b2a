"""When the sidecar gives memory back (table-driven, fake release), and that the real release
steps work in this process."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from sidecar import libc
from sidecar.housekeeping import Housekeeper, release_memory

MIB = 1 << 20


def make(now: float = 0.0) -> tuple[Housekeeper, list[int]]:
    runs: list[int] = []
    keeper = Housekeeper(
        now,
        lambda: runs.append(1),
        burst_bytes=16 * MIB,
        min_interval_seconds=5.0,
        max_interval_seconds=300.0,
    )
    return keeper, runs


# (bytes_total, now) ticks -> which ticks ran
CASES = [
    pytest.param(
        [(0, 1.0), (0, 2.0), (1000, 3.0)], [False, False, False], id="idle-log-nothing-to-do"
    ),
    pytest.param(
        [(8 * MIB, 6.0), (20 * MIB, 7.0), (20 * MIB, 7.25)],
        [False, False, True],
        id="runs-once-the-burst-is-over",
    ),
    pytest.param(
        [(20 * MIB, 1.0), (20 * MIB, 1.25), (20 * MIB, 5.0)],
        [False, False, True],
        id="not-twice-within-the-minimum-interval",
    ),
    pytest.param(
        [(20 * MIB, 6.0), (40 * MIB, 6.25), (60 * MIB, 6.5)],
        [False, False, False],
        id="never-in-the-middle-of-a-burst",
    ),
    pytest.param(
        [(15 * MIB, 6.0), (15 * MIB, 6.25)], [False, False], id="small-bursts-wait-for-more"
    ),
    pytest.param([(100, 299.0), (200, 300.0)], [False, True], id="periodic-even-while-reading"),
]


@pytest.mark.parametrize(("ticks", "expected"), CASES)
def test_when_memory_is_given_back(ticks: list[tuple[int, float]], expected: list[bool]) -> None:
    keeper, runs = make()
    ran = [keeper.observe(bytes_total, now) for bytes_total, now in ticks]
    assert ran == expected
    assert len(runs) == keeper.runs == sum(ran)


def test_a_run_starts_the_counting_afresh() -> None:
    keeper, runs = make()
    assert not keeper.observe(20 * MIB, 10.0)
    assert keeper.observe(20 * MIB, 10.25)
    assert not keeper.observe(30 * MIB, 20.0)  # only 10 MiB since the run
    assert not keeper.observe(30 * MIB, 20.25)
    assert keeper.observe(37 * MIB, 21.0) is False  # still reading
    assert keeper.observe(37 * MIB, 21.25)  # 17 MiB since the run, now quiet
    assert len(runs) == 2


def test_the_release_collects_cycles() -> None:
    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    collected_before = gc.get_stats()[2]["collections"]
    del a, b
    release_memory()
    assert gc.get_stats()[2]["collections"] == collected_before + 1
    assert not [o for o in gc.get_objects() if type(o) is Node]


def test_the_c_library_hands_free_pages_back() -> None:
    assert libc.release_free_pages()


SETTLE_SCRIPT = """
import gc
from sidecar.housekeeping import settle
settle()
print(gc.get_freeze_count())
"""


def test_settle_freezes_the_start_up_objects() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SETTLE_SCRIPT], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) > 1000
