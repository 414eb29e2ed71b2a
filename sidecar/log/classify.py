"""One log record -> the events it means.  Pure (``RuleIndex`` remembers answers, it never
changes one).

What a line means is in the rules (``rules.py``, ``data/rules.toml``); how a header line
looks is in ``layout.py`` (the pipeline keeps its own byte-level header test for framing, a
fast path of the same shapes).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sidecar.core.events import ClusterView, EventKind, LogEvent
from sidecar.log import layout
from sidecar.log.rules import IGNORE, Rule

_CODE_RE = re.compile(
    r"\b((?:ISPN|JGRP|WFLY[A-Z]*|KC-SERVICES|MSC|IJ|JBAS|ARJUNA|HHH|SRHCK)"
    r"\d{4,6})\b"
)
_VIEW_RE = re.compile(
    r"cluster view(?: for channel (?P<channel>[^:\s]+))?:?\s*(?:MergeView::)?"
    r"\[(?P<coord>[^\]|\[]*)\|(?P<id>\d+)\]\s*\((?P<size>\d+)\)\s*\[(?P<members>[^\]\[]*)\]"
)
# ", " followed by "key=" continues a "(site-id=k8s, rack-id=..)" suffix; otherwise a new member
_MEMBER_SPLIT_RE = re.compile(r",\s+(?![\w.-]+=)")
_SERVICES_RE = re.compile(r"Started (\d+) of (\d+) services")
_EMBEDDED_SERVICES_MAX = 200

#: the most characters of one physical line that any pattern sees (layouts and rules); a JSON
#: line is parsed whole by ``json.loads`` (C, linear) and only its message is bounded
MAX_LINE_CHARS: Final = 4096
#: the most characters of one record's body that the rules' patterns see; over it, stack
#: frame lines go first, so the ``Caused by:`` chain (the root cause is last) stays
MAX_RECORD_CHARS: Final = 8192
_FRAME_STARTS: Final = ("at ", "... ")


@dataclass(frozen=True, slots=True)
class Record:
    """A header line plus the continuation lines that joined it."""

    header: layout.Header
    continuation: tuple[str, ...]
    line: int

    @property
    def body(self) -> str:
        if not self.continuation:
            return self.header.message
        return self.header.message + "\n" + "\n".join(self.continuation)


def make_record(lines: Sequence[str], line_number: int) -> Record:
    """Build a record from its physical lines (first = header)."""
    first = lines[0]
    header = layout.parse_header(first if first.startswith("{") else first[:MAX_LINE_CHARS])
    rest = tuple(layout.continuation_text(text[:MAX_LINE_CHARS]) for text in lines[1:])
    if header.layout == "json" and rest:
        # pretty-printed JSON spans lines: parse the whole record
        joined = layout.parse_header(first + "\n" + "\n".join(rest))
        if joined.layout == "json":
            return Record(_bounded_header(joined), (), line_number)
    header = _bounded_header(header)
    return Record(header, _bounded_continuation(rest, len(header.message)), line_number)


def _bounded_header(header: layout.Header) -> layout.Header:
    if len(header.message) <= MAX_RECORD_CHARS:
        return header
    return dataclasses.replace(header, message=header.message[:MAX_RECORD_CHARS])


def _bounded_continuation(rest: tuple[str, ...], used_chars: int) -> tuple[str, ...]:
    """At most ``MAX_RECORD_CHARS`` in all: frames are dropped first, then the tail."""
    budget = MAX_RECORD_CHARS - used_chars
    if sum(len(text) + 1 for text in rest) <= budget:
        return rest
    kept: list[str] = []
    for text in rest:
        if text.lstrip().startswith(_FRAME_STARTS):
            continue
        budget -= len(text) + 1
        if budget < 0:
            break
        kept.append(text)
    return tuple(kept)


class RuleIndex:
    """Rules in their order, indexed by needle: which rules can match a text at all.

    A rule matches only a text that contains its ``contains`` needle, so a record needs to
    be tried only against the rules whose needle it contains; those are found without
    testing every needle.  Read the text's UTF-8 bytes as 4-byte blocks at offsets 0, 4,
    8, ... (one C-level pass): any occurrence of a needle of at least 7 bytes covers one
    whole block, which equals one of the needle's own blocks at offsets 0-3.  So a needle is
    tested only when one of its blocks is among the text's blocks; shorter needles are
    tested always, rules without a needle are always candidates.  The candidates keep the
    rules' order, so the first matching rule is the one a walk over all rules finds
    (tests/test_classify_index.py holds the two to the same answers).  The answers for the
    latest texts are remembered (``first_match``).
    """

    __slots__ = (
        "_always",
        "_blocks",
        "_by_block",
        "_memo",
        "_memo_chars",
        "_positions",
        "_short",
        "_wrapped",
        "rules",
    )

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        positions: dict[str, list[int]] = {}
        for position, rule in enumerate(self.rules):
            positions.setdefault(rule.contains, []).append(position)
        self._positions = {needle: tuple(found) for needle, found in positions.items()}
        self._always = self._positions.pop("", ())
        short: list[tuple[str, tuple[int, ...]]] = []
        by_block: dict[int, set[str]] = {}
        for needle, found in self._positions.items():
            encoded = _utf8(needle)
            if len(encoded) < _INDEXED_NEEDLE:
                short.append((needle, found))
                continue
            for offset in range(_BLOCK):
                by_block.setdefault(_blocks(encoded[offset:])[0], set()).add(needle)
        self._short = tuple(short)
        self._by_block = {block: tuple(needles) for block, needles in by_block.items()}
        self._blocks = frozenset(self._by_block)
        self._wrapped: RuleIndex | None = None
        self._memo: dict[tuple[str, str, str], tuple[Rule, re.Match[str] | bool] | None] = {}
        self._memo_chars = 0

    def first_match(
        self, text: str, level: str, category: str
    ) -> tuple[Rule, re.Match[str] | bool] | None:
        """The first rule that matches ``text`` at ``level`` from ``category``, and its match.

        Logs repeat records word for word (the same warning, the same stack trace), so the
        answers for the latest texts are kept: a rule's verdict depends on these three
        values only.  The memo is bounded by the characters it holds.
        """
        key = (text, level, category)
        memo = self._memo
        if key in memo:
            return memo[key]
        found = None
        for rule in self.candidates(text):
            match = rule.matches(text, level, category)
            if match:
                found = (rule, match)
                break
        self._memo_chars += len(text)
        while self._memo_chars > _MEMO_CHARS and memo:
            oldest = next(iter(memo))
            del memo[oldest]
            self._memo_chars -= len(oldest[0])
        memo[key] = found
        return found

    def candidates(self, text: str) -> list[Rule]:
        """The rules whose needle ``text`` contains (and those without one), in order."""
        found = list(self._always)
        for needle, positions in self._short:
            if needle in text:
                found += positions
        blocks = self._blocks.intersection(_blocks(_utf8(text)))
        if blocks:
            by_block = self._by_block
            needles = {needle for block in blocks for needle in by_block[block]}
            for needle in needles:
                if needle in text:
                    found += self._positions[needle]
        found.sort()
        rules = self.rules
        return [rules[position] for position in found]

    @property
    def wrapped(self) -> RuleIndex:
        """The rules that are tried again on a hard-wrapped record (built once)."""
        if self._wrapped is None:
            self._wrapped = RuleIndex([r for r in self.rules if r.event in _WRAPPED])
        return self._wrapped


#: the most characters of record text whose first match a ``RuleIndex`` remembers
_MEMO_CHARS: Final = 1 << 20
#: a block is one machine ``unsigned int`` (4 bytes): its value is the block's key
_BLOCK: Final = memoryview(bytes(16)).cast("I").itemsize
#: needles this long (in UTF-8 bytes) always cover a whole block of the text
_INDEXED_NEEDLE: Final = 2 * _BLOCK - 1


def _utf8(text: str) -> bytes:
    # JSON can carry lone surrogates; "surrogatepass" keeps the encoding prefix-free, so a
    # substring's bytes are still a substring of the text's bytes
    return text.encode("utf-8", "surrogatepass")


def _blocks(data: bytes) -> memoryview:
    """``data`` as whole blocks from offset 0 (the tail shorter than a block is left out)."""
    return memoryview(data)[: len(data) - len(data) % _BLOCK].cast("I")


def classify(record: Record, rules: RuleIndex | Sequence[Rule]) -> list[LogEvent]:
    """The events of one record; empty when it means nothing for health.

    Give a ``RuleIndex`` when classifying many records (a sequence is indexed per call).
    """
    index = rules if isinstance(rules, RuleIndex) else RuleIndex(rules)
    found = _first_match(record, record.body, index)
    if found is None and record.continuation:
        # a terminal's hard wrap split the line: read it whole again, for the records that
        # tell a start or a stop (progress and causes do not need it)
        unwrapped = _unwrapped(record)
        if unwrapped is not None:
            found = _first_match(record, unwrapped, index.wrapped)
    return found or []


_WRAPPED = frozenset({EventKind.STARTUP_COMPLETE.value, EventKind.SHUTDOWN.value})


def _first_match(record: Record, body: str, index: RuleIndex) -> list[LogEvent] | None:
    """The first matching rule's event; [] for an ignore rule; None when nothing matched."""
    found = index.first_match(body, record.header.level, record.header.category)
    if found is None:
        return None
    rule, match = found
    if rule.event == IGNORE:
        return []
    return [_event(rule, match, record, body)]


