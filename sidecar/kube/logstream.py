"""The Keycloak container's log followed through the API (``--log-source kubernetes``)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from datetime import UTC, datetime

from sidecar.clock import sleep_until
from sidecar.kube.api import (
    KubeApi,
    KubeError,
)
from sidecar.kube.world import KubeTuning, World, backoff_seconds

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_timestamp_ns(text: bytes) -> int | None:
    """RFC 3339 (nano) as the kubelet prints it -> integer nanoseconds since the epoch."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    offset = "+00:00" if zone == b"Z" else zone.decode()
    seconds = int(datetime.fromisoformat(base.decode() + offset).astimezone(UTC).timestamp())
    return seconds * 1_000_000_000 + int((fraction or b"").ljust(9, b"0"))


class LogCursor:
    """Frames ``--timestamps`` log output into lines; drops lines already delivered.

    Lines are ordered by their timestamp; ``count_at_last`` remembers how many lines with
    the newest timestamp went out, so a re-read (reconnect with ``sinceSeconds``, the
    previous container) delivers neither a duplicate nor skips a line.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.last_ns: int | None = None
        self.count_at_last = 0
        self._stream_at_last = 0
        self._partial = b""
        self._overlong = False

    def new_stream(self) -> None:
        self._stream_at_last = 0
        self._partial = b""
        self._overlong = False

    def feed(self, chunk: bytes, *, final: bool = False) -> bytes:
        """Complete new lines (prefix stripped, ``\\n``-terminated); ``final`` flushes."""
        pieces = (self._partial + chunk).split(b"\n")
        self._partial = pieces.pop()
        if final and self._partial:
            pieces.append(self._partial)
            self._partial = b""
        limit = self.max_line_bytes + 64
        if len(self._partial) > 2 * limit:
            self._partial, self._overlong = self._partial[:limit], True
        out = []
        for raw in pieces:
            line = self._accept(raw.rstrip(b"\r"))
            if line is not None:
                out.append(line[: self.max_line_bytes] + b"\n")
            self._overlong = False
        return b"".join(out)

    def _accept(self, raw: bytes) -> bytes | None:
        stamp, _, text = raw.partition(b" ")
        ts_ns = parse_timestamp_ns(stamp)
        if ts_ns is None:
            return raw
        if self.last_ns is None or ts_ns > self.last_ns:
            self.last_ns, self.count_at_last, self._stream_at_last = ts_ns, 1, 1
            return text
        if ts_ns < self.last_ns:
            return None
        self._stream_at_last += 1
        if self._stream_at_last <= self.count_at_last:
            return None
        self.count_at_last = self._stream_at_last
        return text


async def log_task(world: World, api: KubeApi, stop: asyncio.Event, tuning: KubeTuning) -> None:
    """Follow the Keycloak container's log; across restarts, read the old one's tail first."""
    cursor = LogCursor(world.settings.log_max_line_bytes)
    rng, attempt, reading = random.Random(), 0, ""  # noqa: S311 - jitter only
    await world.own_seen.wait()
    while not stop.is_set():
        current = world.own_container[1] if world.own_container else ""
        try:
            if reading and current and current != reading:
                await _read_log(world, api, cursor, tuning, previous=True)
            reading = current
            await _read_log(world, api, cursor, tuning, previous=False)
            attempt = 0
            await sleep_until(stop, tuning.log_reconnect_seconds)
        except KubeError as error:
            world.fail(error.operation, error.code)
            attempt += 1
            await sleep_until(stop, backoff_seconds(attempt, tuning, rng))


async def _read_log(
    world: World, api: KubeApi, cursor: LogCursor, tuning: KubeTuning, *, previous: bool
) -> None:
    since = None
    if cursor.last_ns is not None:
        age_seconds = world.clock.wall() - cursor.last_ns / 1e9
        since = max(1, math.ceil(age_seconds) + tuning.log_since_margin_seconds)
    cursor.new_stream()
    async for chunk in api.follow_log(
        world.identity.namespace,
        world.identity.pod_name,
        world.settings.keycloak_container,
        since_seconds=since,
        previous=previous,
        chunk_timeout_seconds=tuning.log_idle_seconds,
    ):
        world.ok("pods_log")
        if chunk is None:
            world.sink.log_idle()
            continue
        lines = cursor.feed(chunk)
        if lines:
            world.sink.feed_log(lines)
    lines = cursor.feed(b"", final=True)
    if lines:
        world.sink.feed_log(lines)
    world.sink.log_idle()
