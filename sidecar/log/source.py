"""Log input edge: one path followed like ``tail -F``, or standard input.

Both sources return *byte chunks of complete lines*: every line ends in ``\\n``, a trailing
``\\r`` before it is removed (CRLF folded to LF), and no line carries more than
``max_line_bytes`` bytes before its newline.  Bytes are passed through untouched otherwise
(invalid UTF-8 and NUL included); decoding happens later in the pipeline.

Framing works on blocks of at most ``max_line_bytes`` bytes.  Inside such a block every line
that starts after the block's first newline is necessarily shorter than the cap, so only the
first line (the carried partial line plus the block's start) can be too long.  That keeps the
hot path to a handful of whole-block ``find``/``rfind``/``replace`` calls with no Python loop
per line.

``LogFile.poll()`` is synchronous and reads at most ``max_bytes`` per call, so the caller may
run it on the event loop.  It never raises for ordinary file trouble: a missing file, a
permission problem or a replaced file shows up in ``present`` and ``last_error``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

logger = logging.getLogger(__name__)

_ONE_MIB = 1 << 20
DEFAULT_MAX_LINE_BYTES = 65536
#: bytes read per poll: bounds the memory of a burst (a few copies of it are alive at once);
#: below libc.DAEMON_MMAP_THRESHOLD_BYTES, so the heap reuses the blocks.  256 KiB against
#: 512 KiB: tail 1.46-1.54 vs 1.30-1.37M lines/s, burst peak 0.6 MiB lower (benchmarks)
DEFAULT_POLL_MAX_BYTES = 1 << 18
#: bytes of an over-long line that one poll may skip on top of ``max_bytes``: skipping is
#: not reading, and a poll that returns nothing makes the caller wait (a 10 MiB line would
#: cost 40 waits).  64 MiB are read and searched for a newline in a few tens of ms.
SKIP_PER_POLL_BYTES = 64 * _ONE_MIB
#: the first bytes of the file, compared on every poll: a copytruncate followed by an append
#: larger than the old size keeps the size above the offset but changes these
_HEAD_BYTES = 256


class LineFramer:
    """Turns bytes in any chunking into complete, capped, LF-terminated lines.

    Rule for one logical line: its content (bytes before ``\\n``) loses one trailing ``\\r``,
    is cut to ``max_line_bytes`` if longer, and is emitted followed by ``\\n``.  ``flush()``
    ends a pending partial line the same way (rotation, truncation, end of input).
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.max_line_bytes = max_line_bytes
        self.lines_truncated = 0
        self._pending = b""
        self._discarding = False

    @property
    def discarding(self) -> bool:
        """Inside the rest of a line that was already cut and emitted."""
        return self._discarding

    @property
    def pending_bytes(self) -> int:
        """Size of the partial line held back until its newline arrives."""
        return len(self._pending)

    def feed(self, data: bytes) -> bytes:
        """Add raw bytes; return the complete lines they finish (possibly ``b""``)."""
        cap = self.max_line_bytes
        if len(data) <= cap:
            return self._feed_block(data)
        if self._is_plain(data):
            return self._feed_plain(data)
        return b"".join(
            self._feed_block(data[start : start + cap]) for start in range(0, len(data), cap)
        )

    def _is_plain(self, data: bytes) -> bool:
        """No CR, nothing to discard, and no line that reaches the cap: nothing to change."""
        if self._discarding or b"\r" in data or b"\r" in self._pending:
            return False
        cap = self.max_line_bytes
        first_newline = data.find(b"\n", 0, cap + 1)
        if first_newline < 0 or len(self._pending) + first_newline >= cap:
            return False
        # hop from line to line a cap's width at a time: each window must hold a newline
        position = first_newline + 1
        while len(data) - position >= cap:
            newline = data.rfind(b"\n", position, position + cap)
            if newline < 0:
                return False
            position = newline + 1
        return True

    def _feed_plain(self, data: bytes) -> bytes:
        """Fast path for :meth:`_is_plain` data: at most one copy of the complete lines."""
        last_newline = data.rfind(b"\n")
        pending, self._pending = self._pending, data[last_newline + 1 :]
        if pending:
            return b"".join((pending, memoryview(data)[: last_newline + 1]))
        return data if last_newline == len(data) - 1 else data[: last_newline + 1]

    def flush(self) -> bytes:
        """End the pending partial line as a complete line (``b""`` if there is none)."""
        self._discarding = False
        pending = self._pending
        if not pending:
            return b""
        self._pending = b""
        if pending.endswith(b"\r"):
            pending = pending[:-1]
        return pending + b"\n"

    def _feed_block(self, block: bytes) -> bytes:
        if self._discarding:
            newline = block.find(b"\n")
            if newline < 0:
                return b""
            self._discarding = False
            block = block[newline + 1 :]
        last_newline = block.rfind(b"\n")
        if last_newline < 0:
            self._pending += block
            return self._cut_long_pending()
        complete = block if last_newline == len(block) - 1 else block[: last_newline + 1]
        if self._pending:
            lines = self._complete_first_line(complete)
        else:
            lines = complete.replace(b"\r\n", b"\n") if b"\r" in complete else complete
        self._pending = block[last_newline + 1 :]
        return lines

    def _complete_first_line(self, complete: bytes) -> bytes:
        """The carried partial line ends inside this block: the only line that may be long."""
        first_newline = complete.find(b"\n")
        first = (self._pending + complete[: first_newline + 1]).replace(b"\r\n", b"\n")
        if len(first) > self.max_line_bytes + 1:
            first = first[: self.max_line_bytes] + b"\n"
            self.lines_truncated += 1
        rest = complete[first_newline + 1 :]
        return first + (rest.replace(b"\r\n", b"\n") if b"\r" in rest else rest)

    def _cut_long_pending(self) -> bytes:
        """A partial line already past the cap is emitted now; its rest is discarded."""
        cap = self.max_line_bytes
        size = len(self._pending)
        if size <= cap or (size == cap + 1 and self._pending.endswith(b"\r")):
            return b""
        line = self._pending[:cap] + b"\n"
        self._pending = b""
        self._discarding = True
        self.lines_truncated += 1
        return line