def _unwrapped(record: Record) -> str | None:
    """The record's lines joined without line breaks, when they look hard-wrapped: no
    continuation line is a stack frame, a cause or a tab-indented line."""
    lines = record.continuation
    if any(line.startswith("\t") or _FRAME_RE.match(line) for line in lines):
        return None
    return record.header.message + "".join(lines)


_FRAME_RE = re.compile(r"\s*(?:at |\.\.\. \d|Caused by|Suppressed:)")


def _event(rule: Rule, match: re.Match[str] | bool, record: Record, body: str) -> LogEvent:
    kind = EventKind(rule.event)
    code_match = _code(rule, match, body)
    view = parse_view(body) if rule.view else None
    node = ""
    if isinstance(match, re.Match) and "node" in match.re.groupindex:
        node = match.group("node").strip()
    embedded = kind is EventKind.STARTUP_COMPLETE and _is_embedded(record, body)
    embedded = embedded or (rule.boot_marker and "CLI command executor" in record.header.thread)
    merged = "MERGED" in body if rule.view else False
    if view is not None and merged != view.merged:
        view = ClusterView(
            view.view_id, view.coordinator, view.members, view.size, merged, view.channel
        )
    return LogEvent(
        kind=kind,
        reason=rule.reason,
        line=record.line,
        timestamp=record.header.timestamp,
        code=code_match.group(1) if code_match else "",
        rule=rule.id,
        view=view,
        node=node,
        boot_marker=rule.boot_marker,
        once_per_boot=rule.once_per_boot,
        embedded=embedded,
        extra=(("merged", "true"),) if merged and view is None else (),
    )


