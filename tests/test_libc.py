"""The C library helpers: loading, and the malloc tuning of batch reads (in a fresh process)."""

from __future__ import annotations

import subprocess
import sys

from sidecar import libc

FAULTS_SCRIPT = """
import os, resource, sys
from sidecar import libc
if sys.argv[1] == "tuned":
    assert libc.reuse_freed_blocks(1 << 19)
fd = os.open("/dev/zero", os.O_RDONLY)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
pending = b""
for _ in range(200):  # what a batch read does: read a block, join the held partial line
    block = os.read(fd, 1 << 19)
    lines = b"".join((pending, memoryview(block)[:-100]))
    pending = block[-100:]
    del block, lines
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def minor_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_the_c_library_loads_once() -> None:
    assert libc.load() is libc.load()


def test_reused_blocks_stop_the_page_faults_of_fresh_mappings() -> None:
    default, tuned = minor_faults("default"), minor_faults("tuned")
    # 200 reads of 512 KiB: 128 pages fault in per block when each one is a fresh mapping
    assert default > 200 * 64
    assert tuned < default / 10
