"""Wake the log follower when its file may have changed: Linux inotify via ctypes, or polling.

The watch is on the file's *directory*, so creation, rename and deletion of the file are seen
even while the file is absent.  Any change in the directory wakes the waiter; the follower's
``poll()`` then finds out what happened.  Without inotify (another OS, no libc symbol, no
watch left, the directory missing) ``wait()`` simply returns after the poll interval.

The reader stays registered from the first ``wait()`` to ``close()``: a wake-up drains the
inotify descriptor and sets the event, so a busy log costs at most one drain per event-loop
round.  (It used to be one-shot, unregistered on every wake-up and registered again by the
next ``wait()``: two ``epoll_ctl`` calls and the selector's bookkeeping per log line when
Keycloak writes its lines one at a time, benchmarks/trickle.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import struct

from sidecar import libc

logger = logging.getLogger(__name__)

_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_WATCH_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_EVENT_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, name length
_READ_BYTES = 65536
#: the longest name an event carries (NAME_MAX + 1, padded)
_NAME_MAX_BYTES = 256


class InotifyApi:
    """The libc calls, resolved once; raises ``OSError`` where inotify does not exist."""

    def __init__(self) -> None:
        try:
            c_library = libc.load()
            self._init1 = c_library.inotify_init1
            self._add_watch = c_library.inotify_add_watch
            self._rm_watch = c_library.inotify_rm_watch
        except (AttributeError, TypeError) as error:
            raise OSError(f"inotify unavailable: {error}") from error
        self._init1.argtypes = [ctypes.c_int]
        self._init1.restype = ctypes.c_int
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add_watch.restype = ctypes.c_int
        self._rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm_watch.restype = ctypes.c_int

    def init(self) -> int:
        return _checked(self._init1(_IN_NONBLOCK | _IN_CLOEXEC))

    def add_watch(self, fd: int, directory: str) -> int:
        return _checked(self._add_watch(fd, os.fsencode(directory), _WATCH_MASK))

    def rm_watch(self, fd: int, wd: int) -> None:
        _checked(self._rm_watch(fd, wd))


def _checked(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def load_inotify() -> InotifyApi:
    """Seam for tests: replace to simulate a platform without inotify."""
    return InotifyApi()


def _watch_flags(buffer: bytes, wd: int | None) -> int:
    """OR of the masks of one read's events for watch ``wd`` (few: the kernel coalesces)."""
    flags = 0
    offset = 0
    size = len(buffer)
    while offset + _EVENT_HEADER.size <= size:
        event_wd, mask, _cookie, name_bytes = _EVENT_HEADER.unpack_from(buffer, offset)
        if event_wd == wd:
            flags |= mask
        offset += _EVENT_HEADER.size + name_bytes
    return flags


class FileWatcher:
    """Wakes a waiter when the file's directory changes, or after the poll interval."""

    def __init__(
        self, path: str, *, poll_interval_seconds: float, use_inotify: bool = True
    ) -> None:
        if poll_interval_seconds <= 0:
            raise ValueError("poll_interval_seconds must be positive")
        self.path = path
        self._directory = os.path.dirname(os.path.abspath(path))
        self._poll_interval_seconds = poll_interval_seconds
        self._api: InotifyApi | None = None
        self._fd: int | None = None
        self._wd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._armed = False
        self._closed = False
        self._condition = ""
        if use_inotify:
            self._start_inotify()
        else:
            self._note("disabled", "inotify disabled; polling the log file")

    @property
    def uses_inotify(self) -> bool:
        """True while a directory watch is active (False: pure polling)."""
        return self._wd is not None

    async def wait(self, timeout_seconds: float | None = None) -> None:
        """Return on a change, or after ``min(timeout_seconds, poll interval)``."""
        limit_seconds = self._poll_interval_seconds
        if timeout_seconds is not None:
            limit_seconds = max(0.0, min(timeout_seconds, limit_seconds))
        changed = self._prepare()
        if not changed.is_set():
            # a plain timer that sets the event: cheaper than asyncio.timeout's cancellation
            timer = asyncio.get_running_loop().call_later(limit_seconds, changed.set)
            try:
                await changed.wait()
            finally:
                timer.cancel()
        changed.clear()

    def close(self) -> None:
        """Unregister from the loop and release the inotify descriptor."""
        self._closed = True
        self._disarm()
        self._loop = None
        fd, self._fd = self._fd, None
        self._wd = None
        if fd is not None:
            os.close(fd)

    def _start_inotify(self) -> None:
        try:
            self._api = load_inotify()
            self._fd = self._api.init()
        except OSError as error:
            self._api = None
            self._note("unavailable", "inotify unavailable; polling the log file", error)
            return
        self._try_watch()

    def _try_watch(self) -> None:
        if self._api is None or self._fd is None or self._wd is not None:
            return
        try:
            self._wd = self._api.add_watch(self._fd, self._directory)
        except OSError as error:
            self._note(f"no-watch:{error.errno}", "cannot watch the log directory; polling", error)
            return
        self._note("watching", "watching the log directory")

    def _prepare(self) -> asyncio.Event:
        """Bind to the running loop, retry a missing watch, and register the reader."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._changed is None:
            self._disarm()
            self._loop = loop
            self._changed = asyncio.Event()
        if not self._closed:
            self._try_watch()
            self._arm(loop)
        return self._changed

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._armed or self._fd is None:
            return
        try:
            loop.add_reader(self._fd, self._on_readable)
        except (NotImplementedError, OSError, ValueError) as error:
            self._note("no-reader", "event loop cannot watch descriptors; polling", error)
            self.close()
            return
        self._armed = True

    def _disarm(self) -> None:
        loop = self._loop
        if self._armed and loop is not None and self._fd is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
        self._armed = False

    def _on_readable(self) -> None:
        try:
            flags = self._drain()
        except OSError as error:
            self._note("read-failed", "inotify read failed; polling", error)
            self.close()
            flags = 0
        if flags & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
            self._forget_watch()
        if self._changed is not None:
            self._changed.set()

    def _drain(self) -> int:
        flags = 0
        while self._fd is not None:
            try:
                buffer = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                break
            flags |= _watch_flags(buffer, self._wd)
            if len(buffer) < _READ_BYTES - _EVENT_HEADER.size - _NAME_MAX_BYTES:
                # room was left for another event: the queue is empty (a later event makes
                # the descriptor readable again), no read that only meets EAGAIN
                break
        return flags

    def _forget_watch(self) -> None:
        """The directory went away or moved: watch the path again at the next wait()."""
        wd, self._wd = self._wd, None
        if wd is not None and self._api is not None and self._fd is not None:
            with contextlib.suppress(OSError):  # already gone when the kernel sent IN_IGNORED
                self._api.rm_watch(self._fd, wd)
        self._note("lost", "log directory watch lost; will retry")

    def _note(self, condition: str, message: str, error: Exception | None = None) -> None:
        """Log once per transition."""
        if condition == self._condition:
            return
        self._condition = condition
        detail = "" if error is None else str(error)
        level = logging.INFO if error is None else logging.WARNING
        logger.log(level, message, extra={"log_directory": self._directory, "detail": detail})
