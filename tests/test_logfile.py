"""LogFile / StdinReader / LineFramer: real files and pipes, ``poll()`` called directly."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.log.source import LineFramer, LogFile, StdinReader

NOBODY_UID = 65534


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def lines_of(data: bytes) -> list[bytes]:
    assert data == b"" or data.endswith(b"\n")
    return [line + b"\n" for line in data.split(b"\n")[:-1]]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "keycloak.log"


@pytest.fixture
def follow(log_path: Path) -> Iterator[LogFile]:
    log = LogFile(str(log_path))
    yield log
    log.close()


# --- appends and framing ---------------------------------------------------------------


def test_append(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"one\ntwo\n")
    assert follow.poll() == b"one\ntwo\n"
    assert follow.caught_up
    assert follow.present
    assert follow.poll() == b""
    append(log_path, b"three\n")
    assert follow.poll() == b"three\n"
    assert (follow.rotations, follow.truncations, follow.lines_truncated) == (0, 0, 0)
    assert follow.last_error == ""
    assert follow.mtime_wall == pytest.approx(log_path.stat().st_mtime)


def test_starts_at_offset_zero_of_existing_file(log_path: Path) -> None:
    append(log_path, b"old boot line\n")
    log = LogFile(str(log_path))
    assert not log.caught_up
    assert log.poll() == b"old boot line\n"
    assert log.caught_up
    log.close()


def test_partial_line_then_completion(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"first\nsec")
    assert follow.poll() == b"first\n"
    append(log_path, b"ond hal")
    assert follow.poll() == b""
    append(log_path, b"f\nthird")
    assert follow.poll() == b"second half\n"
    append(log_path, b"\n")
    assert follow.poll() == b"third\n"


def test_crlf_folded(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"windows\r\nline two\r")
    assert follow.poll() == b"windows\n"
    append(log_path, b"\nbare\rcarriage\n")
    assert follow.poll() == b"line two\nbare\rcarriage\n"


def test_nul_and_invalid_utf8_pass_through(log_path: Path, follow: LogFile) -> None:
    data = b"nul\x00byte\n\xff\xfe not utf-8 \xc3\x28\n\xe2\x82\xac euro\n"
    append(log_path, data)
    assert follow.poll() == data


# --- absence, rotation, truncation -----------------------------------------------------


def test_absent_at_start_then_appears(log_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.log.source")
    log = LogFile(str(log_path))
    for _ in range(5):
        assert log.poll() == b""
    assert not log.present
    assert log.caught_up  # nothing to replay
    assert log.last_error == ""
    assert sum("absent" in record.getMessage() for record in caplog.records) == 1
    append(log_path, b"hello\n")
    assert log.poll() == b"hello\n"
    assert log.present
    assert log.rotations == 0
    log.close()


def test_rotation_rename_create_drains_old_fd(log_path: Path, follow: LogFile) -> None:
    writer = log_path.open("ab", buffering=0)
    writer.write(b"a1\na2\n")
    assert follow.poll() == b"a1\na2\n"
    rotated = log_path.with_name("keycloak.log.1")
    log_path.rename(rotated)
    writer.write(b"a3 written after the rename\n")  # still the old file
    append(log_path, b"b1\n")
    writer.write(b"a4 also late\n")
    writer.close()
    assert follow.poll() == b"a3 written after the rename\na4 also late\nb1\n"
    assert follow.rotations == 1
    append(log_path, b"b2\n")
    assert follow.poll() == b"b2\n"
    assert follow.rotations == 1


def test_rename_then_path_missing_keeps_reading_old_file(log_path: Path, follow: LogFile) -> None:
    writer = log_path.open("ab", buffering=0)
    writer.write(b"a1\n")
    assert follow.poll() == b"a1\n"
    log_path.rename(log_path.with_name("keycloak.log.1"))
    writer.write(b"a2\n")
    assert follow.poll() == b"a2\n"
    assert not follow.present
    writer.write(b"a3\n")
    writer.close()
    append(log_path, b"b1\n")
    assert follow.poll() == b"a3\nb1\n"
    assert follow.present
    assert follow.rotations == 1


def test_copytruncate(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"before one\nbefore two\npartial")
    assert follow.poll() == b"before one\nbefore two\n"
    os.truncate(log_path, 0)
    assert follow.poll() == b"partial\n"
    assert follow.truncations == 1
    append(log_path, b"after\n")
    assert follow.poll() == b"after\n"
    assert follow.rotations == 0
    assert follow.truncations == 1


def test_delete_and_recreate(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"old\n")
    assert follow.poll() == b"old\n"
    log_path.unlink()
    append(log_path, b"new\n")
    assert follow.poll() == b"new\n"
    assert follow.rotations == 1
    assert follow.present


def test_deleted_not_recreated(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"whole\nhalf a li")
    assert follow.poll() == b"whole\n"
    log_path.unlink()
    for _ in range(3):
        assert follow.poll() == b""
    assert not follow.present
    assert follow.last_error == ""
    append(log_path, b"fresh\n")
    assert follow.poll() == b"half a li\nfresh\n"
    assert follow.rotations == 1


def test_rotation_while_partial_pending(log_path: Path, follow: LogFile) -> None:
    append(log_path, b"done\npending without newline")
    assert follow.poll() == b"done\n"
    log_path.rename(log_path.with_name("keycloak.log.1"))
    append(log_path, b"new file\n")
    assert follow.poll() == b"pending without newline\nnew file\n"
    assert follow.rotations == 1


def test_close_stops_following(log_path: Path) -> None:
    append(log_path, b"x\n")
    log = LogFile(str(log_path))
    log.close()
    assert log.poll() == b""
    assert not log.present
    log.close()


# --- long lines, big files, bounds -----------------------------------------------------


def test_long_line_cut_and_counted(log_path: Path) -> None:
    log = LogFile(str(log_path), max_line_bytes=10)
    append(log_path, b"x" * 25 + b"\nnext line\n")
    assert log.poll() == b"x" * 10 + b"\nnext line\n"
    assert log.lines_truncated == 1
    log.close()


def test_long_line_arriving_in_pieces(log_path: Path) -> None:
    log = LogFile(str(log_path), max_line_bytes=10)
    append(log_path, b"0123456")
    assert log.poll() == b""
    append(log_path, b"789abcdef")
    assert log.poll() == b"0123456789\n"
    append(log_path, b"ghijkl")
    assert log.poll() == b""
    append(log_path, b"mn\nok\n")
    assert log.poll() == b"ok\n"
    assert log.lines_truncated == 1
    log.close()


def test_line_exactly_at_cap(log_path: Path) -> None:
    log = LogFile(str(log_path), max_line_bytes=10)
    append(log_path, b"A" * 10 + b"\n" + b"B" * 10 + b"\r\n" + b"C" * 11 + b"\n")
    assert log.poll() == b"A" * 10 + b"\n" + b"B" * 10 + b"\n" + b"C" * 10 + b"\n"
    assert log.lines_truncated == 1
    log.close()


def test_big_existing_file_several_blocks(log_path: Path) -> None:
    rng = random.Random(7)
    lines = [b"line %d " % i + b"y" * rng.randrange(0, 300) + b"\n" for i in range(5000)]
    append(log_path, b"".join(lines))
    log = LogFile(str(log_path), max_line_bytes=4096)
    out = b"".join(iter(log.poll, b""))  # ~800 KB: more than one poll's worth
    assert lines_of(out) == lines
    assert log.caught_up
    assert log.lines_truncated == 0
    log.close()


def test_max_bytes_bound(log_path: Path) -> None:
    lines = [b"%05d-%s\n" % (i, b"z" * (i % 40)) for i in range(400)]
    append(log_path, b"".join(lines))
    log = LogFile(str(log_path), max_line_bytes=64)
    received: list[bytes] = []
    calls = 0
    while True:
        out = log.poll(max_bytes=256)
        calls += 1
        if not out and log.caught_up:
            break
        assert len(out) <= 256 + 64
        received.extend(lines_of(out))
    assert received == lines
    assert calls > len(b"".join(lines)) // (256 + 64)
    log.close()


def test_caught_up_only_after_eof(log_path: Path) -> None:
    append(log_path, b"a\n" * 100)
    log = LogFile(str(log_path))
    assert log.poll(max_bytes=50) == b"a\n" * 25
    assert not log.caught_up
    assert log.poll() == b"a\n" * 75
    assert log.caught_up
    log.close()


# --- permissions -----------------------------------------------------------------------


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """As root, drop the effective uid so that file modes apply; restore it afterwards."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(NOBODY_UID)
    except PermissionError:
        pytest.skip("cannot drop privileges here")
    try:
        yield
    finally:
        os.seteuid(0)


