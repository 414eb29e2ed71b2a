"""The rule table as data (sidecar/data/rules.toml) and the rule compiler shared with user files."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import regex_work
from corpus import load_corpus

from sidecar.log import classify
from sidecar.log.classify import make_record
from sidecar.log.rules import (
    BUILTIN_RULES_RESOURCE,
    RuleError,
    builtin_rules,
    compile_rules,
    derive_needle,
    literal_runs,
    load_rules_file,
)

BUILTIN_TOML = Path(str(resources.files("sidecar").joinpath(BUILTIN_RULES_RESOURCE)))


def fields(rule: Any) -> tuple[object, ...]:
    """A rule without its origin (the file it came from)."""
    pattern = rule.pattern.pattern if rule.pattern else None
    return (rule.id, rule.event, rule.contains, rule.reason, pattern, rule.levels,
            rule.category, rule.boot_marker, rule.once_per_boot, rule.view)


def test_builtin_table_is_the_toml_file_compiled_like_a_user_rules_file() -> None:
    as_user_file = load_rules_file(str(BUILTIN_TOML))
    assert [fields(r) for r in as_user_file] == [fields(r) for r in builtin_rules()]
    assert {r.origin for r in builtin_rules()} == {"built-in"}
    assert {r.origin for r in as_user_file} == {str(BUILTIN_TOML)}


def test_builtin_table_is_shipped_as_package_data() -> None:
    assert BUILTIN_TOML.is_file()
    assert "[[rules]]" in BUILTIN_TOML.read_text(encoding="utf-8")


def test_user_rules_file_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[rules]]\nid = 'vault'\nevent = 'startup_fatal'\nreason = 'config'\n"
                    "pattern = 'Vault sealed: \\w+'\nlevels = ['ERROR']\n")
    (rule,) = load_rules_file(str(path))
    assert rule.contains == "Vault sealed: "
    assert rule.pattern is not None and rule.pattern.pattern == r"Vault sealed: \w+"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("toml-syntax", "[[rules]\nid = 'x'\n", "not valid TOML"),
        ("toml-shape", "rules = 3\n", "expected [[rules]] tables"),
        ("toml-bad-rule", "[[rules]]\nid = 'x'\nevent = 'boom'\ncontains = 'abc'\n",
         "'event' must be one of"),
    ],
)
def test_bad_toml_rules_file_is_reported(tmp_path: Path, name: str, text: str,
                                         message: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(RuleError, match=re.escape(message)):
        load_rules_file(str(path))


def test_json_and_toml_user_files_compile_alike(tmp_path: Path) -> None:
    rule = {"id": "v", "event": "startup_fatal", "reason": "config", "pattern": "Vault sealed"}
    (tmp_path / "r.json").write_text(json.dumps({"rules": [rule]}))
    (tmp_path / "r.toml").write_text("[[rules]]\n" + "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in rule.items()))
    from_json = load_rules_file(str(tmp_path / "r.json"))
    from_toml = load_rules_file(str(tmp_path / "r.toml"))
    assert [fields(r) for r in from_json] == [fields(r) for r in from_toml]


# --- the pre-filter literal derived from a pattern -------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        ("Vault sealed: \\w+", "Vault sealed: "),
        ("Vault [^)]+ sealed|Vault unavailable", "Vault "),  # issue 15: both branches
        ("Vault (sealed|gone)|Vault unavailable", "Vault "),
        ("sealed vault|vault unavailable", "vault"),
        ("abc|xyz", ""),  # nothing every branch has
        ("Vault [|] sealed", " sealed"),  # '|' inside a class is no alternation
        ("Vault [)(] sealed", " sealed"),
        ("Vault[]|] sealed", " sealed"),  # ']' first in a class is literal
        ("(?:a|b)Vaultx?seal", "Vault"),  # an optional character is not required
        ("Vaul{1,3} sealed", " sealed"),
        ("Vault\\.sealed", "Vault.sealed"),
        ("Vault\\d+ sealed", " sealed"),
        ("(?i)Vault sealed", ""),  # the pattern ignores case, the pre-filter does not
        ("Vault.*sealed", "sealed"),
        ("a{x}bcd", "a{x}bcd"),  # not a quantifier: literal braces
    ],
)
def test_derived_needle(pattern: str, needle: str) -> None:
    assert derive_needle(re.compile(pattern)) == needle


def test_top_level_branches_are_read_separately() -> None:
    assert literal_runs("Vault [^)]+ sealed|Vault unavailable") == [
        ["Vault ", " sealed"], ["Vault unavailable"]]


def test_user_rule_with_alternation_matches_both_branches() -> None:
    """The derived pre-filter must not hide either branch (issue 15 item 6)."""
    (rule,) = compile_rules(
        [{"id": "vault", "event": "startup_fatal", "reason": "config",
          "pattern": "Vault [^)]+ sealed|Vault unavailable"}], origin="test")
    for message in ("Vault k8s-main sealed", "Vault unavailable"):
        assert rule.matches(message, "ERROR", "org.acme"), message


def test_rule_without_a_common_literal_needs_contains() -> None:
    with pytest.raises(RuleError, match="needs 'contains'"):
        compile_rules([{"id": "x", "event": "startup_fatal", "reason": "config",
                        "pattern": "sealed vault|broken store"}], origin="test")


CORPUS_BODIES = [make_record(e["text"].split("\n"), 1).body for e in load_corpus()]


@pytest.mark.parametrize("rule", [r for r in builtin_rules() if r.pattern is not None],
                         ids=lambda r: r.id)
def test_derived_needle_is_in_every_real_record_the_pattern_matches(rule: Any) -> None:
    """Soundness of the derivation on real data: a derived needle never hides a match."""
    needle = derive_needle(rule.pattern)
    matched = [body for body in CORPUS_BODIES if rule.pattern.search(body)]
    assert all(needle in body for body in matched)


# --- linear time on adversarial input (issue 15 item 2) ----------------------------------------
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "rules.toml"
CLASSIFIER_PATTERNS = {
    "classify._VIEW_RE": classify._VIEW_RE,
    "classify._CODE_RE": classify._CODE_RE,
    "classify._MEMBER_SPLIT_RE": classify._MEMBER_SPLIT_RE,
    "classify._SERVICES_RE": classify._SERVICES_RE,
}
ALL_PATTERNS = {
    **{f"built-in {r.id}": r.pattern for r in builtin_rules() if r.pattern is not None},
    **{f"example {r.id}": r.pattern for r in load_rules_file(str(EXAMPLES)) if r.pattern},
    **CLASSIFIER_PATTERNS,
}
SHORT, LONG = 12_500, 100_000  # 8x the text: 8x the work when linear, 64x when quadratic
GROWTH_BOUND = 20


def linear_baseline_seconds(text: str) -> float:
    """A pass over ``text`` that is linear by construction (the noise floor of a measurement)."""
    probe = re.compile(r"[\x00-\x08]")
    return regex_work.cpu_seconds(lambda: probe.findall(text))


@pytest.mark.parametrize("name", sorted(ALL_PATTERNS))
def test_pattern_work_grows_linearly_on_adversarial_input(name: str) -> None:
    pattern = ALL_PATTERNS[name]
    grew = {}
    for family, make in regex_work.families(pattern).items():
        short, long = make(SHORT), make(LONG)
        short_seconds = regex_work.cpu_seconds(lambda: pattern.search(short))
        long_seconds = regex_work.cpu_seconds(lambda: pattern.search(long))
        floor = linear_baseline_seconds(long)
        if long_seconds > GROWTH_BOUND * short_seconds + floor:
            grew[family] = round(long_seconds / max(short_seconds, 1e-9))
    assert grew == {}, f"work grows faster than the input on {grew}"


def test_the_work_measure_catches_a_quadratic_pattern() -> None:
    """The measure can fail: a pattern that rescans the rest of the line from every start."""
    quadratic = re.compile(r"Node (?P<node>.+?) joined the cluster")
    make = regex_work.families(quadratic)["repeat 'Node a'"]
    short, long = make(SHORT // 8), make(LONG // 8)
    short_seconds = regex_work.cpu_seconds(lambda: quadratic.search(short))
    long_seconds = regex_work.cpu_seconds(lambda: quadratic.search(long))
    assert long_seconds > GROWTH_BOUND * short_seconds + linear_baseline_seconds(long)


def test_example_rules_file_compiles() -> None:
    rules = load_rules_file(str(EXAMPLES))
    assert [r.id for r in rules] == ["vault-sealed", "acme-provider", "acme-theme-noise"]
    vault = rules[0]
    assert vault.contains == "Vault "
    assert all(vault.matches(m, "ERROR", "x") for m in ("Vault main sealed", "Vault unavailable"))


def test_context_by_name_or_list_narrows_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[contexts]\nvault = ['Vault', 'vault']\n"
                    "[[rules]]\nid = 'a'\nevent = 'startup_fatal'\nreason = 'config'\n"
                    "contains = 'sealed'\ncontext = 'vault'\n"
                    "[[rules]]\nid = 'b'\nevent = 'startup_fatal'\nreason = 'config'\n"
                    "contains = 'unsealed'\ncontext = ['HSM']\n")
    by_name, inline = load_rules_file(str(path))
    assert by_name.context == ("Vault", "vault")
    assert by_name.matches("vault main sealed", "ERROR", "x")
    assert not by_name.matches("door sealed", "ERROR", "x")
    assert inline.matches("HSM unsealed", "ERROR", "x")
    assert not inline.matches("door unsealed", "ERROR", "x")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"context": "nope"}, "unknown context 'nope'"),
        ({"context": []}, "'context' must be a context name or a list of strings"),
        ({"context": [1]}, "'context' must be a context name or a list of strings"),
        ({"view": "yes"}, "'view' must be true or false"),
    ],
)
def test_bad_rule_fields_are_reported(entry: dict[str, object], message: str) -> None:
    rule = {"id": "x", "event": "startup_fatal", "reason": "config", "contains": "abc", **entry}
    with pytest.raises(RuleError, match=re.escape(message)):
        compile_rules([rule], origin="test")


def test_bad_named_context_is_reported() -> None:
    with pytest.raises(RuleError, match="context 'db' must be a non-empty list of strings"):
        compile_rules([], origin="test", contexts={"db": "JDBC"})
