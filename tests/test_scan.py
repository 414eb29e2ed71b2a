"""The pre-filter's scanners: glibc's memmem through ctypes and bytes.find agree everywhere."""

from __future__ import annotations

import random

import pytest

from sidecar.log.scan import MemmemScanner, best_scanner, scan_with_find

MEMMEM = MemmemScanner()


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
    assert MEMMEM(data, needles, start, end) == scan_with_find(data, needles, start, end)
