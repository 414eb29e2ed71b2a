"""The tests' Kubernetes API-server double (tests/kubeapi.py), served on its own, so the memory
benchmark can run the sidecar with its Kubernetes side on: pod and peer watches, the
kill-budget Lease, Events.

    PYTHONPATH=tests python benchmarks/kube_double.py DIR   # writes DIR/kubeconfig, prints its path

The cluster holds two ready Keycloak pods, ``keycloak-0`` (the sidecar's own, namespace
``ns``) and ``keycloak-1``.  It serves until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from kubeapi import KubeApiDouble  # tests/kubeapi.py: the suite runs this with tests/ on PYTHONPATH

LABELS = {"app.kubernetes.io/name": "keycloak", "app.kubernetes.io/instance": "keycloak"}
OWN_POD = "keycloak-0"
NAMESPACE = "ns"


async def serve(directory: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with KubeApiDouble(namespace=NAMESPACE, bookmark_interval_seconds=5.0) as api:
        for ordinal in range(2):
            api.add_pod(f"keycloak-{ordinal}", LABELS, ready=True, ip=f"10.0.0.{ordinal + 1}")
        print(api.write_kubeconfig(directory), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, help="where the kubeconfig is written")
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.directory))


if __name__ == "__main__":
    main()
