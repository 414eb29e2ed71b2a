"""Where substrings occur in a large byte buffer: the pipeline's pre-filter.

The pre-filter is the hot path: every byte of the log is scanned once per needle.  CPython's
``bytes.find`` manages 2-3 GB/s per needle here; the C library's ``memmem`` (glibc's
short-needle algorithm) manages 5-12 GB/s on the same logs (benchmarks/README.md).  So the
scanner calls ``memmem`` through ctypes where the C library has it, and ``bytes.find``
otherwise.  Both give the same answers; tests/test_scan.py holds them to that.

Safety of the ctypes path: ``data`` is an immutable ``bytes`` object that the caller keeps
alive for the whole call, so the address of its buffer stays valid; every call is bounded by
``end``, which never exceeds ``len(data)``.

A ctypes call costs far more than a ``bytes.find`` on a short region, and a live log hands
the pre-filter one line at a time (Keycloak flushes every record): below
``FIND_BELOW_BYTES`` the memmem scanner uses ``bytes.find`` (a 250-byte line with the 12
runtime needles: 4 us against 17-41 us; the two meet at 2-4 KiB, benchmarks/README.md).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable, Iterable

from sidecar import libc

logger = logging.getLogger(__name__)

#: positions of every occurrence of each needle in ``data[start:end]``, sorted, no duplicates
Scanner = Callable[[bytes, Iterable[bytes], int, int], list[int]]

#: regions shorter than this are scanned with ``bytes.find`` even where memmem exists
FIND_BELOW_BYTES = 2048


def scan_with_find(data: bytes, needles: Iterable[bytes], start: int, end: int) -> list[int]:
    """The portable scanner: ``bytes.find``."""
    found: set[int] = set()
    for needle in needles:
        index = data.find(needle, start, end)
        while index != -1:
            found.add(index)
            index = data.find(needle, index + 1, end)
    return sorted(found)


class MemmemScanner:
    """The fast scanner: the C library's ``memmem``; raises ``OSError`` where it is missing."""

    def __init__(self, find_below_bytes: int = FIND_BELOW_BYTES) -> None:
        self._find_below_bytes = find_below_bytes
        try:
            memmem = libc.load().memmem
        except (OSError, AttributeError) as error:
            raise OSError(f"memmem is not available: {error}") from error
        memmem.restype = ctypes.c_void_p
        memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
        self._memmem = memmem

    def __call__(self, data: bytes, needles: Iterable[bytes], start: int, end: int) -> list[int]:
        end = min(end, len(data))
        if end - start < self._find_below_bytes:
            return scan_with_find(data, needles, start, end)
        base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        memmem = self._memmem
        found: set[int] = set()
        for needle in needles:
            size = len(needle)
            if size == 0:
                found.update(scan_with_find(data, (needle,), start, end))
                continue
            position = start
            while end - position >= size:
                address = memmem(base + position, end - position, needle, size)
                if not address:
                    break
                found.add(address - base)
                position = address - base + 1
        return sorted(found)


@functools.cache
def best_scanner() -> Scanner:
    """``memmem`` when the C library has it, else ``bytes.find`` (resolved once)."""
    try:
        return MemmemScanner()
    except OSError as error:
        logger.info("Using bytes.find for the log pre-filter", extra={"why": str(error)})
        return scan_with_find