def test_permission_denied(log_path: Path) -> None:
    append(log_path, b"secret\n")
    log_path.chmod(0)
    log = LogFile(str(log_path))
    with unprivileged():
        assert log.poll() == b""
        assert log.poll() == b""
    assert not log.present
    assert not log.caught_up
    assert "Permission denied" in log.last_error
    log_path.chmod(0o644)
    assert log.poll() == b"secret\n"
    assert log.last_error == ""
    assert log.present
    log.close()


# --- StdinReader -----------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_stdin_lines_partial_and_eof(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    reader = StdinReader(read_fd)
    assert reader.fileno() == read_fd
    assert reader.poll() == b""  # nothing written yet: must not block
    assert reader.caught_up
    assert reader.present
    os.write(write_fd, b"one\r\ntwo\npart")
    assert reader.poll() == b"one\ntwo\n"
    os.write(write_fd, b"ial")
    assert reader.poll() == b""
    os.close(write_fd)
    assert reader.poll() == b"partial\n"
    assert reader.eof
    assert not reader.present
    assert reader.poll() == b""
    assert (reader.rotations, reader.truncations, reader.last_error) == (0, 0, "")
    assert reader.mtime_wall is None
    reader.close()


def test_stdin_long_line_and_bound(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    reader = StdinReader(read_fd, max_line_bytes=8)
    os.write(write_fd, b"abcdefghijklmnop\nshort\n" + b"s\n" * 50)
    first = reader.poll(max_bytes=30)
    rest = reader.poll()
    assert len(first) <= 30 + 8
    assert first + rest == b"abcdefgh\nshort\n" + b"s\n" * 50
    assert reader.lines_truncated == 1
    reader.close()


def test_stdin_close_restores_blocking(pipe: tuple[int, int]) -> None:
    read_fd, _ = pipe
    assert os.get_blocking(read_fd)
    reader = StdinReader(read_fd)
    assert not os.get_blocking(read_fd)
    reader.close()
    assert os.get_blocking(read_fd)


# --- property-style: random streams, chunkings, rotations and truncations --------------


def model_line(content: bytes, cap: int) -> bytes:
    if content.endswith(b"\r"):
        content = content[:-1]
    return content[:cap] + b"\n"


class StreamModel:
    """What the follower must return for a byte stream cut by rotations/truncations."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.current = b""
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        parts = (self.current + data).split(b"\n")
        self.lines.extend(model_line(part, self.cap) for part in parts[:-1])
        self.current = parts[-1]

    def boundary(self) -> None:
        if self.current:
            self.lines.append(model_line(self.current, self.cap))
        self.current = b""


def random_line(rng: random.Random, cap: int) -> bytes:
    length = rng.choice(
        [rng.randrange(0, 6), rng.randrange(max(0, cap - 2), cap + 3), rng.randrange(cap, 3 * cap)]
    )
    body = bytes(rng.choice(b"ab\r\x00\xff") for _ in range(length))
    return body + rng.choice([b"\n", b"\n", b"\r\n"])


def random_chunks(rng: random.Random, data: bytes) -> list[bytes]:
    chunks = []
    position = 0
    while position < len(data):
        size = rng.randrange(1, 40)
        chunks.append(data[position : position + size])
        position += size
    return chunks


class RotatingWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.generation = 0
        self.handle = path.open("ab", buffering=0)

    def rename_away(self) -> None:
        self.generation += 1
        self.path.rename(self.path.with_name(f"{self.path.name}.{self.generation}"))

    def reopen(self) -> None:
        self.handle.close()
        self.handle = self.path.open("ab", buffering=0)


@pytest.mark.parametrize("seed", range(60))
def test_random_appends_rotations_truncations(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    cap = rng.choice([1, 2, 3, 7, 16, 64])
    path = tmp_path / "kc.log"
    writer = RotatingWriter(path)
    log = LogFile(str(path), max_line_bytes=cap, read_block_bytes=rng.randrange(1, cap + 1))
    model = StreamModel(cap)
    received: list[bytes] = [log.poll()]  # opens the (empty) file before any rotation
    stream = b"".join(random_line(rng, cap) for _ in range(rng.randrange(1, 60)))
    stream += bytes(rng.choice(b"ab\r") for _ in range(rng.randrange(0, 5)))  # last partial
    for chunk in random_chunks(rng, stream):
        writer.handle.write(chunk)
        model.write(chunk)
        action = rng.random()
        if action < 0.3:
            received.append(log.poll(max_bytes=rng.choice([1, 5, 50, 4 << 20])))
        elif action < 0.36:
            writer.rename_away()
            if rng.random() < 0.5:  # writes that land in the old file after the rename
                late = b"late\n"
                writer.handle.write(late)
                model.write(late)
                received.append(log.poll())
            writer.reopen()
            model.boundary()
            received.append(log.poll())
        elif action < 0.4:
            received.append(log.poll())
            writer.handle.truncate(0)
            model.boundary()
            received.append(log.poll())
    received.append(log.poll())
    before_flush = lines_of(b"".join(received))
    complete_lines = list(model.lines)
    writer.rename_away()
    writer.reopen()
    model.boundary()
    received.append(log.poll())
    assert lines_of(b"".join(received)) == model.lines
    # The unfinished last line is held back, unless it already passed the cap (then cut early).
    assert before_flush in (complete_lines, model.lines)
    assert all(len(line) <= cap + 1 for line in model.lines)
    writer.handle.close()
    log.close()


@pytest.mark.parametrize("seed", range(200))
def test_framer_random_chunking(seed: int) -> None:
    rng = random.Random(1000 + seed)
    cap = rng.choice([1, 2, 5, 16, 100])
    stream = b"".join(random_line(rng, cap) for _ in range(rng.randrange(1, 80)))
    model = StreamModel(cap)
    model.write(stream)
    framer = LineFramer(cap)
    out = []
    position = 0
    while position < len(stream):
        size = rng.randrange(1, 4 * cap + 3)  # chunks larger than the cap are split inside
        out.append(framer.feed(stream[position : position + size]))
        position += size
    out.append(framer.flush())
    model.boundary()
    assert lines_of(b"".join(out)) == model.lines
    expected_cuts = sum(len(line) - line.endswith(b"\r") > cap for line in stream.split(b"\n")[:-1])
    assert framer.lines_truncated == expected_cuts


@pytest.mark.parametrize("seed", range(200))
def test_framer_big_chunks_without_cr(seed: int) -> None:
    """Chunks far larger than the cap, mostly without CR: the no-copy fast path and its exits."""
    rng = random.Random(5000 + seed)
    cap = rng.choice([2, 5, 16, 100])
    lines = [random_line(rng, cap).replace(b"\r", b"a") for _ in range(rng.randrange(1, 120))]
    if rng.random() < 0.2:
        lines[rng.randrange(len(lines))] += b"\r\n"  # the odd CRLF forces the careful path
    stream = b"".join(lines)
    model = StreamModel(cap)
    model.write(stream)
    framer = LineFramer(cap)
    out = []
    position = 0
    while position < len(stream):
        size = rng.randrange(1, 30 * cap)
        out.append(framer.feed(stream[position : position + size]))
        position += size
    out.append(framer.flush())
    model.boundary()
    assert lines_of(b"".join(out)) == model.lines


def test_framer_passes_short_lines_through_without_copying() -> None:
    data = b"".join(b"line %d\n" % n for n in range(1000))
    framer = LineFramer(64)
    assert framer.feed(data) is data
    assert framer.feed(b"partial") == b""
    assert framer.feed(b" end\n" + data) == b"partial end\n" + data


def test_framer_rejects_nonpositive_cap() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)


# --- fault injection (issue 15, item 3) -------------------------------------------------


def test_path_replaced_by_directory_then_file_again(log_path: Path, follow: LogFile) -> None:
    """A directory at the path is no log: not present; a file there again is followed."""
    append(log_path, b"before\n")
    assert follow.poll() == b"before\n"
    log_path.unlink()
    log_path.mkdir()
    for _ in range(3):
        assert follow.poll() == b""
    assert not follow.present
    log_path.rmdir()
    append(log_path, b"after\n")
    assert follow.poll() == b"after\n"
    assert follow.present


def test_copytruncate_then_append_larger_than_the_old_size(
    log_path: Path, follow: LogFile
) -> None:
    """Truncation is seen by the file's first bytes, not only by its size."""
    append(log_path, b"2024-03-01 10:00:00,000 old one\n2024-03-01 10:00:00,001 old two\n")
    assert follow.poll() != b""
    new = b"".join(b"2024-03-01 11:00:00,%03d new %d\n" % (i, i) for i in range(20))
    with log_path.open("r+b") as handle:  # copytruncate, then one big append before a poll
        handle.truncate(0)
        handle.write(new)
    assert follow.poll() == new
    assert follow.truncations == 1
    assert follow.present


def test_line_over_the_cap_is_skipped_at_read_speed(log_path: Path) -> None:
    """A 10 MiB line is cut and the rest skipped within one poll: the next line comes at
    once, not one poll (and one wait) per 256 KiB of the long line."""
    append(log_path, b"first\n" + b" " * (10 << 20) + b"\nnext\n")
    log = LogFile(str(log_path), max_line_bytes=65536)
    out = log.poll()
    log.close()
    assert lines_of(out) == [b"first\n", b" " * 65536 + b"\n", b"next\n"]
    assert log.lines_truncated == 1


def test_a_directory_is_not_a_log_source(tmp_path: Path) -> None:
    """Named a directory, the source is not present and says why (no "available")."""
    log = LogFile(str(tmp_path))
    try:
        assert log.poll() == b""
        assert log.present is False
        assert log.last_error == f"cannot open {tmp_path}: is a directory"
    finally:
        log.close()
