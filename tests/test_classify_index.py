"""The needle index of the classifier against the plain walk over every rule (differential).

``RuleIndex`` hands a record only the rules whose needle it contains.  Here the reference is
the classifier before the index, kept in this file: every rule in order, the first match
wins, a hard-wrapped record is read again against the start/stop rules.  Both run on every
record of the shared corpus, the extra corpus, the stories, the real-Keycloak logs and every
kind of line ``benchmarks/genlog.py`` writes (plain and JSON), under the whole table and the
runtime subset; and the index itself is held to "exactly the rules whose needle is in the
text, in order" on those texts and on texts built to sit a needle on every byte alignment.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from corpus import load_corpus
from corpus_extra import STORIES_DIR, load_extra
from test_benchmarks_quick import load

from sidecar.core.events import LogEvent
from sidecar.log import classify, layout, pipeline
from sidecar.log.classify import Record, RuleIndex, make_record
from sidecar.log.pipeline import Pipeline, runtime_rules
from sidecar.log.rules import IGNORE, Rule, builtin_rules, compile_rules

REALKC_DIR = Path(__file__).resolve().parent / "data" / "realkc"
ALL = builtin_rules()
RUNTIME = runtime_rules(ALL)


def reference(record: Record, rules: Sequence[Rule]) -> list[LogEvent]:
    """The classifier as it was before the index: every rule, in order."""
    header = record.header

    def first(body: str, candidates: Sequence[Rule]) -> list[LogEvent] | None:
        for rule in candidates:
            match = rule.matches(body, header.level, header.category)
            if match:
                return [] if rule.event == IGNORE else [classify._event(rule, match, record, body)]
        return None

    found = first(record.body, rules)
    if found is None and record.continuation:
        unwrapped = classify._unwrapped(record)
        if unwrapped is not None:
            found = first(unwrapped, [r for r in rules if r.event in classify._WRAPPED])
    return found or []


def by_needle(rules: Sequence[Rule], text: str) -> list[Rule]:
    return [rule for rule in rules if rule.contains in text]


class Sink:
    """Takes every event; boot scan (every rule's needle) or runtime scan, as asked."""

    def __init__(self, boot_scan: bool) -> None:
        self.boot_scan = boot_scan

    def apply(self, event: LogEvent, now: float) -> list[LogEvent]:
        return [event]

    def wants_boot_scan(self) -> bool:
        return self.boot_scan

    def log_time_started(self, stamp: float) -> None:
        pass


def framed(text: str) -> list[Record]:
    """The records the pipeline frames and classifies in ``text``, boot scan and runtime scan."""
    records: list[Record] = []
    real = pipeline.classify

    def spy(record: Record, rules: Any) -> list[LogEvent]:
        records.append(record)
        return real(record, rules)

    pipeline.classify = spy
    try:
        for boot_scan in (True, False):
            feed = Pipeline(ALL, Sink(boot_scan))
            feed.feed(text.encode("utf-8", "surrogateescape"), now=0.0)
            feed.flush(now=0.0)
    finally:
        pipeline.classify = real
    return records


def every_record(text: str) -> list[Record]:
    """Every record of ``text``, needle or not: a header line and the lines up to the next."""
    groups: list[list[str]] = []
    for line in text.split("\n")[:-1]:
        if not groups or layout.is_header(line):
            groups.append([])
        groups[-1].append(line)
    return [make_record(lines, 1) for lines in groups]


def corpus_records() -> list[tuple[str, Record]]:
    out = [(e["id"], make_record(e["text"].split("\n"), 1)) for e in load_corpus()]
    out += [
        (f"extra-{i}", make_record(e["text"].split("\n"), 1)) for i, e in enumerate(load_extra())
    ]
    return out


def log_files() -> list[Path]:
    return sorted(STORIES_DIR.glob("*.log")) + sorted(REALKC_DIR.glob("*.log"))


def genlog_texts() -> list[tuple[str, str]]:
    """Every record kind genlog writes, each a few times, plain and JSON."""
    genlog = load("genlog")
    texts: list[tuple[str, str]] = []
    for log_format in genlog.FORMATS:
        gen = genlog.LogGenerator(seed=11, log_format=log_format)
        rng = random.Random(5)
        factories: list[tuple[str, Callable[[], list[Any]]]] = [
            (f.__name__, lambda f=f: f(rng, gen.cluster))
            for f, _ in (*genlog.RUNTIME_MIX, *genlog.RARE_MIX)
        ]
        factories += [
            ("boot", lambda: genlog.boot_records(rng, gen.cluster)),
            ("membership", lambda: genlog.membership_change(rng, gen.cluster)),
            ("shutdown", lambda: genlog.shutdown_records(gen.cluster)),
            ("fatal", genlog.fatal_records),
        ]
        for name, factory in factories:
            records = [r for _ in range(5) for r in factory()]
            texts.append((f"{log_format}-{name}", gen.records(records)))
        texts.append((f"{log_format}-batch", gen.batch(512)))
    return texts


def assert_same(record: Record, where: str) -> None:
    for rules, index in ((ALL, INDEX_ALL), (RUNTIME, INDEX_RUNTIME)):
        assert classify.classify(record, index) == reference(record, rules), where
        assert index.candidates(record.body) == by_needle(rules, record.body), where


INDEX_ALL = RuleIndex(ALL)
INDEX_RUNTIME = RuleIndex(RUNTIME)


def test_corpus_records_classify_as_with_every_rule() -> None:
    records = corpus_records()
    assert len(records) > 250
    for where, record in records:
        assert_same(record, where)


@pytest.mark.parametrize("path", log_files(), ids=lambda p: p.name)
def test_logs_classify_as_with_every_rule(path: Path) -> None:
    records = framed(path.read_text(encoding="utf-8", errors="surrogateescape"))
    assert records
    for record in records:
        assert_same(record, f"{path.name}:{record.line}")


def test_every_genlog_kind_classifies_as_with_every_rule() -> None:
    seen: set[str] = set()
    for name, text in genlog_texts():
        records = every_record(text)
        assert len(records) >= 5, name
        for record in records + framed(text):
            assert_same(record, f"{name}:{record.line}")
            seen.update(e.rule for e in classify.classify(record, INDEX_ALL))
    # the generated mix reaches the cluster, start, stop, fatal and database rules
    assert len(seen) >= 10, seen


def test_wrapped_records_classify_as_with_every_rule() -> None:
    """A hard-wrapped start/stop line is read again whole: the index sees the joined text."""
    head = "2026-03-02 07:00:00,000 INFO  [io.quarkus] (main) "
    line = "Keycloak 26.4.5 on JVM (powered by Quarkus 3.27.1) started in 9.123s. Listening on: x"
    for cut in range(1, len(line)):
        lines = [head + line[:cut], line[cut:]]
        record = make_record(lines, 1)
        assert_same(record, f"cut at {cut}")
    assert INDEX_ALL.wrapped is INDEX_ALL.wrapped  # built once


NEEDLES = ["abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh", "xé€𝄞yz", "a\ud800bcdefg",
           "Failed to start caches", "ISPN000476", "  ", "\n\tat "]


def test_index_finds_every_needle_at_every_alignment() -> None:
    """Needles of every length (short ones are tested always), after 0-7 bytes of prefix,
    multi-byte characters and lone surrogates shifting the byte alignment."""
    rules = compile_rules(
        [{"id": f"r{i}", "event": "ignore", "contains": n} for i, n in enumerate(NEEDLES)]
        + [{"id": "cat", "event": "ignore", "category": "org.acme"}],
        origin="test",
    )
    index = RuleIndex(rules)
    fillers = ["", "q", "é", "€", "𝄞", "\ud800"]
    for needle in NEEDLES:
        for left in fillers:
            for right in fillers:
                for pad in range(8):
                    text = left + "." * pad + needle + right
                    assert index.candidates(text) == by_needle(rules, text), repr(text)


def test_index_matches_the_needle_filter_on_random_texts() -> None:
    rng = random.Random(1)
    alphabet = "abcdefgh é€𝄞\n"
    needles = sorted({"".join(rng.choices(alphabet, k=rng.randrange(3, 12))) for _ in range(60)})
    rules = compile_rules(
        [{"id": f"r{i}", "event": "ignore", "contains": n} for i, n in enumerate(needles)],
        origin="test",
    )
    index = RuleIndex(rules)
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randrange(0, 60)))
        if rng.random() < 0.5:
            needle = rng.choice(needles)
            at = rng.randrange(len(text) + 1)
            text = text[:at] + needle + text[at:]
        assert index.candidates(text) == by_needle(rules, text), repr(text)


def test_memo_is_bounded_and_answers_like_the_walk() -> None:
    index = RuleIndex(ALL)
    line = "2026-03-02 07:00:00,000 ERROR [org.acme] (main) {} ISPN000476: Timed out {}"
    for round_ in range(2):  # the second round reads texts evicted long ago
        for i in range(3000):
            record = make_record([line.format(i, "x" * 400)], i + 1)
            assert classify.classify(record, index) == reference(record, ALL), (round_, i)
            assert index._memo_chars <= classify._MEMO_CHARS
    assert 0 < len(index._memo) < 3000
