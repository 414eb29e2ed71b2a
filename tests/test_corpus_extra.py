"""The tests' own real Keycloak records (issue 11), each judged by its label's contract.

Test ids name the class (the label) and the record.  Records the classifier still reads
wrong are listed in KNOWN_MISSES (strict xfail): fixing one makes its test fail until the
entry is removed.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
from corpus import load_corpus
from corpus_extra import Events, Verdict, load_extra, load_stories, run

from sidecar.log.classify import parse_view

RECORDS = load_extra()
FATAL = {"startup_fatal", "runtime_fatal"}
ALARMING = FATAL | {"cluster_degraded", "shutdown", "db_unavailable"}
#: reasons that say "the database is down": a configuration error must never carry them
DOWN_REASONS = {"db_unreachable", "unreachable", "refused", "timeout"}
DATABASE_LABELS = ("db_unavailable", "db_error")

#: record id -> what the classifier gets wrong today (remove the entry once it is right)
KNOWN_MISSES: dict[str, str] = {}
#: (record id, layout) -> why that database record still fails liveness in that layout
KNOWN_KILLS: dict[tuple[str, str], str] = {}


def _kinds(events: Events) -> list[str]:
    return [e["event"] for e in events]


def _reasons(events: Events, kinds: set[str]) -> set[str]:
    return {e.get("reason", "") for e in events if e["event"] in kinds}


def problems_with(label: str, events: Events, verdict: Verdict) -> list[str]:  # noqa: PLR0911
    """What is wrong with the reading of one record of ``label`` (empty: right)."""
    kinds = set(_kinds(events))
    got = f"got {_kinds(events)} {_reasons(events, ALARMING)} verdict {verdict}"
    if label == "db_unavailable":
        ok = "db_unavailable" in kinds and not kinds & FATAL and verdict["live"]
        return [] if ok else [f"db_unavailable: want a db_unavailable event, no fatal, live; {got}"]
    if label == "db_error":
        ok = not kinds & FATAL and verdict["live"]
        return [] if ok else [f"db_error: want no fatal event and live; {got}"]
    if label == "db_config":
        reported = kinds & (FATAL | {"db_unavailable"})
        reasons = _reasons(events, FATAL | {"db_unavailable"})
        ok = bool(reported) and not reasons & DOWN_REASONS
        return [] if ok else [f"db_config: want reported, not as 'database down'; {got}"]
    if label in ("benign_error", "cluster_other", "startup_progress_quiet"):
        ok = not kinds & ALARMING and verdict["live"]
        return [] if ok else [f"{label}: want nothing alarming and live; {got}"]
    if label == "cluster_degraded":
        ok = "cluster_degraded" in kinds and not kinds & FATAL and verdict["live"]
        return [] if ok else [f"cluster_degraded: want the event, no fatal, live; {got}"]
    if label == "startup_failed_fatal":
        ok = "startup_fatal" in kinds and all(_reasons(events, {"startup_fatal"}))
        ok = ok and not verdict["started"] and not verdict["live"]
        return [] if ok else [f"startup_failed_fatal: want a fatal with a reason, not live; {got}"]
    if label == "shutdown":
        ok = "shutdown" in kinds and not kinds & FATAL
        return [] if ok else [f"shutdown: want a shutdown event, no fatal; {got}"]
    if label == "cluster_view":
        return _view_problems(events, verdict)
    if label in ("node_joined", "node_left"):
        ok = label in kinds and not kinds & FATAL
        return [] if ok else [f"{label}: want the event, no fatal; {got}"]
    if label == "startup_complete":
        ok = "startup_complete" in kinds and verdict["started"]
        return [] if ok else [f"startup_complete: want the completion, started; {got}"]
    if label == "startup_progress":
        ok = "startup_progress" in kinds and not kinds & ALARMING
        return [] if ok else [f"startup_progress: want progress, nothing alarming; {got}"]
    return [f"unknown label {label}"]


def _view_problems(events: Events, verdict: Verdict) -> list[str]:
    kinds = set(_kinds(events))
    ok = "cluster_view" in kinds and not kinds & FATAL and verdict["live"]
    return [] if ok else [f"cluster_view: want the view, no fatal, live; got {_kinds(events)}"]


@pytest.mark.parametrize(
    "record", [r for r in RECORDS if "expected_view_id" in r], ids=lambda r: r["id"]
)
def test_view_members_are_parsed(record: dict[str, Any]) -> None:
    view = parse_view(record["text"])
    assert view is not None
    assert (view.view_id, view.coordinator, view.size) == (
        record["expected_view_id"],
        record["expected_coordinator"],
        record["expected_size"],
    )
    assert list(view.members) == record["expected_members"]


def _params(records: list[dict[str, Any]]) -> list[Any]:
    out = []
    for record in records:
        marks = ()
        if record["id"] in KNOWN_MISSES:
            marks = (pytest.mark.xfail(reason=KNOWN_MISSES[record["id"]], strict=True),)
        out.append(pytest.param(record, id=f"{record['label']}-{record['id']}", marks=marks))
    return out


@pytest.mark.parametrize("record", _params(RECORDS))
def test_record_is_read_by_its_class(record: dict[str, Any]) -> None:
    events, verdict = run(record["text"])
    assert problems_with(record["label"], events, verdict) == []


# --- the layouts the project reads, rendered from one plain record -------------------------
_PLAIN = re.compile(
    r"^(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+)\s+\[(?P<category>[^\]]+)\] "
    r"\((?P<thread>[^)]*)\) (?P<message>.*)$"
)
KUBECTL_STAMP = "2026-03-02T07:00:00.123456789Z "


def as_kubectl(text: str) -> str:
    """``kubectl logs --timestamps``: every physical line gets the stamp."""
    return "\n".join(KUBECTL_STAMP + line for line in text.split("\n"))


def as_quarkus_json(text: str) -> str | None:
    """The record in Keycloak's JSON log layout (None for a record that is not plain)."""
    first, *rest = text.split("\n")
    header = _PLAIN.match(first)
    if header is None:
        return None
    fields = {
        "timestamp": "2026-03-02T07:00:00.001Z",
        "sequence": 7,
        "loggerClassName": "org.jboss.logging.Logger",
        "loggerName": header["category"],
        "level": header["level"],
        "message": "\n".join([header["message"], *rest]),
        "threadName": header["thread"],
        "mdc": {},
    }
    return json.dumps(fields, separators=(",", ":"))


