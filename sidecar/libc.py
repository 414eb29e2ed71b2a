"""The C library, for the few calls Python does not offer: loaded once, best effort."""

from __future__ import annotations

import ctypes
import functools
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def load() -> ctypes.CDLL:
    """The process's C library; raises ``OSError`` where there is none to load."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "memmem"):
        return libc
    from ctypes import util  # only here: it imports subprocess and shutil (~5 ms at start-up)

    return ctypes.CDLL(util.find_library("c") or "libc.so.6", use_errno=True)


def reuse_freed_blocks(block_bytes: int) -> bool:
    """Batch reading (``analyze``): let glibc reuse freed read blocks.

    glibc serves every allocation above 128 KiB with a new mmap whose pages fault in on
    first touch: a batch read of 1 GB in 512 KiB blocks costs ~140k page faults, ~11 % of an
    ``analyze`` run here.  Raising the mmap threshold above the block size (and the trim
    threshold above that) keeps freed blocks in the heap for the next read.
    """
    mmap_threshold_bytes = 4 * block_bytes
    return _mallopt(mmap_threshold_bytes, 4 * mmap_threshold_bytes)


#: the daemon's fixed mmap threshold: above the buffers allocated again and again, asyncio's
#: 256 KiB socket receive buffer (one per ``recv``: mapped anew, it cost 64 page faults a
#: request and 35 % of /livez throughput) and the tailer's 256 KiB read blocks, which the heap
#: reuses; anything larger is mapped and unmapped on free (a burst leaves nothing behind)
DAEMON_MMAP_THRESHOLD_BYTES = 384 << 10


def return_freed_blocks(mmap_threshold_bytes: int = DAEMON_MMAP_THRESHOLD_BYTES) -> bool:
    """The daemon: give large freed blocks back to the system at once.

    By default glibc raises its mmap threshold each time a mapped block is freed, up to
    32 MiB, so a burst of variously sized multi-MiB chunks ends up in the heap and stays
    resident (+4 MiB after 3M lines here).  A fixed threshold keeps chunks above it mapped
    and unmapped on free: RSS returns to its idle size after every burst.  Buffers that are
    allocated for every request (asyncio's socket reads) must stay below it, and the heap
    keeps up to twice the threshold free at its top, so such a buffer does not grow and
    trim the heap (one page fault and two system calls) on every request.
    """
    return _mallopt(mmap_threshold_bytes, 2 * mmap_threshold_bytes)


def release_free_pages() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim``): pages in the middle
    of the heap too, which the trim threshold never reaches."""
    try:
        malloc_trim = load().malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True


def _mallopt(mmap_threshold_bytes: int, trim_threshold_bytes: int) -> bool:
    try:
        mallopt = load().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    results = [
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes),
        mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes),
    ]
    ok = all(result == 1 for result in results)
    if not ok:
        logger.debug("mallopt refused the thresholds")
    return ok
