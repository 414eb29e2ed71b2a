"""Classification rules as data: the built-in table (``sidecar/data/rules.toml``) plus an
optional user rules file, both compiled and validated by ``compile_rules``.

A rule says: a record whose text contains ``contains`` (the substring pre-filter, checked
before any regex), at one of ``levels``, from a category containing ``category``, and matching
``pattern`` means ``event`` with ``reason``.  The first matching rule wins; the event
``ignore`` marks known-harmless lines.  Rules are validated at start-up with clear errors.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from sidecar.core.events import ALL_REASONS, EventKind

IGNORE = "ignore"
#: ``fatal`` = ``startup_fatal`` before startup completed, ``runtime_fatal`` after.
EVENT_NAMES = frozenset({k.value for k in EventKind} | {IGNORE})
LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", ""})
_MIN_NEEDLE = 3
#: the built-in table, inside the package
BUILTIN_RULES_RESOURCE = "data/rules.toml"


class RuleError(ValueError):
    """The rules are invalid; ``problems`` lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid rules:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled classification rule."""

    id: str
    event: str
    contains: str
    reason: str = ""
    pattern: re.Pattern[str] | None = None
    levels: frozenset[str] | None = None
    category: str = ""
    #: the record belongs only to a server boot (helps to see a new boot begin)
    boot_marker: bool = False
    #: printed once per boot: seeing it again means a new boot
    once_per_boot: bool = False
    #: parse an Infinispan view from the record
    view: bool = False
    #: "built-in" or the rules file the rule came from
    origin: str = "built-in"
    #: at least one of these must be in the record too (e.g. "this is about the database")
    context: tuple[str, ...] = ()

    def matches(self, body: str, level: str, category: str) -> re.Match[str] | bool:
        if self.contains not in body:
            return False
        if self.context and not any(marker in body for marker in self.context):
            return False
        if self.levels is not None and level not in self.levels:
            return False
        if self.category and self.category not in category:
            return False
        if self.pattern is None:
            return True
        return self.pattern.search(body) or False


#: Substrings that cover every rule that matters after startup completed, per layout
#: (tests/test_pipeline.py checks them against the corpora, in plain, JSON and CSV form).
#: Not covered by design: another boot's progress and start lines (a new boot shows as
#: ISPN000078/79, the API restart count or the HTTP target coming back), the steps of a
#: shutdown (signal, subsystems stopping: ISPN000080 and the server's own "stopped in" show
#: it), database warnings that come with an ERROR or Agroal's own "Datasource" warning
#: (Hibernate's "SQLState", "Unable to acquire JDBC Connection" in a login failure, JDBC_PING2
#: failing to fetch members) and startup-only causes.
#: Few and long needles keep the scan fast: each one is a pass over every byte.
_RUNTIME_ANCHORS_COMMON: tuple[bytes, ...] = (
    b"ISPN000",
    b"ISPN100000",
    b"ISPN100001",
    b"JGRP0000",
    b"Datasource",
    b"suspect",  # JGroups failure detection at any level: "suspect list", "suspecting"
    b"SUSPECT",  # VERIFY_SUSPECT*: "SUSPECT([...])", "verifying that ... is dead"
    b"stopped in",  # "Keycloak stopped in", WFLYSRV0050: the server's own last word
    # at any level and in bare lines: Netty's WARN about a handler, the JVM's "Terminating
    # due to java.lang.OutOfMemoryError" (-XX:+ExitOnOutOfMemoryError, kc.sh's default) and
    # 'Exception in thread "..." java.lang.OutOfMemoryError' on the console
    b"OutOfMemoryError",
)
RUNTIME_ANCHORS_PLAIN: tuple[bytes, ...] = (
    *_RUNTIME_ANCHORS_COMMON,
    b"ERROR [",
    b"ERROR: ",  # bare lines Quarkus prints when the server fails
    b"FATAL [",
    b"IJ031084",  # WildFly era: IronJacamar cannot create a connection (at WARN)
)
RUNTIME_ANCHORS_JSON: tuple[bytes, ...] = (
    *_RUNTIME_ANCHORS_COMMON,
    b'"ERROR"',  # "level":"ERROR", "log.level": "ERROR", ...
    b'"FATAL"',
)
RUNTIME_ANCHORS_CSV: tuple[bytes, ...] = (  # Kibana CSV exports: '"<time>",ERROR,"<message>"'
    *_RUNTIME_ANCHORS_COMMON,
    b",ERROR,",
    b",FATAL,",
)
#: Infinispan message codes that matter after startup (views, joins, leaves, degraded,
#: shutdown, a new boot); other ISPN codes (rebalance progress, ...) are skipped before framing.
RUNTIME_ISPN_CODES: frozenset[bytes] = frozenset(
    {
        b"000093",
        b"000094",
        b"000080",
        b"000078",
        b"000079",
        b"000314",
        b"000476",
        b"000427",
        b"000210",
        b"000217",
        b"000329",
        b"000541",
        b"100000",
        b"100001",
    }
)


@functools.cache
def builtin_rules() -> tuple[Rule, ...]:
    """The built-in table (``sidecar/data/rules.toml``), compiled like a user's rules file."""
    # read beside the package, not through importlib.resources: that pulls in zipfile,
    # tempfile and pathlib at every start (tests/test_rules.py checks the file is package data)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(package, *BUILTIN_RULES_RESOURCE.split("/")), encoding="utf-8") as f:
        text = f.read()
    return parse_rules_text(text, origin="built-in", toml=True)


