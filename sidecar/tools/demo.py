"""``keycloak-sidecar demo``: two real sidecars, a replayed two-replica story, no cluster needed.

Two daemons run in this process, one per replica, each following its replica's log file
while a bundled story is written into those files: ``2015`` (``data/demo-story.log``, the
WildFly-era Liquibase race, plain logs) or ``26`` (``data/demo-story-26.log``, Keycloak 26
with JSON logs).  The demo plays the kubelet: when a replica's ``/livez`` answers 503 it
"restarts" that replica, whose next boot is replayed.  Every verdict change is printed as an
HTTP client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

import aiohttp

from sidecar.log.rules import builtin_rules
from sidecar.runtime import Daemon, serve
from sidecar.settings import Settings, load_settings, parse_listen

_POLL_SECONDS = 0.1
_ENDPOINTS = ("startupz", "livez", "readyz")


@dataclass(frozen=True, slots=True)
class Story:
    """A bundled story: its file, the pod names of its replicas A and B, and its opening."""

    file: str
    replicas: dict[str, str]
    intro: str


STORIES: dict[str, Story] = {
    "2015": Story(
        "data/demo-story.log",
        {"A": "keycloak-controller-559a8", "B": "keycloak-controller-zorqg"},
        "replaying the 2015 story: two Keycloak 1.x replicas start against one empty "
        "database; one loses the Liquibase race",
    ),
    "26": Story(
        "data/demo-story-26.log",
        {"A": "keycloak-0", "B": "keycloak-1"},
        "replaying a Keycloak 26 story (JSON logs): two replicas start together; "
        "keycloak-1 fails to start and is left out of the cluster view",
    ),
}


class PortTakenError(Exception):
    """A demo port is in use: the message names it and the flag that changes it."""


@dataclass(frozen=True, slots=True)
class StoryLine:
    replica: str
    phase: str  # "boot" or "restart"
    delay_seconds: float
    text: str


def load_story(story: Story) -> list[StoryLine]:
    raw = resources.files("sidecar").joinpath(story.file).read_text("utf-8")
    lines = []
    for row in raw.splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        who, delay, text = row.split(None, 2)
        replica, _, phase = who.partition(":")
        lines.append(StoryLine(replica, phase or "boot", float(delay), text))
    return lines


class Demo:
    def __init__(self, out: TextIO, speed: float, story: Story) -> None:
        self.out = out
        self.speed = speed
        self.story = story
        self.started = time.monotonic()
        self.restart_requested = {name: asyncio.Event() for name in story.replicas}
        self.restarts = dict.fromkeys(story.replicas, 0)

    def restarts_summary(self) -> str:
        """Restarts by pod name, as the replicas were shown."""
        return ", ".join(
            f"{self.story.replicas[replica]} {count}" for replica, count in self.restarts.items()
        )

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
        name = self.story.replicas[replica]
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


async def _run(story: Story, listen: str, speed: float, keep_serving: bool, out: TextIO) -> None:
    host, port = parse_listen(listen)
    ports = {"A": port, "B": port + 1}
    for taken in ports.values():
        _check_port_free(host, taken)
    demo = Demo(out, speed, story)
    with tempfile.TemporaryDirectory(prefix="keycloak-sidecar-demo-") as folder:
        files = {r: os.path.join(folder, f"{name}.log") for r, name in story.replicas.items()}
        for path in files.values():
            _append(path, "")
        daemons: list[Daemon] = []
        tasks = [
            asyncio.create_task(
                serve(_settings(files[r], host, ports[r]), builtin_rules(), daemon_out=daemons),
                name=f"sidecar-{r}",
            )
            for r in story.replicas
        ]
        while len(daemons) < len(story.replicas) or not all(d.ready.is_set() for d in daemons):
            if any(t.done() for t in tasks):
                await asyncio.gather(*tasks)
            await asyncio.sleep(0.01)
        _introduce(demo, host, ports)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            watchers = [
                asyncio.create_task(demo.watch(session, r, ports[r]), name=f"watch-{r}")
                for r in story.replicas
            ]
            try:
                await demo.play(load_story(story), files)
                demo.say(
                    "replay finished: both replicas started, in one cluster, ready; "
                    f"restarts: {demo.restarts_summary()}"
                )
                if keep_serving:
                    await asyncio.Event().wait()
            finally:
                for task in watchers:
                    task.cancel()
                for daemon in daemons:
                    daemon.request_stop()
                await asyncio.gather(*watchers, *tasks, return_exceptions=True)


def _settings(log_file: str, host: str, port: int) -> Settings:
    base = load_settings(
        {},
        {
            "SIDECAR_KEYCLOAK_URL": "",
            "SIDECAR_NO_KUBERNETES": "true",
            "SIDECAR_LOG_LEVEL": "warning",
        },
    )
    return dataclasses.replace(base, log_file=log_file, listen=(host, port))


def _introduce(demo: Demo, host: str, ports: dict[str, int]) -> None:
    names = demo.story.replicas
    demo.say(demo.story.intro)
    demo.say(
        f"sidecar for {names['A']} on http://{host}:{ports['A']}/  "
        f"sidecar for {names['B']} on http://{host}:{ports['B']}/"
    )
    demo.say(
        f"try: curl -s localhost:{ports['B']}/readyz?verbose, or open "
        f"http://localhost:{ports['B']}/ in a browser  (Ctrl-C to stop)"
    )


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line, naming the port and the flag, when a demo port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortTakenError(
                f"port {port} on {host} is not available ({error.strerror or error}); "
                "choose other ports with --listen HOST:PORT (the demo uses PORT and PORT+1)"
            ) from None


def run(*, story: str = "2015", listen: str, speed: float, keep_serving: bool) -> int:
    """Entry point of ``keycloak-sidecar demo``; problems end it with one line and exit 2."""
    from sidecar import logjson

    logjson.configure("warning")
    try:
        parse_listen(listen)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(STORIES[story], listen, max(speed, 0.1), keep_serving, sys.stdout))
    except ValueError as error:
        sys.stderr.write(f"keycloak-sidecar demo: --listen={listen!r}: {error}\n")
        return 2
    except PortTakenError as error:
        sys.stderr.write(f"keycloak-sidecar demo: {error}\n")
        return 2
    return 0
