"""``keycloak-sidecar demo``: two real sidecars, a replayed two-replica story, no cluster needed.

Two daemons run in this process, one per replica, each following its replica's log file
while the bundled story (``data/demo-story.log``) is written into those files.  The demo plays
the kubelet: when a replica's ``/livez`` answers 503 it "restarts" that replica, whose next
boot is replayed.  Every verdict change is printed as an HTTP client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

import aiohttp

from sidecar.log.rules import builtin_rules
from sidecar.runtime import Daemon, serve
from sidecar.settings import load_settings, parse_listen

REPLICAS = {"A": "keycloak-controller-559a8", "B": "keycloak-controller-zorqg"}
_POLL_SECONDS = 0.1
_ENDPOINTS = ("startupz", "livez", "readyz")


@dataclass(frozen=True, slots=True)
class StoryLine:
    replica: str
    phase: str  # "boot" or "restart"
    delay_seconds: float
    text: str


def load_story() -> list[StoryLine]:
    raw = resources.files("sidecar").joinpath("data/demo-story.log").read_text("utf-8")
    lines = []
    for row in raw.splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        who, delay, text = row.split(None, 2)
        replica, _, phase = who.partition(":")
        lines.append(StoryLine(replica, phase or "boot", float(delay), text))
    return lines


class Demo:
    def __init__(self, out: TextIO, speed: float) -> None:
        self.out = out
        self.speed = speed
        self.started = time.monotonic()
        self.restart_requested = {name: asyncio.Event() for name in REPLICAS}
        self.restarts = dict.fromkeys(REPLICAS, 0)

    def say(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:5.1f}s] {text}\n")
        self.out.flush()

    async def play(self, story: list[StoryLine], files: dict[str, str]) -> None:
        for line in (s for s in story if s.phase == "boot"):
            await asyncio.sleep(line.delay_seconds / self.speed)
            _append(files[line.replica], line.text)
        await asyncio.wait_for(self.restart_requested["B"].wait(), 30)
        for line in (s for s in story if s.phase == "restart"):
            await asyncio.sleep(line.delay_seconds / self.speed)
            _append(files[line.replica], line.text)
        await asyncio.sleep(2.0 / self.speed + 1.0)

    async def watch(self, session: aiohttp.ClientSession, replica: str, port: int) -> None:
        """Poll a sidecar like the kubelet would; print every change."""
        name = REPLICAS[replica]
        last: dict[str, str] = {}
        while True:
            for endpoint in _ENDPOINTS:
                status, reasons = await _get(session, port, endpoint)
                shown = f"{status}{' (' + reasons + ')' if reasons else ''}"
                if last.get(endpoint) != shown:
                    last[endpoint] = shown
                    self.say(f"{name:<28} /{endpoint:<8} -> {shown}")
                if endpoint == "livez" and status == 503 and self.restarts[replica] == 0:
                    self.restarts[replica] += 1
                    self.say(f"kubelet: liveness probe failed, restarting Keycloak in {name}")
                    self.restart_requested[replica].set()
            await asyncio.sleep(_POLL_SECONDS)


async def _get(session: aiohttp.ClientSession, port: int, endpoint: str) -> tuple[int, str]:
    try:
        async with session.get(f"http://127.0.0.1:{port}/{endpoint}") as response:
            body = await response.json()
            reasons = ",".join(
                f"{c['reason']}{':' + c['detail'] if c.get('detail') else ''}"
                for c in body.get("checks", [])
                if not c.get("ok")
            )
            return response.status, reasons
    except (aiohttp.ClientError, ValueError):
        return 0, "no answer"


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        if text:
            handle.write(text + "\n")


async def _run(listen: str, speed: float, keep_serving: bool, out: TextIO) -> None:
    host, port = parse_listen(listen)
    demo = Demo(out, speed)
    with tempfile.TemporaryDirectory(prefix="keycloak-sidecar-demo-") as folder:
        files = {r: os.path.join(folder, f"{name}.log") for r, name in REPLICAS.items()}
        for path in files.values():
            _append(path, "")
        daemons: list[Daemon] = []
        base = load_settings(
            {},
            {
                "SIDECAR_KEYCLOAK_URL": "",
                "SIDECAR_NO_KUBERNETES": "true",
                "SIDECAR_LOG_LEVEL": "warning",
            },
        )
        ports = {"A": port, "B": port + 1}
        tasks = []
        for replica in REPLICAS:
            settings = dataclasses.replace(
                base, log_file=files[replica], listen=(host, ports[replica])
            )
            tasks.append(
                asyncio.create_task(
                    serve(settings, builtin_rules(), daemon_out=daemons), name=f"sidecar-{replica}"
                )
            )
        while len(daemons) < len(REPLICAS) or not all(d.ready.is_set() for d in daemons):
            if any(t.done() for t in tasks):
                await asyncio.gather(*tasks)
            await asyncio.sleep(0.01)
        demo.say(
            "replaying CONTEXT.md's story: two Keycloak replicas start against one empty "
            "database; one loses the Liquibase race"
        )
        demo.say(
            f"sidecar for {REPLICAS['A']} on http://{host}:{ports['A']}/  "
            f"sidecar for {REPLICAS['B']} on http://{host}:{ports['B']}/"
        )
        demo.say(f"try: curl -s localhost:{ports['B']}/readyz?verbose  (Ctrl-C to stop)")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            watchers = [
                asyncio.create_task(demo.watch(session, r, ports[r]), name=f"watch-{r}")
                for r in REPLICAS
            ]
            try:
                await demo.play(load_story(), files)
                demo.say(
                    "replay finished: both replicas started, in one cluster, ready; "
                    f"restarts: {demo.restarts}"
                )
                if keep_serving:
                    await asyncio.Event().wait()
            finally:
                for task in watchers:
                    task.cancel()
                for daemon in daemons:
                    daemon.request_stop()
                await asyncio.gather(*watchers, *tasks, return_exceptions=True)


def run(*, listen: str, speed: float, keep_serving: bool) -> int:
    """Entry point of ``keycloak-sidecar demo``."""
    from sidecar import logjson

    logjson.configure("warning")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(listen, max(speed, 0.1), keep_serving, sys.stdout))
    return 0