class _LineSource:
    """What both sources share: the framer and the replay and error flags."""

    def __init__(self, max_line_bytes: int) -> None:
        self._framer = LineFramer(max_line_bytes)
        self._caught_up = False
        self._drained = False
        self._last_error = ""

    @property
    def drained(self) -> bool:
        """The latest poll stopped because there was nothing more to read now (not because
        of its byte budget): polling again at once would find nothing new."""
        return self._drained

    @property
    def caught_up(self) -> bool:
        """A read reached the end of what there is (end of file, no file, no more input) at
        least once: the replay of the history is done."""
        return self._caught_up

    @property
    def lines_truncated(self) -> int:
        return self._framer.lines_truncated

    @property
    def last_error(self) -> str:
        """``""``, or the last I/O problem seen by the latest poll (cleared by a clean poll)."""
        return self._last_error

    def _feed(self, data: bytes, chunks: list[bytes]) -> bool:
        """Frame ``data`` into ``chunks``; True when it was only skipped (an over-long line)."""
        lines = self._framer.feed(data)
        if lines:
            chunks.append(lines)
            return False
        return self._framer.discarding


class LogFile(_LineSource):
    """One path as one perpetual stream of lines, across rotation, truncation and absence.

    Starts at offset 0 of the existing file, then follows appends.  Each poll compares the
    file's first bytes with those read (a copytruncate followed by an append larger than the
    old size changes them).  At end of file it checks: size below the read offset on the same
    inode means copytruncate (flush the partial line, restart at 0); a different inode at the
    path means rotation (drain the old file, flush, open the new one from 0); no file at the
    path means wait, keeping the old file open so that late writes to it are still read.  A
    directory at the path is no log: not present, and a file there later is opened.
    """

    def __init__(
        self,
        path: str,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        read_block_bytes: int | None = None,
    ) -> None:
        if read_block_bytes is None:
            read_block_bytes = min(max_line_bytes, _ONE_MIB)
        if read_block_bytes < 1:
            raise ValueError("read_block_bytes must be at least 1")
        super().__init__(max_line_bytes)
        self.path = path
        self._read_block_bytes = read_block_bytes
        self._fd: int | None = None
        self._identity: tuple[int, int] = (0, 0)
        self._is_regular = True
        self._offset = 0
        self._path_present = False
        self._recheck_before_switch = False
        self._closed = False
        self._rotations = 0
        self._truncations = 0
        self._error_in_poll = False
        self._mtime_wall: float | None = None
        self._condition = ""
        self._head = b""

    @property
    def present(self) -> bool:
        """The path exists and the file behind it is open."""
        return self._fd is not None and self._path_present

    @property
    def rotations(self) -> int:
        return self._rotations

    @property
    def truncations(self) -> int:
        return self._truncations

    @property
    def mtime_wall(self) -> float | None:
        """``st_mtime`` of the open file, as of its opening or the last end of file."""
        return self._mtime_wall

    def poll(self, max_bytes: int = DEFAULT_POLL_MAX_BYTES) -> bytes:
        """Read at most ``max_bytes`` from the file; return the complete lines found."""
        if self._closed:
            return b""
        self._error_in_poll = False
        self._drained = False
        chunks: list[bytes] = []
        try:
            if self._fd is not None:
                self._check_rewritten(self._fd, chunks)
            if self._fd is not None or self._open_path():
                self._read_into(chunks, max(1, max_bytes))
        except OSError as error:
            self._record_error("cannot read", error)
        if not self._error_in_poll:
            self._last_error = ""
        return b"".join(chunks)

    def close(self) -> None:
        """Release the file; later polls return ``b""``."""
        self._closed = True
        self._close_fd()

    def _check_rewritten(self, fd: int, chunks: list[bytes]) -> None:
        """Copytruncate seen by content: the file's first bytes are no longer those read."""
        head = self._head
        if not self._is_regular or not head or os.pread(fd, len(head), 0) == head:
            return
        self._restart_truncated(fd, chunks, os.fstat(fd).st_size)

    def _read_into(self, chunks: list[bytes], budget_bytes: int) -> None:
        skip_bytes = SKIP_PER_POLL_BYTES
        while budget_bytes > 0 and self._fd is not None:
            size_bytes = min(self._read_block_bytes, budget_bytes)
            try:
                data = os.read(self._fd, size_bytes)
            except BlockingIOError:  # a FIFO with a writer but no data yet
                data = b""
            if data:
                if self._offset < _HEAD_BYTES:
                    self._head += data[: _HEAD_BYTES - self._offset]
                self._offset += len(data)
                self._recheck_before_switch = False
                if self._feed(data, chunks) and skip_bytes > 0:
                    skip_bytes -= len(data)  # skipped, not read: the budget stays
                else:
                    budget_bytes -= len(data)
                if len(data) == size_bytes or not self._is_regular:
                    continue
                # a short read of a regular file stopped at its end: no second read that
                # only returns b"" (one line per write is one read per wake-up)
            self._caught_up = True
            if not self._handle_eof(self._fd, chunks):
                self._drained = True
                return

    def _handle_eof(self, fd: int, chunks: list[bytes]) -> bool:
        """Decide what end of file means; return True to keep reading."""
        info = os.fstat(fd)
        self._mtime_wall = info.st_mtime
        if self._is_regular and info.st_size < self._offset:
            self._restart_truncated(fd, chunks, info.st_size)
            return True
        try:
            path_info = os.stat(self.path)
        except FileNotFoundError:
            self._path_present = False
            self._note("removed", logging.INFO, "log file removed; waiting for a new one")
            return False
        except OSError as error:
            self._record_error("cannot stat", error)
            return False
        if (path_info.st_dev, path_info.st_ino) == self._identity:
            self._path_present = True
            self._note("open", logging.INFO, "log file present again")
            return False
        if not self._recheck_before_switch:
            # The writer may still have been appending to the old file: one more pass.
            self._recheck_before_switch = True
            return True
        return self._switch_to_new_file(chunks)

    def _restart_truncated(self, fd: int, chunks: list[bytes], size_bytes: int) -> None:
        tail = self._framer.flush()
        if tail:
            chunks.append(tail)
        logger.info(
            "log file truncated; reading from the start",
            extra={"log_path": self.path, "offset_bytes": self._offset, "size_bytes": size_bytes},
        )
        os.lseek(fd, 0, os.SEEK_SET)
        self._offset = 0
        self._head = b""
        self._truncations += 1

    def _switch_to_new_file(self, chunks: list[bytes]) -> bool:
        tail = self._framer.flush()
        if tail:
            chunks.append(tail)
        self._close_fd()
        self._rotations += 1
        logger.info("log file rotated; opening the new file", extra={"log_path": self.path})
        return self._open_path()

    def _open_path(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            self._path_present = False
            self._caught_up = True  # no existing file: nothing to replay
            self._note("absent", logging.INFO, "log file absent; waiting for it")
            return False
        except OSError as error:
            self._record_error("cannot open", error)
            return False
        try:
            info = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            self._record_error("cannot stat", error)
            return False
        if stat.S_ISDIR(info.st_mode):
            # not a log: wait for a file at the path (the source is not up meanwhile)
            os.close(fd)
            self._path_present = False
            self._caught_up = True
            self._record_error("cannot open", IsADirectoryError(errno.EISDIR, "is a directory"))
            return False
        self._fd = fd
        self._head = b""
        self._identity = (info.st_dev, info.st_ino)
        self._is_regular = stat.S_ISREG(info.st_mode)
        self._offset = 0
        self._mtime_wall = info.st_mtime
        self._path_present = True
        self._recheck_before_switch = False
        self._note("open", logging.INFO, "log file opened")
        return True

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _record_error(self, action: str, error: OSError) -> None:
        self._error_in_poll = True
        self._last_error = f"{action} {self.path}: {error.strerror or error}"
        self._note(f"error:{action}:{error.errno}", logging.WARNING, "log file I/O problem")

    def _note(self, condition: str, level: int, message: str) -> None:
        """Log once per transition, never once per poll."""
        if condition == self._condition:
            return
        self._condition = condition
        logger.log(level, message, extra={"log_path": self.path, "detail": self._last_error})


class StdinReader(_LineSource):
    """``--log-file -``: lines from a pipe or terminal, read without blocking.

    Interchangeable with ``LogFile``: same framing and the same attributes (no rotation or
    truncation can happen on a stream).  At end of input the partial line is flushed.
    """

    def __init__(self, fd: int = 0, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes)
        self._fd = fd
        self._read_block_bytes = min(max_line_bytes, _ONE_MIB)
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        self._eof = False
        self._closed = False
        self.rotations = 0
        self.truncations = 0
        self.mtime_wall: float | None = None

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def present(self) -> bool:
        return not (self._eof or self._closed)

    def fileno(self) -> int:
        return self._fd

    def poll(self, max_bytes: int = DEFAULT_POLL_MAX_BYTES) -> bytes:
        """Read what is available now (at most ``max_bytes``); return complete lines."""
        if self._eof or self._closed:
            return b""
        chunks: list[bytes] = []
        budget_bytes = max(1, max_bytes)
        skip_bytes = SKIP_PER_POLL_BYTES
        self._drained = False
        while budget_bytes > 0:
            data = self._read(min(self._read_block_bytes, budget_bytes))
            if not data:
                self._drained = True
                break
            if self._feed(data, chunks) and skip_bytes > 0:
                skip_bytes -= len(data)  # skipped, not read: the budget stays
            else:
                budget_bytes -= len(data)
        if self._eof:
            chunks.append(self._framer.flush())
        return b"".join(chunks)

    def close(self) -> None:
        """Restore the descriptor's blocking mode; the descriptor itself is not ours to close."""
        if self._closed:
            return
        self._closed = True
        try:
            os.set_blocking(self._fd, self._was_blocking)
        except OSError:
            logger.debug("cannot restore blocking mode", extra={"fd": self._fd})

    def _read(self, size_bytes: int) -> bytes:
        """One read; ``b""`` when nothing is available now, at end of input, or on error."""
        try:
            data = os.read(self._fd, size_bytes)
        except BlockingIOError:
            self._caught_up = True
            return b""
        except OSError as error:
            message = f"cannot read standard input: {error.strerror or error}"
            if message != self._last_error:
                logger.warning("standard input I/O problem", extra={"detail": message})
            self._last_error = message
            return b""
        if not data:
            self._eof = True
            self._caught_up = True
            logger.info("standard input closed")
        else:
            self._last_error = ""
        return data
