"""The C library, for the few calls Python does not offer: loaded once, best effort."""

from __future__ import annotations

import ctypes
import ctypes.util
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
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def reuse_freed_blocks(block_bytes: int) -> bool:
    """Let glibc reuse freed read blocks instead of mapping fresh pages for each one.

    glibc serves every allocation above 128 KiB with a new mmap whose pages fault in on
    first touch: a batch read of 1 GB in 512 KiB blocks costs ~140k page faults, ~11 % of an
    ``analyze`` run here.  Raising the mmap threshold above the block size (and the trim
    threshold above that) keeps freed blocks in the heap for the next read.  For short-lived
    batch work only: the daemon keeps glibc's defaults, which return memory sooner.
    """
    try:
        mallopt = load().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_threshold = 4 * block_bytes
    results = (
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold),
        mallopt(_M_TRIM_THRESHOLD, 4 * mmap_threshold),
    )
    ok = all(result == 1 for result in results)
    if not ok:
        logger.debug("mallopt refused the block thresholds")
    return ok
