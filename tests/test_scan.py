"""The pre-filter's scanners: glibc's memmem through ctypes and bytes.find agree everywhere."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from sidecar.log import scan
from sidecar.log.pipeline import Pipeline
from sidecar.log.rules import builtin_rules
from sidecar.log.scan import FIND_BELOW_BYTES, MemmemScanner, best_scanner, scan_with_find

_REALKC = Path(__file__).parent / "data" / "realkc"
REAL_LINES = [
    line
    for path in sorted(_REALKC.glob("*.log"))
    for line in path.read_bytes().splitlines(keepends=True)
]
_PIPELINE = Pipeline(builtin_rules(), sink=None)  # type: ignore[arg-type]  # needles only
NEEDLE_SETS = [
    _PIPELINE._boot_needles,
    _PIPELINE._runtime_plain,
    _PIPELINE._runtime_json,
    _PIPELINE._runtime_csv,
]

MEMMEM = MemmemScanner()
#: memmem on every region, however small (the default hands short ones to bytes.find)
MEMMEM_ALWAYS = MemmemScanner(find_below_bytes=0)


def test_this_machine_uses_memmem() -> None:
    assert isinstance(best_scanner(), MemmemScanner)


@pytest.mark.parametrize(
    ("data", "needles", "start", "end", "expected"),
    [
        (b"aaaaa", [b"aaa"], 0, 5, [0, 1, 2]),  # overlapping occurrences
        (b"ISPN000094 ISPN000094", [b"ISPN000"], 0, 21, [0, 11]),
        (b"ISPN000094 ISPN000094", [b"ISPN000"], 1, 21, [11]),  # bounded at the start
        (b"ISPN000094 ISPN000094", [b"ISPN000"], 0, 17, [0]),  # a match must end by `end`
        (b"ISPN000094 ISPN000094", [b"ISPN000"], 0, 18, [0, 11]),
        (b"x\x00ERROR [\x00", [b"ERROR ["], 0, 10, [2]),  # NUL bytes are ordinary bytes
        (b"ERROR [", [b"ERROR [", b"ERR"], 0, 7, [0]),  # one position however many needles
        (b"abc", [b"abcd"], 0, 3, []),  # needle longer than the region
        (b"", [b"a"], 0, 0, []),
        (b"abcabc", [b"c", b"a"], 0, 99, [0, 2, 3, 5]),  # end past the data is clamped
    ],
)
def test_known_answers(
    data: bytes, needles: list[bytes], start: int, end: int, expected: list[int]
) -> None:
    assert MEMMEM(data, needles, start, end) == expected
    assert MEMMEM_ALWAYS(data, needles, start, end) == expected
    assert scan_with_find(data, needles, start, end) == expected


@pytest.mark.parametrize("seed", range(300))
def test_random_buffers_agree(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = b"ab\n\x00\xff"
    data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
    needles = [
        bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
        for _ in range(rng.randrange(1, 4))
    ]
    start = rng.randrange(0, len(data) + 1)
    end = rng.randrange(start, len(data) + 1)
    assert MEMMEM_ALWAYS(data, needles, start, end) == scan_with_find(data, needles, start, end)


@pytest.mark.parametrize("seed", range(40))
def test_small_region_path_finds_what_memmem_finds(seed: int) -> None:
    """Regions on both sides of FIND_BELOW_BYTES, real needle sets (runtime and boot) over
    real Keycloak lines: the default scanner (bytes.find below the threshold, memmem above)
    finds exactly what memmem finds everywhere."""
    rng = random.Random(seed)
    lines = REAL_LINES
    first = rng.randrange(len(lines))
    data = b"".join(lines[first : first + rng.randrange(1, 40)])
    start = rng.randrange(0, min(len(data), 300) + 1)
    end = min(len(data), start + rng.choice((FIND_BELOW_BYTES - 1, FIND_BELOW_BYTES, 100, 5000)))
    for needles in NEEDLE_SETS:
        expected = MEMMEM_ALWAYS(data, needles, start, end)
        assert MEMMEM(data, needles, start, end) == expected
        assert scan_with_find(data, needles, start, end) == expected


def test_threshold_splits_the_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short regions go to bytes.find, long ones to memmem (so the test above covers both)."""
    calls: list[int] = []
    scanner = MemmemScanner()
    real = scan.scan_with_find

    def spy(data: bytes, needles: Iterable[bytes], start: int, end: int) -> list[int]:
        calls.append(end - start)
        return real(data, needles, start, end)

    monkeypatch.setattr(scan, "scan_with_find", spy)
    data = b"x" * (2 * FIND_BELOW_BYTES) + b"ERROR ["
    assert scanner(data, [b"ERROR ["], 0, FIND_BELOW_BYTES - 1) == []
    assert calls == [FIND_BELOW_BYTES - 1]
    assert scanner(data, [b"ERROR ["], 0, len(data)) == [2 * FIND_BELOW_BYTES]
    assert calls == [FIND_BELOW_BYTES - 1]