def _code(rule: Rule, match: re.Match[str] | bool, body: str) -> re.Match[str] | None:
    """The message code of the evidence: the first one on the line where the rule matched or
    after it.  Evidence in the record's cause chain (an indented or ``Caused by`` line)
    falls back to the record's own code; a console line glued under a record (kc.sh's or
    the WildFly CLI's output, such as "The batch failed" under the embedded server's
    WFLYSRV0025 'started' line) has none of the record's."""
    where = match.start() if isinstance(match, re.Match) else body.find(rule.contains)
    line_start = body.rfind("\n", 0, max(where, 0)) + 1
    own = _CODE_RE.search(body, line_start)
    if own is not None or line_start == 0:
        return own
    glued = not body.startswith((" ", "\t", "Caused by", "at "), line_start)
    return None if glued else _CODE_RE.search(body)


def _is_embedded(record: Record, body: str) -> bool:
    """The jboss/keycloak entrypoint's embedded CLI server starts only a few dozen services
    ("Started 55 of 85 services"; a real server 500 to 1000).  A terminal's hard wrap can cut
    the count apart ("... of 8" / "5 services"): then it is read from the unwrapped line."""
    if "CLI command executor" in record.header.thread:
        return True
    match = _SERVICES_RE.search(body)
    if match is None and record.continuation:
        unwrapped = _unwrapped(record)
        match = _SERVICES_RE.search(unwrapped) if unwrapped is not None else None
    return match is not None and int(match.group(2)) < _EMBEDDED_SERVICES_MAX


def parse_view(body: str) -> ClusterView | None:
    """Parse ``[coord|id] (size) [members]``; members may carry ``(k=v, k=v)`` suffixes."""
    match = _VIEW_RE.search(body)
    if match is None:
        return None
    raw_members = match.group("members").strip()
    members = tuple(m.strip() for m in _MEMBER_SPLIT_RE.split(raw_members) if m.strip())
    return ClusterView(
        view_id=int(match.group("id")),
        coordinator=match.group("coord").strip(),
        members=members,
        size=int(match.group("size")),
        merged="MERGED" in body[: match.start() + 40],
        channel=match.group("channel") or "",
    )
