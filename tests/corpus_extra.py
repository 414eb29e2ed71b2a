"""The tests' own labelled real Keycloak records (tests/data/corpus) and boot stories
(tests/data/stories), and one way to run them through the daemon's own analysis.

Each record carries its source URL.  Labels are the shared corpus's, plus three for the
database (issue 11):

- ``db_unavailable``: the database cannot be reached, refused, timed out: a
  ``db_unavailable`` event, never a fatal one, liveness untouched;
- ``db_config``: wrong credentials, driver or URL: reported (a fatal or a database event),
  never with a "database down" reason, so the two stay distinguishable;
- ``db_error``: any other database record from any logger: never fatal, never a kill.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

from sidecar.core.health import Policy
from sidecar.log.rules import builtin_rules
from sidecar.tools import analyze

DATA = pathlib.Path(__file__).resolve().parent / "data"
CORPUS_DIR = DATA / "corpus"
STORIES_DIR = DATA / "stories"
RULES = builtin_rules()

Events = list[dict[str, Any]]
Verdict = dict[str, Any]


def load_extra() -> list[dict[str, Any]]:
    """Every record of tests/data/corpus/*.jsonl, in file order."""
    records: list[dict[str, Any]] = []
    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records


def load_stories() -> list[tuple[pathlib.Path, dict[str, Any]]]:
    """Each story's log file with its expectations (the ``.json`` beside it)."""
    return [
        (path.with_suffix(".log"), json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(STORIES_DIR.glob("*.json"))
    ]


def run(text: str) -> tuple[Events, Verdict]:
    """The events ``analyze --json`` prints for ``text`` and its final verdict."""
    out = io.StringIO()

    def emit(event: Any, _verdicts: Any) -> None:
        out.write(json.dumps(event.to_json()) + "\n")

    result = analyze.analyze(iter([(text + "\n").encode()]), RULES, Policy(), on_event=emit)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return events, analyze.verdict_json(result.verdicts)["verdict"]  # type: ignore[return-value]