def compile_rules(
    raw: Iterable[Mapping[str, object]],
    *,
    origin: str,
    contexts: Mapping[str, object] | None = None,
) -> tuple[Rule, ...]:
    """Validate and compile rule mappings; report every problem at once.

    ``contexts`` names lists of substrings that rules can refer to by name (``context =
    "database"``) instead of repeating the list.
    """
    rules: list[Rule] = []
    problems: list[str] = []
    named = _named_contexts(contexts or {}, origin, problems)
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"{origin} rule #{index + 1}"
        try:
            rule = _compile_one(entry, where, origin, named)
        except RuleError as error:
            problems.extend(error.problems)
            continue
        if rule.id in seen:
            problems.append(f"{where}: duplicate id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    if problems:
        raise RuleError(problems)
    return tuple(rules)


_KNOWN_KEYS = frozenset(
    {
        "id",
        "event",
        "reason",
        "contains",
        "pattern",
        "levels",
        "category",
        "boot_marker",
        "once_per_boot",
        "view",
        "note",
        "context",
    }
)


def _named_contexts(
    contexts: Mapping[str, object], origin: str, problems: list[str]
) -> dict[str, tuple[str, ...]]:
    named: dict[str, tuple[str, ...]] = {}
    for name, markers in contexts.items():
        if not _is_string_list(markers) or not markers:
            problems.append(f"{origin}: context {name!r} must be a non-empty list of strings")
            continue
        named[name] = tuple(markers)
    return named


def _is_string_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _context(
    value: object, where: str, named: Mapping[str, tuple[str, ...]], problems: list[str]
) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        if value not in named:
            problems.append(f"{where}: unknown context {value!r} (known: {sorted(named)})")
            return ()
        return named[value]
    if not _is_string_list(value) or not value:
        problems.append(f"{where}: 'context' must be a context name or a list of strings")
        return ()
    return tuple(value)


def _compile_one(
    entry: Mapping[str, object],
    where: str,
    origin: str,
    named: Mapping[str, tuple[str, ...]],
) -> Rule:
    problems = [f"{where}: unknown key {key!r}" for key in entry if key not in _KNOWN_KEYS]
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        problems.append(f"{where}: 'id' must be a non-empty string")
        rule_id = "?"
    where = f"{where} ({rule_id})"
    event = entry.get("event")
    if event not in EVENT_NAMES:
        problems.append(f"{where}: 'event' must be one of {sorted(EVENT_NAMES)}, got {event!r}")
    reason = entry.get("reason", "")
    if not isinstance(reason, str) or reason not in ALL_REASONS:
        problems.append(f"{where}: unknown 'reason' {reason!r} (known: {sorted(ALL_REASONS)})")
    pattern = _compile_pattern(entry.get("pattern"), where, problems)
    contains = entry.get("contains", "")
    if not isinstance(contains, str):
        problems.append(f"{where}: 'contains' must be a string")
        contains = ""
    if not contains and pattern is not None:
        contains = derive_needle(pattern)
    if event != IGNORE and len(contains) < _MIN_NEEDLE:
        problems.append(
            f"{where}: needs 'contains', a literal substring of at least "
            f"{_MIN_NEEDLE} characters every matching line has (the pre-filter)"
        )
    levels = _levels(entry.get("levels"), where, problems)
    category = entry.get("category", "")
    if not isinstance(category, str):
        problems.append(f"{where}: 'category' must be a string")
        category = ""
    if event == IGNORE and not (contains or category):
        problems.append(f"{where}: an ignore rule needs 'contains' or 'category'")
    context = _context(entry.get("context"), where, named, problems)
    flags = {key: entry.get(key, False) for key in ("boot_marker", "once_per_boot", "view")}
    problems += [
        f"{where}: {key!r} must be true or false"
        for key, v in flags.items()
        if not isinstance(v, bool)
    ]
    if problems:
        raise RuleError(problems)
    return Rule(
        id=str(rule_id),
        event=str(event),
        contains=contains,
        reason=str(reason),
        pattern=pattern,
        levels=levels,
        category=category,
        boot_marker=bool(flags["boot_marker"]),
        once_per_boot=bool(flags["once_per_boot"]),
        view=bool(flags["view"]),
        origin=origin,
        context=context,
    )


def _compile_pattern(value: object, where: str, problems: list[str]) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: 'pattern' must be a string")
        return None
    try:
        return re.compile(value)
    except re.error as error:
        problems.append(f"{where}: 'pattern' is not a valid regular expression: {error}")
        return None


def _levels(value: object, where: str, problems: list[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, frozenset):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: 'levels' must be a list of strings")
        return None
    unknown = [v for v in value if v.upper() not in LEVELS]
    if unknown:
        problems.append(f"{where}: unknown levels {unknown} (known: {sorted(LEVELS - {''})})")
    return frozenset(v.upper() for v in value)


def derive_needle(pattern: re.Pattern[str]) -> str:
    """A literal substring every match of ``pattern`` contains ("" when none can be derived).

    Each top-level alternative is read as a sequence of atoms; the literal runs it must
    contain are the runs of unquantified plain characters outside groups and classes.  The
    needle is the longest string found inside a required run of *every* alternative (so
    ``Vault [^)]+ sealed|Vault unavailable`` gives ``Vault ``, which both branches have).
    Case-insensitive and verbose patterns give none: their text is not what lines contain.
    """
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return ""
    branches = literal_runs(pattern.pattern)
    if not branches or not all(branches):
        return ""
    first, *others = branches
    candidates = sorted(
        {run[i:j] for run in first for i in range(len(run)) for j in range(i + 1, len(run) + 1)},
        key=lambda text: (-len(text), text),
    )
    for candidate in candidates:
        if all(any(candidate in run for run in runs) for runs in others):
            return candidate
    return ""


def literal_runs(pattern: str) -> list[list[str]]:
    """Per top-level alternative, the literal runs every match of it contains."""
    branches: list[list[str]] = [[]]
    current: list[str] = []

    def close() -> None:
        if current:
            branches[-1].append("".join(current))
            current.clear()

    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "|":
            close()
            branches.append([])
            index += 1
            continue
        atom, index = _atom(pattern, index)
        after = _quantifier_end(pattern, index)
        if after != index or atom is None:
            close()  # a quantified atom is optional or repeated: not a fixed part
            index = after
            continue
        current.append(atom)
    close()
    return branches


def _atom(pattern: str, index: int) -> tuple[str | None, int]:
    """The atom at ``index``: its literal character (None when not literal) and its end."""
    char = pattern[index]
    if char == "\\":
        escaped = pattern[index + 1 : index + 2]
        literal = escaped if escaped and not escaped.isalnum() else None
        return literal, index + 2
    if char == "[":
        return None, _class_end(pattern, index)
    if char == "(":
        return None, _group_end(pattern, index)
    if char in ".^$)":
        return None, index + 1
    return char, index + 1


def _class_end(pattern: str, index: int) -> int:
    """The index after the character class that opens at ``index``."""
    index += 1
    if pattern.startswith("^", index):
        index += 1
    if pattern.startswith("]", index):
        index += 1  # a ']' first in a class is literal
    while index < len(pattern) and pattern[index] != "]":
        index += 2 if pattern[index] == "\\" else 1
    return index + 1


def _group_end(pattern: str, index: int) -> int:
    """The index after the group that opens at ``index`` (nested groups, classes, escapes)."""
    depth = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _class_end(pattern, index)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return index


_QUANTIFIER_RE = re.compile(r"(?:[*+?]|\{\d*(?:,\d*)?\})[?+]?")


def _quantifier_end(pattern: str, index: int) -> int:
    match = _QUANTIFIER_RE.match(pattern, index)
    if match is None or match.group() in ("{}", "{,}"):
        return index
    return match.end()


def load_rules_file(path: str) -> tuple[Rule, ...]:
    """Read a rules file: TOML (``*.toml``, ``[[rules]]`` tables like the built-in table) or
    JSON (``{"rules": [ {...}, ... ]}`` or a bare list)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise RuleError([f"{path}: cannot read: {why}"]) from error
    return parse_rules_text(text, origin=path, toml=path.endswith(".toml"))


def parse_rules_text(text: str, *, origin: str, toml: bool) -> tuple[Rule, ...]:
    """Parse and compile a rules document (TOML or JSON); every problem is reported."""
    try:
        data: object = tomllib.loads(text) if toml else json.loads(text)
    except ValueError as error:  # tomllib.TOMLDecodeError and json's errors alike
        kind = "TOML" if toml else "JSON"
        raise RuleError([f"{origin}: not valid {kind}: {error}"]) from error
    entries = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        shape = "[[rules]] tables" if toml else 'a list of rule objects (or {"rules": [...]})'
        raise RuleError([f"{origin}: expected {shape}"])
    contexts = data.get("contexts", {}) if isinstance(data, dict) else {}
    if not isinstance(contexts, dict):
        raise RuleError([f"{origin}: 'contexts' must map names to lists of strings"])
    unknown = [
        f"{origin}: unknown top-level key {key!r} (known: 'contexts', 'rules')"
        for key in (data if isinstance(data, dict) else {})
        if key not in {"rules", "contexts"}
    ]
    try:
        rules = compile_rules(entries, origin=origin, contexts=contexts)
    except RuleError as error:
        raise RuleError([*unknown, *error.problems]) from error
    if unknown:
        raise RuleError(unknown)
    return rules
