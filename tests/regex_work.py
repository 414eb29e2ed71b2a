"""Adversarial inputs for a regular expression, and how its work grows with input length.

The inputs are built from the pattern's own parse tree (``re._parser``, the parser ``re``
itself uses): for each way into an unbounded repetition, the text that leads there (a
"prefix") and the repeated atom (the "pump").  Repeating the prefix makes every occurrence a
new start that scans forward; prefix + a long pump makes one start scan far.  A pattern whose
work grows with the square of the input shows it on one of these families.

Work is measured as thread CPU time, and judged only relative to the same pattern on a
shorter input of the same family (a linear pattern does 8x the work on 8x the text, a
quadratic one 64x): no wall-clock threshold, no dependence on the machine's speed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from re import _parser as sre  # type: ignore[attr-defined]
from typing import Any

_MAXREPEAT = sre.MAXREPEAT
_C = sre  # the opcode constants live in the same module (re._constants, re-exported)
_REPEATS = {_C.MAX_REPEAT, _C.MIN_REPEAT, getattr(_C, "POSSESSIVE_REPEAT", _C.MAX_REPEAT)}
_CANDIDATES = "a Z0(,:=-.|[]\t/_x"
_GENERIC = (" ", "(", "[", "a", "a ", "|", "0", "\t", "a, ", ":", "=", "x\n", "((a", "a|")


def _class_matches(items: list[tuple[Any, Any]], char: str) -> bool:
    code = ord(char)
    negate = False
    hit = False
    for op, av in items:
        if op is _C.NEGATE:
            negate = True
        elif op is _C.LITERAL:
            hit = hit or av == code
        elif op is _C.RANGE:
            hit = hit or av[0] <= code <= av[1]
        elif op is _C.CATEGORY:
            hit = hit or bool(re.fullmatch(_CATEGORY_RE[str(av)], char))
    return hit != negate


_CATEGORY_RE = {
    "CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W",
}


def _one(op: Any, av: Any) -> str:  # noqa: PLR0911 (one case per opcode)
    """A shortest text one item matches (assertions and anchors: none)."""
    if op is _C.LITERAL:
        return chr(av)
    if op is _C.NOT_LITERAL:
        return "a" if av != ord("a") else "b"
    if op is _C.ANY:
        return "a"
    if op is _C.IN:
        return next((c for c in _CANDIDATES if _class_matches(av, c)), "a")
    if op is _C.SUBPATTERN:
        return _text(av[-1])
    if op is _C.BRANCH:
        return _text(av[1][0])
    if op in _REPEATS:
        low, _high, sub = av
        return _text(sub) * low
    if op is getattr(_C, "ATOMIC_GROUP", None):
        return _text(av)
    return ""


def _text(items: Any) -> str:
    return "".join(_one(op, av) for op, av in items)


def _ways_in(items: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """(prefix, pump) for every unbounded repetition reachable in ``items``."""
    items = list(items)
    for index, (op, av) in enumerate(items):
        if op in _REPEATS:
            low, high, sub = av
            if high == _MAXREPEAT:
                yield prefix + _text(sub) * low, _text(sub) or "a"
            yield from _ways_in(sub, prefix)
        elif op is _C.SUBPATTERN:
            yield from _ways_in(av[-1], prefix)
        elif op is _C.BRANCH:
            for branch in av[1]:
                yield from _ways_in(branch, prefix)
        elif op is getattr(_C, "ATOMIC_GROUP", None):
            yield from _ways_in(av, prefix)
        prefix += _one(op, av)
        del index


def families(pattern: re.Pattern[str]) -> dict[str, Callable[[int], str]]:
    """Named adversarial inputs of any length ``n`` for ``pattern``."""
    tree = sre.parse(pattern.pattern, pattern.flags)
    out: dict[str, Callable[[int], str]] = {}
    for prefix, pump in _ways_in(tree, ""):
        if prefix:
            out[f"repeat {prefix!r}"] = _repeat(prefix)
            out[f"repeat {prefix + pump!r}"] = _repeat(prefix + pump)
        out[f"{prefix!r} then {pump!r}..."] = _lead(prefix, pump)
    whole = _text(tree)
    if whole:
        out[f"repeat {whole[:-1]!r}"] = _repeat(whole[:-1] or whole)
    for generic in _GENERIC:
        out[f"repeat {generic!r}"] = _repeat(generic)
    return out


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


def _lead(prefix: str, pump: str) -> Callable[[int], str]:
    return lambda n: prefix + (pump * (n // len(pump) + 1))[: max(n - len(prefix), 0)]


def cpu_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    """The least thread CPU time of ``repeats`` runs (immune to waiting for a core)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        run()
        best = min(best, time.thread_time() - start)
    return best
