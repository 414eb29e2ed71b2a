"""A simulated Keycloak container: plays one boot of a scenario script as a real process.

Run by the kubelet emulator as the ``keycloak`` container's process (stdlib only, so it
starts in a few milliseconds).  Configuration comes from the environment the emulator
builds from the rendered manifest, plus a few test-only ``E2E_*`` variables:

``E2E_SCRIPT``      path of the scenario script (JSON, see ``scripts/README.md``)
``E2E_BOOT``        which boot of the script to play (the container's restartCount)
``E2E_SCALE``       time-scale factor: every ``after``/``every`` of the script is divided by it
``E2E_PORTS``       JSON object: container port -> local port (only 8080, 9000, 9990 are served)
``E2E_LOG_FILE``    the log file (the manifest's path, rewritten to the pod's tmp dir)
``E2E_CONTROL``     a file the harness appends event names to (``db_down``, ``heal`` ...);
                    each name runs the script's ``events[name]`` steps
``HOSTNAME``        the pod name, as in a real container

The script's lines are real Keycloak log lines.  Their leading timestamp (plain
``YYYY-MM-DD HH:MM:SS,mmm``, WildFly's time-only ``HH:MM:SS,mmm``, or a JSON
``timestamp``) is replaced by the current time in the same shape; ``{self}``,
``{member:POD}`` and ``{host}`` are replaced by Infinispan member names of this run.

Health endpoints start refused (the JVM is booting); a ``listen`` step opens them.  Each
endpoint (``started``, ``live``, ``ready``, ``realm``) answers one of: ``up`` (200),
``down`` (503 DOWN), ``db_down`` (503 with the database check DOWN), ``not_found`` (404),
``hang`` (no answer).  SIGTERM logs the era's shutdown lines and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Step = dict[str, Any]

DATABASE_CHECK = "Keycloak database connections async health check"
SERVED_PORTS = ("8080", "9000", "9990")
CONTROL_POLL_SECONDS = 0.05
_PLAIN_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}", re.M)
_TIME_ONLY_TS = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3}(?= )", re.M)
_JSON_TS = re.compile(r'"(@?timestamp)"\s*:\s*"[^"]*"')
_PLACEHOLDER = re.compile(r"\{(self|host|member:[a-z0-9.-]+)\}")
_SHUTDOWN = {
    "wildfly": (
        "08:42:58,959 INFO  [org.jboss.as.server] (Thread-1) WFLYSRV0220: Server shutdown has "
        "been requested via an OS signal",
    ),
    "quarkus": (
        "2023-03-19 10:58:11,468 INFO  [org.infinispan.CLUSTER] (Thread-9) ISPN000080: "
        "Disconnecting JGroups channel `ISPN`",
        "2023-03-19 10:58:11,722 INFO  [io.quarkus] (main) Keycloak stopped in 0.442s",
    ),
}


def member_name(pod: str, era: str) -> str:
    """WildFly names a member after the host; Quarkus appends a random number."""
    if era == "wildfly":
        return pod
    return f"{pod}-{zlib.crc32(pod.encode()) % 90000 + 10000}"


def restamp(line: str, now: datetime) -> str:
    """Give a real line the current time, in the line's own timestamp shape."""
    millis = f"{now.microsecond // 1000:03d}"
    line = _PLAIN_TS.sub(now.strftime("%Y-%m-%d %H:%M:%S,") + millis, line)
    line = _TIME_ONLY_TS.sub(now.strftime("%H:%M:%S,") + millis, line)
    iso = now.isoformat(timespec="milliseconds")
    return _JSON_TS.sub(lambda m: f'"{m.group(1)}":"{iso}"', line)


