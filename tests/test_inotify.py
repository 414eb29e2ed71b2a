"""FileWatcher: a real directory, real inotify, and the polling fallback.

Waits use a long poll interval, so a prompt return proves inotify woke the waiter; the
``asyncio.timeout`` around each wait is only a guard against hangs, never a timing check.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sidecar.log import watch as inotify
from sidecar.log.source import LogFile
from sidecar.log.watch import FileWatcher

HANG_GUARD_SECONDS = 10.0
LONG_POLL_SECONDS = 60.0  # longer than the guard: only an inotify wake-up can end a wait
SHORT_POLL_SECONDS = 0.02

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux inotify")


def inotify_fds() -> set[int]:
    """This process's open inotify descriptors (listing /proc itself opens a transient fd)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue
        if target == "anon_inode:inotify":
            found.add(int(name))
    return found


async def wait_with_guard(watcher: FileWatcher, timeout_seconds: float | None = None) -> None:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        await watcher.wait(timeout_seconds)


async def wait_after(watcher: FileWatcher, action: Callable[[], object]) -> None:
    """Arm the watcher, then run ``action`` from the loop while the waiter is waiting."""
    asyncio.get_running_loop().call_soon(action)
    await wait_with_guard(watcher)


@pytest.fixture
async def settled_watcher(tmp_path: Path) -> AsyncIterator[FileWatcher]:
    """A watcher on tmp_path/keycloak.log whose queue of past events is already drained."""
    watcher = FileWatcher(str(tmp_path / "keycloak.log"), poll_interval_seconds=LONG_POLL_SECONDS)
    assert watcher.uses_inotify
    await wait_with_guard(watcher, timeout_seconds=0)
    yield watcher
    watcher.close()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


async def test_wait_returns_after_write(tmp_path: Path, settled_watcher: FileWatcher) -> None:
    log_path = tmp_path / "keycloak.log"
    append(log_path, b"created\n")
    await wait_with_guard(settled_watcher)  # event already queued before wait()
    await wait_after(settled_watcher, lambda: append(log_path, b"appended\n"))


async def test_file_created_later(tmp_path: Path, settled_watcher: FileWatcher) -> None:
    log_path = tmp_path / "keycloak.log"
    assert not log_path.exists()
    await wait_after(settled_watcher, lambda: append(log_path, b"first line\n"))
    assert log_path.exists()


async def test_rename_and_delete_wake(tmp_path: Path, settled_watcher: FileWatcher) -> None:
    log_path = tmp_path / "keycloak.log"
    append(log_path, b"x\n")
    await wait_with_guard(settled_watcher)
    await wait_after(settled_watcher, lambda: log_path.rename(tmp_path / "keycloak.log.1"))
    await wait_after(settled_watcher, (tmp_path / "keycloak.log.1").unlink)


async def test_directory_created_later(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    watcher = FileWatcher(str(directory / "keycloak.log"), poll_interval_seconds=SHORT_POLL_SECONDS)
    assert not watcher.uses_inotify
    await wait_with_guard(watcher)  # polls, no exception
    directory.mkdir()
    await wait_with_guard(watcher, timeout_seconds=0)
    assert watcher.uses_inotify
    watcher.close()


async def test_directory_removed_then_recreated(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    watcher = FileWatcher(str(directory / "keycloak.log"), poll_interval_seconds=LONG_POLL_SECONDS)
    assert watcher.uses_inotify
    await wait_after(watcher, directory.rmdir)
    await wait_with_guard(watcher, timeout_seconds=0)  # the kernel's IN_IGNORED may come apart
    assert not watcher.uses_inotify
    directory.mkdir()
    await wait_with_guard(watcher, timeout_seconds=0)
    assert watcher.uses_inotify
    await wait_with_guard(watcher, timeout_seconds=0)
    await wait_after(watcher, lambda: append(directory / "keycloak.log", b"again\n"))
    watcher.close()


async def test_fallback_polling_when_disabled(tmp_path: Path) -> None:
    before = inotify_fds()
    watcher = FileWatcher(
        str(tmp_path / "keycloak.log"), poll_interval_seconds=SHORT_POLL_SECONDS, use_inotify=False
    )
    assert not watcher.uses_inotify
    assert inotify_fds() == before
    await wait_with_guard(watcher)
    await wait_with_guard(watcher, timeout_seconds=0)
    watcher.close()


async def test_fallback_when_inotify_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_inotify() -> inotify.InotifyApi:
        raise OSError("inotify_init1: no such symbol")

    monkeypatch.setattr(inotify, "load_inotify", no_inotify)
    watcher = FileWatcher(str(tmp_path / "keycloak.log"), poll_interval_seconds=SHORT_POLL_SECONDS)
    assert not watcher.uses_inotify
    append(tmp_path / "keycloak.log", b"x\n")
    await wait_with_guard(watcher)
    watcher.close()


async def test_close_releases_fd_and_reader(tmp_path: Path) -> None:
    before = inotify_fds()
    watcher = FileWatcher(str(tmp_path / "keycloak.log"), poll_interval_seconds=LONG_POLL_SECONDS)
    (inotify_fd,) = inotify_fds() - before
    await wait_with_guard(watcher, timeout_seconds=0)  # registers the reader on this loop
    loop = asyncio.get_running_loop()
    watcher.close()
    assert inotify_fd not in inotify_fds()
    assert not loop.remove_reader(inotify_fd)
    assert not watcher.uses_inotify
    watcher.close()
    await wait_with_guard(watcher, timeout_seconds=0)  # after close: no exception


def test_rejects_nonpositive_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileWatcher(str(tmp_path / "x.log"), poll_interval_seconds=0)


async def test_follows_log_through_rotation(tmp_path: Path) -> None:
    """LogFile + FileWatcher as the tail worker drives them: wait, then poll."""
    log_path = tmp_path / "keycloak.log"
    watcher = FileWatcher(str(log_path), poll_interval_seconds=LONG_POLL_SECONDS)
    log = LogFile(str(log_path))
    received = bytearray()

    def rotate() -> None:
        log_path.rename(tmp_path / "keycloak.log.1")
        append(log_path, b"after rotation\n")

    steps: list[Callable[[], object]] = [
        lambda: append(log_path, b"boot\n"),
        lambda: append(log_path, b"started\n"),
        rotate,
    ]
    for step in steps:
        await wait_after(watcher, step)
        received += log.poll()
    assert bytes(received) == b"boot\nstarted\nafter rotation\n"
    assert log.rotations == 1
    log.close()
    watcher.close()