def _layouts(record: dict[str, Any]) -> dict[str, str]:
    out = {"as-printed": record["text"]}
    if record["format"] == "plain":
        out["kubectl"] = as_kubectl(record["text"])
        rendered = as_quarkus_json(record["text"])
        if rendered is not None:
            out["json"] = rendered
            out["kubectl-json"] = as_kubectl(rendered)
    return out


def _database_params() -> list[Any]:
    out = []
    for record in RECORDS:
        if record["label"] not in DATABASE_LABELS:
            continue
        for layout, text in _layouts(record).items():
            key = (record["id"], layout)
            marks = ()
            if key in KNOWN_KILLS:
                marks = (pytest.mark.xfail(reason=KNOWN_KILLS[key], strict=True),)
            out.append(
                pytest.param(text, id=f"{record['label']}-{record['id']}-{layout}", marks=marks)
            )
    return out


@pytest.mark.parametrize("text", _database_params())
def test_database_record_never_fails_liveness(text: str) -> None:
    """Whatever logger prints it and however it is shipped, a database record is no kill."""
    events, verdict = run(text)
    assert verdict["live"] is True, (_kinds(events), _reasons(events, FATAL))


def test_renderings_are_faithful() -> None:
    """The JSON rendering keeps logger, level, thread and the whole message."""
    text = (
        "2023-01-11 15:50:41,136 ERROR [org.hibernate.engine.jdbc.spi.SqlExceptionHelper] "
        "(Timer-0) Connection refused\n\tat a.B.c(B.java:1)"
    )
    rendered = as_quarkus_json(text)
    assert rendered is not None
    fields = json.loads(rendered)
    assert (fields["loggerName"], fields["level"], fields["threadName"]) == (
        "org.hibernate.engine.jdbc.spi.SqlExceptionHelper",
        "ERROR",
        "Timer-0",
    )
    assert fields["message"] == "Connection refused\n\tat a.B.c(B.java:1)"
    assert as_kubectl("a\nb") == f"{KUBECTL_STAMP}a\n{KUBECTL_STAMP}b"