def render(line: str, pod: str, era: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "self":
            return member_name(pod, era)
        if key == "host":
            return pod
        return member_name(key.removeprefix("member:"), era)

    return _PLACEHOLDER.sub(replace, line)


def _body(kind: str, name: str) -> tuple[int, bytes]:
    if kind == "up" and name == "realm":
        realm = {"realm": "master", "public_key": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"}
        return 200, json.dumps(realm).encode()
    if kind == "not_found":
        return 404, b"<html><head><title>Error</title></head><body>Not Found</body></html>"
    checks: list[dict[str, Any]] = []
    if name == "ready":
        state = "DOWN" if kind == "db_down" else "UP"
        checks.append({"name": DATABASE_CHECK, "status": state})
        if kind == "db_down":
            checks[0]["data"] = {"Failing since": "2024-03-01 10:00:00,123"}
    status = "UP" if kind == "up" else "DOWN"
    code = 200 if kind == "up" else 503
    return code, json.dumps({"status": status, "checks": checks}).encode()


_ROUTES = {
    "/health/started": "started",
    "/health/live": "live",
    "/health/ready": "ready",
    "/health": "ready",
    "/auth/realms/master": "realm",
    "/realms/master": "realm",
}


@dataclass
class Keycloak:
    """One container run: its log, its endpoints and the script it plays."""

    pod: str
    era: str
    log_path: Path
    scale: float
    ports: dict[str, int]
    endpoints: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(("started", "live", "ready", "realm"), "down")
    )
    jgroups: Path | None = None
    templates: dict[str, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    servers: list[asyncio.Server] = field(default_factory=list)
    view: tuple[str, ...] = ()
    view_id: int = -1
    cluster_task: asyncio.Task[None] | None = None

    def log(self, text: str) -> None:
        line = restamp(render(text, self.pod, self.era), datetime.now(UTC).astimezone())
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    async def run(self, steps: list[Step]) -> int | None:
        """Play steps in order; an ``exit`` step returns its code."""
        for step in steps:
            await asyncio.sleep(float(step.get("after", 0.0)) / self.scale)
            code = await self.apply(step)
            if code is not None:
                return code
        return None

    async def apply(self, step: Step) -> int | None:
        if "log" in step:
            self.log(step["log"])
        if "repeat" in step:
            repeat = step["repeat"]
            for _ in range(int(repeat["count"])):
                self.log(repeat["log"])
                await asyncio.sleep(float(repeat["every"]) / self.scale)
        if "http" in step:
            self.endpoints.update(step["http"])
            self.changed.set()
            self.changed = asyncio.Event()
        if "listen" in step:
            await (self.open() if step["listen"] else self.close())
        if step.get("cluster") == "join":
            self.join_cluster()
        if step.get("cluster") == "leave":
            self.leave_cluster()
        if "exit" in step:
            return int(step["exit"])
        return None

    # ------------------------------------------------------------- JGroups, emulated
    # Every member of the scenario's cluster is a file <jgroups>/<pod> holding its member
    # name and join time.  A file <jgroups>/<pod>.isolated (written by the harness) cuts
    # that member off: it sees only itself, the others no longer see it.  Each process
    # logs a real-looking view line whenever the membership it can see changes.

    def join_cluster(self) -> None:
        assert self.jgroups is not None, "E2E_JGROUPS is not set"
        member = {"member": member_name(self.pod, self.era), "joined_ns": time.time_ns()}
        (self.jgroups / self.pod).write_text(json.dumps(member), encoding="utf-8")
        self.cluster_task = asyncio.get_running_loop().create_task(
            self.watch_cluster(), name="jgroups"
        )

    def leave_cluster(self) -> None:
        if self.cluster_task is not None:
            self.cluster_task.cancel()
            self.cluster_task = None
        if self.jgroups is not None:
            (self.jgroups / self.pod).unlink(missing_ok=True)

    def visible_members(self) -> tuple[str, ...]:
        assert self.jgroups is not None
        if (self.jgroups / f"{self.pod}.isolated").exists():
            return (member_name(self.pod, self.era),)
        members: list[tuple[int, str]] = []
        for path in self.jgroups.iterdir():
            if "." in path.name or (self.jgroups / f"{path.name}.isolated").exists():
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                entry = json.loads(path.read_text(encoding="utf-8"))
                members.append((int(entry["joined_ns"]), str(entry["member"])))
        return tuple(name for _, name in sorted(members))

    async def watch_cluster(self) -> None:
        while True:
            members = self.visible_members()
            if members and members != self.view:
                self.log_view(members)
            await asyncio.sleep(CONTROL_POLL_SECONDS)

    def log_view(self, members: tuple[str, ...]) -> None:
        previous, self.view = self.view, members
        if self.view_id < 0 and len(members) == 1 and "alone_line" in self.templates:
            self.log(self.templates["alone_line"])
        self.view_id = self.view_id + 1 if self.view_id >= 0 else (0 if len(members) == 1 else 1)
        view = f"[{members[0]}|{self.view_id}] ({len(members)}) [{', '.join(members)}]"
        self.log(self.templates["view_line"].replace("{view}", view))
        for node in members:
            if previous and node not in previous and "joined_line" in self.templates:
                self.log(self.templates["joined_line"].replace("{node}", node))
        for node in previous:
            if node not in members and "left_line" in self.templates:
                self.log(self.templates["left_line"].replace("{node}", node))

    async def open(self) -> None:
        if self.servers:
            return
        for port in SERVED_PORTS:
            if port in self.ports:
                server = await asyncio.start_server(self.serve, "127.0.0.1", self.ports[port])
                self.servers.append(server)

    async def close(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode().split("?", 1)[0].rstrip("/")
            name = _ROUTES.get(path)
            while name is not None and self.endpoints[name] == "hang":
                await self.changed.wait()
            code, body = _body(self.endpoints[name], name) if name else (404, b"")
            head = (
                f"HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()

    async def follow_control(self, control: Path, events: dict[str, list[Step]]) -> None:
        """Run ``events[name]`` for every name the harness appends to the control file."""
        offset = control.stat().st_size if control.exists() else 0
        while True:
            await asyncio.sleep(CONTROL_POLL_SECONDS)
            if not control.exists() or control.stat().st_size <= offset:
                continue
            with control.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
            offset += len(data)
            for name in data.decode().split():
                asyncio.get_running_loop().create_task(self.run(events.get(name, [])), name=name)


async def main() -> int:
    env = os.environ
    script = json.loads(Path(env["E2E_SCRIPT"]).read_text(encoding="utf-8"))
    boots: list[dict[str, Any]] = script["boots"]
    boot = boots[min(int(env.get("E2E_BOOT", "0")), len(boots) - 1)]
    keycloak = Keycloak(
        pod=env["HOSTNAME"],
        era=script["era"],
        log_path=Path(env["E2E_LOG_FILE"]),
        scale=float(env.get("E2E_SCALE", "1")),
        ports={k: int(v) for k, v in json.loads(env.get("E2E_PORTS", "{}")).items()},
        jgroups=Path(env["E2E_JGROUPS"]) if env.get("E2E_JGROUPS") else None,
        templates=script.get("cluster", {}),
    )
    keycloak.log_path.parent.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    control = loop.create_task(
        keycloak.follow_control(Path(env["E2E_CONTROL"]), script.get("events", {})),
        name="control",
    )
    player = loop.create_task(keycloak.run(boot["steps"]), name="player")
    stopper = loop.create_task(stop.wait(), name="stop")
    await asyncio.wait({player, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = player.result() if player.done() else None
    if code is None:
        await stopper  # no exit step: the JVM keeps running (broken or not) until killed
        for line in _SHUTDOWN[script["era"]]:
            keycloak.log(line)
        code = 0
    for task in (control, player, stopper):
        task.cancel()
    keycloak.leave_cluster()
    await keycloak.close()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
