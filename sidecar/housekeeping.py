"""Giving memory back: a full garbage collection, then the C library's free pages.

Neither step alone keeps the sidecar's memory flat (benchmarks/README.md, "Where the time
goes", item 6): some blocks are released only by a full collection (which also empties the
interpreter's free lists; CPython runs one by itself only when the oldest generation grew by
a quarter), and the C heap keeps the pages freed in its middle until ``malloc_trim`` hands
them back.  Over four simulated hours of a busy
Keycloak log, RSS crept from 40.9 to 45.3 MiB with neither, to 42.3 (collection only) or
42.9 MiB (trim only), and stayed at 39.6 MiB with both.

``Housekeeper.observe`` is called on every verdict tick with the bytes read so far.  It runs
once a burst of log is over (at least ``burst_bytes`` read, nothing new since the last tick,
``min_interval_seconds`` since the last run) and otherwise every ``max_interval_seconds``.
A run costs well under a millisecond after :func:`settle` froze the start-up objects.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from sidecar import libc

BURST_BYTES = 16 << 20
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 300.0


def settle() -> None:
    """After start-up: keep the start-up objects (modules, classes, functions: they live as
    long as the process) out of every later collection; a full collection went from 12 ms to
    microseconds.  No collection first: that would cost the first answer ~30 ms."""
    gc.freeze()


def release_memory() -> None:
    gc.collect()
    libc.release_free_pages()


class Housekeeper:
    """Decides when to give memory back; the release itself is injected (tests)."""

    def __init__(
        self,
        now: float,
        release: Callable[[], None] = release_memory,
        *,
        burst_bytes: int = BURST_BYTES,
        min_interval_seconds: float = MIN_INTERVAL_SECONDS,
        max_interval_seconds: float = MAX_INTERVAL_SECONDS,
    ) -> None:
        self._release = release
        self._burst_bytes = burst_bytes
        self._min_interval_seconds = min_interval_seconds
        self._max_interval_seconds = max_interval_seconds
        self._last_run_at = now
        self._bytes_at_last_run = 0
        self._bytes_seen = 0
        self.runs = 0

    def observe(self, bytes_total: int, now: float) -> bool:
        """One tick: ``bytes_total`` is what the log source delivered so far.  True if it ran."""
        quiet = bytes_total == self._bytes_seen
        self._bytes_seen = bytes_total
        elapsed_seconds = now - self._last_run_at
        burst_over = (
            quiet
            and bytes_total - self._bytes_at_last_run >= self._burst_bytes
            and elapsed_seconds >= self._min_interval_seconds
        )
        if not burst_over and elapsed_seconds < self._max_interval_seconds:
            return False
        self._release()
        self._last_run_at = now
        self._bytes_at_last_run = bytes_total
        self.runs += 1
        return True
