"""The C library helpers: loading, and the two malloc tunings (each in a fresh process, as
mallopt changes the whole process).  Minor page faults show where glibc put the blocks."""

from __future__ import annotations

import subprocess
import sys

from sidecar import libc

BLOCKS_SCRIPT = """
import os, resource, sys
from sidecar import libc
mode, pattern = sys.argv[1:]
if mode == "reuse":
    assert libc.reuse_freed_blocks(1 << 19)
elif mode == "return":
    assert libc.return_freed_blocks()
fd = os.open("/dev/zero", os.O_RDONLY)
os.read(fd, 1 << 19)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
pending = b""
for _ in range(200):
    block = os.read(fd, 1 << 19)
    if pending:
        lines = b"".join((pending, memoryview(block)[:-100]))
        del lines
    pending = block[-100:] if pattern == "batch" else b""
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
#: 200 blocks of 512 KiB, 128 pages each: every block a fresh mapping faults ~25,600 times
FRESH_MAPPINGS = 200 * 64


def minor_faults(mode: str, pattern: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS_SCRIPT, mode, pattern],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_the_c_library_loads_once() -> None:
    assert libc.load() is libc.load()


def test_batch_reads_reuse_their_blocks_once_tuned() -> None:
    """What analyze does: read a block, join the held partial line."""
    default, tuned = minor_faults("default", "batch"), minor_faults("reuse", "batch")
    assert default > FRESH_MAPPINGS
    assert tuned < default / 10


def test_the_daemon_maps_and_unmaps_large_blocks() -> None:
    """glibc's moving threshold keeps freed blocks resident; the daemon's fixed one does not."""
    default, fixed = minor_faults("default", "reads"), minor_faults("return", "reads")
    assert default < FRESH_MAPPINGS / 10  # the blocks stayed in the heap
    assert fixed > FRESH_MAPPINGS  # each block was given back and mapped anew


SOCKET_SCRIPT = """
import asyncio.selector_events, resource, socket, sys
from sidecar import libc
if sys.argv[1] == "return":
    assert libc.return_freed_blocks()
receive_bytes = asyncio.selector_events._SelectorTransport.max_size
left, right = socket.socketpair()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(500):
    left.send(b"GET /livez HTTP/1.1\\r\\n\\r\\n")
    right.recv(receive_bytes)  # what asyncio does for every readable socket
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_the_daemon_keeps_socket_receive_buffers_in_the_heap() -> None:
    """asyncio allocates a 256 KiB buffer per recv(): a fresh mapping each time would cost
    64 page faults per request (it cost /livez a third of its throughput)."""
    done = subprocess.run(
        [sys.executable, "-c", SOCKET_SCRIPT, "return"], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < 50  # 500 requests: far from one fault each, let alone 64


def test_buffers_allocated_again_and_again_stay_below_the_threshold() -> None:
    import asyncio.selector_events

    from sidecar.log.source import DEFAULT_POLL_MAX_BYTES

    receive_bytes = asyncio.selector_events._SelectorTransport.max_size
    assert max(receive_bytes, DEFAULT_POLL_MAX_BYTES) < libc.DAEMON_MMAP_THRESHOLD_BYTES
