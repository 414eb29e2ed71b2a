"""Scan speed of one needle over a whole file: the C library's memmem against bytes.find.

    .venv/bin/python benchmarks/needles.py FILE [NEEDLE ...]

Prints GB/s and hit counts for each needle (default: the runtime anchors of the file's
layout).  One pass each over the file held in memory; the figures back the pre-filter
choices in benchmarks/README.md ("Where the time goes").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from sidecar.log.rules import RUNTIME_ANCHORS_JSON, RUNTIME_ANCHORS_PLAIN
from sidecar.log.scan import MemmemScanner, Scanner, scan_with_find


def gigabytes_per_second(scan: Scanner, data: bytes, needle: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    hits = len(scan(data, (needle,), 0, len(data)))
    return len(data) / (time.perf_counter() - started) / 1e9, hits


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(__doc__ or "")
        return 2
    data = Path(argv[0]).read_bytes()
    is_json = b'{"' in data[:256]
    needles = [a.encode() for a in argv[1:]] or list(
        RUNTIME_ANCHORS_JSON if is_json else RUNTIME_ANCHORS_PLAIN
    )
    scanners: dict[str, Callable[..., list[int]]] = {
        "memmem": MemmemScanner(),
        "bytes.find": scan_with_find,
    }
    print(f"{argv[0]}: {len(data) / 1e6:.0f} MB")
    print(f"| needle | {' | '.join(f'{name} GB/s' for name in scanners)} | hits |")
    print("|---|" + "---|" * (len(scanners) + 1))
    for needle in needles:
        speeds = []
        hits = 0
        for scan in scanners.values():
            speed, hits = gigabytes_per_second(scan, data, needle)
            speeds.append(f"{speed:.1f}")
        print(f"| `{needle.decode()}` | {' | '.join(speeds)} | {hits} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