def test_every_record_is_complete_and_sourced() -> None:
    ids = [r["id"] for r in RECORDS]
    assert len(ids) == len(set(ids))
    for record in RECORDS:
        assert record["source"].startswith("https://"), record["id"]
        assert record["era"] in ("wildfly", "quarkus"), record["id"]
        assert record["note"] and record["keycloak_version"] and record["format"], record["id"]


# --- boot stories: several records in order, with the conclusions expected of them ----------
STORIES = load_stories()
#: story name -> what the pipeline still concludes wrong (remove the entry once it is right)
KNOWN_STORY_MISSES: dict[str, str] = {}


def story_problems(expect: dict[str, Any], events: Events, verdict: Verdict) -> list[str]:
    """The expected conclusions of one story that the reading does not reach."""
    kinds = set(_kinds(events))
    reported = _reasons(events, FATAL | {"db_unavailable"})
    found = {
        "fatal": bool(kinds & FATAL),
        "shutdown": "shutdown" in kinds,
        "db_unavailable": "db_unavailable" in kinds,
        "cluster_degraded": "cluster_degraded" in kinds,
        "started": verdict["started"],
        "live": verdict["live"],
        "reported": bool(kinds & (FATAL | {"db_unavailable"})),
        "no_down_reasons": not reported & DOWN_REASONS,
    }
    return [
        f"{key}: want {want}, got {found[key]}"
        for key, want in expect.items()
        if found[key] != want
    ]


def _story_params() -> list[Any]:
    out = []
    for log, meta in STORIES:
        marks = ()
        if log.stem in KNOWN_STORY_MISSES:
            marks = (pytest.mark.xfail(reason=KNOWN_STORY_MISSES[log.stem], strict=True),)
        out.append(pytest.param(log, meta, id=f"story-{log.stem}", marks=marks))
    return out


@pytest.mark.parametrize(("log", "meta"), _story_params())
def test_story_conclusions(log: pathlib.Path, meta: dict[str, Any]) -> None:
    events, verdict = run(log.read_text(encoding="utf-8").rstrip("\n"))
    assert story_problems(meta["expect"], events, verdict) == [], _kinds(events)


def test_every_story_is_sourced_and_expects_something() -> None:
    assert STORIES
    for log, meta in STORIES:
        assert log.is_file(), log
        assert meta["source"].startswith("https://"), log
        assert meta["expect"], log


def _reading(text: str) -> tuple[list[tuple[str, str]], bool, bool]:
    events, verdict = run(text)
    kinds = [(e["event"], e.get("reason", "")) for e in events if e["event"] != "boot"]
    return kinds, verdict["started"], verdict["live"]


def _layout_params() -> list[Any]:
    out = []
    for record in RECORDS:
        for layout, text in _layouts(record).items():
            if layout == "as-printed":
                continue
            key = (record["id"], layout)
            marks = ()
            if key in KNOWN_LAYOUT_DIFFS:
                marks = (pytest.mark.xfail(reason=KNOWN_LAYOUT_DIFFS[key], strict=True),)
            out.append(
                pytest.param(
                    record["text"],
                    text,
                    id=f"{record['label']}-{record['id']}-{layout}",
                    marks=marks,
                )
            )
    return out


#: (record id, layout) -> how the reading differs from the record as printed today
KNOWN_LAYOUT_DIFFS: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(("printed", "rendered"), _layout_params())
def test_layout_does_not_change_the_reading(printed: str, rendered: str) -> None:
    """The same record under kubectl's stamp or in Keycloak's JSON layout reads the same."""
    assert _reading(rendered) == _reading(printed)


def test_records_are_new_to_the_shared_corpus() -> None:
    """The tests' corpus grows the shared one; it does not copy it."""
    shared = {entry["text"].split("\n")[0] for entry in load_corpus()}
    copied = [r["id"] for r in RECORDS if r["text"].split("\n")[0] in shared]
    assert copied == []
