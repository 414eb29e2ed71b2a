"""Bad configuration as a table: each row is a bad setting or a bad rules file and the exact
problems ``keycloak-sidecar --check-config`` reports (blackbox_exporter's
``TestLoadBadConfigs`` style).  Driven through the real command-line entry in-process;
``{tmp}`` in a row stands for the test's own temporary directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sidecar.__main__ import main
from sidecar.settings import parse_duration

EXIT_CONFIG = 2
EVENTS = (
    "['boot', 'cluster_degraded', 'cluster_view', 'db_unavailable', 'ignore', 'node_joined', "
    "'node_left', 'runtime_fatal', 'shutdown', 'startup_complete', 'startup_fatal', "
    "'startup_progress']"
)
GOOD_RULE = {"id": "quiet", "event": "ignore", "contains": "harmless"}


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    problems: list[str]
    env: dict[str, str] = field(default_factory=dict)
    rules: object = None  # JSON document written to {tmp}/rules.json (str: written as is)


CASES = [
    # --- one setting, one problem
    Case(
        "duration-with-unknown-unit",
        ["--probe-interval=5parsecs"],
        [
            "--probe-interval='5parsecs': not a duration: '5parsecs' "
            "(use e.g. 250ms, 30s, 1m30s, 1h)"
        ],
    ),
    Case(
        "duration-zero",
        ["--membership-grace=0s"],
        ["--membership-grace='0s': must be greater than zero"],
    ),
    Case(
        "listen-on-keycloaks-port",
        ["--listen=0.0.0.0:8080"],
        ["--listen='0.0.0.0:8080': port 8080 collides with Keycloak HTTP in the Keycloak pod"],
    ),
    Case(
        "listen-port-out-of-range",
        ["--listen=0.0.0.0:70000"],
        ["--listen='0.0.0.0:70000': port out of range: 70000"],
    ),
    Case(
        "listen-without-port",
        ["--listen=localhost"],
        ["--listen='localhost': not HOST:PORT: 'localhost'"],
    ),
    Case(
        "negative-kill-budget",
        ["--kill-budget=-1"],
        ["--kill-budget='-1': must not be negative"],
    ),
    Case(
        "unknown-log-source",
        ["--log-source=syslog"],
        ["--log-source='syslog': must be one of file, kubernetes"],
    ),
    Case(
        "unknown-log-level",
        ["--log-level=loud"],
        ["--log-level='loud': must be one of debug, info, warning, error"],
    ),
    Case(
        "keycloak-url-not-http",
        ["--keycloak-url=ftp://keycloak"],
        ["--keycloak-url='ftp://keycloak': not an http(s) URL: 'ftp://keycloak'"],
    ),
    Case(
        "keycloak-url-port-out-of-range",
        ["--keycloak-url=http://127.0.0.1:90000"],
        ["--keycloak-url='http://127.0.0.1:90000': port out of range: 90000"],
    ),
    Case(
        "probe-path-without-slash",
        ["--probe-live-path=health/live"],
        ["--probe-live-path='health/live': HTTP path must start with '/': 'health/live'"],
    ),
    Case(
        "not-a-boolean",
        ["--emit-events=maybe"],
        ["--emit-events='maybe': not a boolean: 'maybe' (use true or false)"],
    ),
    Case(
        "unknown-environment-variable",
        [],
        ["SIDECAR_PROBE_INTERVALL: unknown setting (known: see --help)"],
        env={"SIDECAR_PROBE_INTERVALL": "5s"},
    ),
    Case(
        "bad-environment-value",
        [],
        ["SIDECAR_KILL_BUDGET='many': not a whole number: 'many'"],
        env={"SIDECAR_KILL_BUDGET": "many"},
    ),
    # --- settings that contradict each other
    Case(
        "timeout-longer-than-interval",
        ["--probe-timeout=10s", "--probe-interval=5s"],
        ["--probe-timeout must not exceed --probe-interval"],
    ),
    Case(
        "deadline-shorter-than-progress-timeout",
        ["--startup-deadline=1m", "--progress-timeout=5m"],
        ["--startup-deadline must not be shorter than --progress-timeout"],
    ),
    Case(
        "api-log-source-without-kubernetes",
        ["--log-source=kubernetes", "--no-kubernetes"],
        ["--log-source kubernetes needs the Kubernetes side (--no-kubernetes set)"],
    ),
    Case(
        "ca-file-and-skip-verify",
        ["--probe-ca-file={tmp}/ca.pem", "--probe-insecure-skip-verify"],
        ["--probe-ca-file and --probe-insecure-skip-verify exclude each other"],
    ),
    Case(
        "keycloak-url-is-the-sidecar-itself",
        ["--keycloak-url=http://127.0.0.1:9095", "--listen=0.0.0.0:9095"],
        [
            "--keycloak-url='http://127.0.0.1:9095' is the sidecar's own --listen address "
            "(port 9095): it would probe itself, not Keycloak"
        ],
    ),
    Case(
        "keycloak-url-is-the-sidecar-itself-by-name",
        ["--keycloak-url=http://localhost:9200/", "--listen=127.0.0.1:9200"],
        [
            "--keycloak-url='http://localhost:9200' is the sidecar's own --listen address "
            "(port 9200): it would probe itself, not Keycloak"
        ],
    ),
    # --- files the settings name
    Case(
        "log-file-is-a-directory",
        ["--log-file={tmp}"],
        ["--log-file='{tmp}': is a directory, not a log file"],
    ),
    Case(
        "ca-file-missing",
        ["--probe-ca-file={tmp}/missing.pem"],
        ["--probe-ca-file='{tmp}/missing.pem': file is missing or not readable"],
    ),
    # --- rules files
    Case(
        "rules-not-json",
        ["--rules-file={tmp}/rules.json"],
        ["{tmp}/rules.json: not valid JSON: Expecting value: line 1 column 1 (char 0)"],
        rules="not json",
    ),
    Case(
        "rules-not-a-list",
        ["--rules-file={tmp}/rules.json"],
        ['{tmp}/rules.json: expected a list of rule objects (or {{"rules": [...]}})'],
        rules={"rules": 3},
    ),
    Case(
        "rules-unknown-top-level-key",
        ["--rules-file={tmp}/rules.json"],
        ["{tmp}/rules.json: unknown top-level key 'rule' (known: 'contexts', 'rules')"],
        rules={"rules": [GOOD_RULE], "rule": []},
    ),
    Case(
        "rule-unknown-key",
        ["--rules-file={tmp}/rules.json"],
        ["{tmp}/rules.json rule #1: unknown key 'colour'"],
        rules=[{**GOOD_RULE, "colour": "red"}],
    ),
    Case(
        "rule-unknown-event",
        ["--rules-file={tmp}/rules.json"],
        [f"{{tmp}}/rules.json rule #1 (quiet): 'event' must be one of {EVENTS}, got 'mute'"],
        rules=[{**GOOD_RULE, "event": "mute"}],
    ),
    Case(
        "rule-bad-regex",
        ["--rules-file={tmp}/rules.json"],
        [
            "{tmp}/rules.json rule #1 (quiet): 'pattern' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 0"
        ],
        rules=[{**GOOD_RULE, "pattern": "(harmless"}],
    ),
    Case(
        "rule-needle-too-short",
        ["--rules-file={tmp}/rules.json"],
        [
            "{tmp}/rules.json rule #1 (quiet): needs 'contains', a literal substring of at "
            "least 3 characters every matching line has (the pre-filter)"
        ],
        rules=[{**GOOD_RULE, "event": "startup_progress", "contains": "ha"}],
    ),
    Case(
        "rules-missing-and-duplicate-id",
        ["--rules-file={tmp}/rules.json"],
        [
            "{tmp}/rules.json rule #1: 'id' must be a non-empty string",
            "{tmp}/rules.json rule #3: duplicate id 'quiet'",
        ],
        rules=[{"event": "ignore", "contains": "harmless"}, GOOD_RULE, GOOD_RULE],
    ),
    # --- everything at once
    Case(
        "all-problems-at-once",
        [
            "--probe-interval=often",
            "--startup-deadline=1m",
            "--progress-timeout=5m",
            "--log-file={tmp}",
            "--rules-file={tmp}/rules.json",
        ],
        [
            "--probe-interval='often': not a duration: 'often' (use e.g. 250ms, 30s, 1m30s, 1h)",
            "--startup-deadline must not be shorter than --progress-timeout",
            "--log-file='{tmp}': is a directory, not a log file",
            "{tmp}/rules.json rule #1: unknown key 'colour'",
        ],
        rules=[{**GOOD_RULE, "colour": "red"}],
    ),
]


CheckConfig = Callable[[Case], tuple[int, list[str]]]


@pytest.fixture
def check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> CheckConfig:
    for key in list(os.environ):
        if key.startswith("SIDECAR_"):
            monkeypatch.delenv(key)
    (tmp_path / "ca.pem").write_text("not checked here\n")

    def run(case: Case) -> tuple[int, list[str]]:
        for key, value in case.env.items():
            monkeypatch.setenv(key, value)
        if case.rules is not None:
            text = case.rules if isinstance(case.rules, str) else json.dumps(case.rules)
            (tmp_path / "rules.json").write_text(text)
        args = [arg.format(tmp=tmp_path) for arg in case.args]
        code = main(["--check-config", *args])
        err = capsys.readouterr().err
        return code, [line.removeprefix("  - ") for line in err.splitlines()[1:]]

    return run


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_configuration_is_reported_exactly(
    case: Case, check_config: CheckConfig, tmp_path: Path
) -> None:
    code, problems = check_config(case)
    assert problems == [p.format(tmp=tmp_path) for p in case.problems]
    assert code == EXIT_CONFIG


def test_good_configuration_passes(check_config: CheckConfig) -> None:
    """The table's baseline: the same door accepts a sound configuration."""
    good = Case(
        "good",
        [
            "--probe-interval=1m30s",
            "--worker-stall-timeout=3m",
            "--keycloak-url=http://127.0.0.1:9000",
            "--rules-file={tmp}/rules.json",
        ],
        [],
        rules={"rules": [GOOD_RULE]},
    )
    assert check_config(good) == (0, [])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("250ms", 0.25), ("1m30s", 90.0), ("1h30m", 5400.0), ("2m 5s", 125.0)],
)
def test_durations_combine_units_like_kubernetes(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1x", "m30", "1m30", "30s1m1", ""])
def test_durations_reject_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("command", [[], ["analyze"], ["demo"]])
def test_help_names_no_internal_names_and_lists_choices(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = capsys.readouterr().out
    assert not re.search(r"\b(ANALYZE|DEMO)_[A-Z_]+", text)
    if not command:
        assert "{file,kubernetes}" in text
        assert "{debug,info,warning,error}" in text
