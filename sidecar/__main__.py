"""Command line: the daemon (default), ``analyze`` and ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from sidecar import __version__
from sidecar.log.rules import Rule
from sidecar.settings import (
    ConfigError,
    Settings,
    add_arguments,
    check_files,
    load_settings,
    policy_from_settings,
)

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keycloak-sidecar",
        description="Health-monitoring sidecar for clustered Keycloak on Kubernetes. Without a "
        "sub-command it runs the daemon. Every flag is also a SIDECAR_* environment variable. "
        "A DURATION is e.g. 250ms, 30s, 1m30s or 1h (a bare number is seconds).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings, the files they name and the rules file; report every "
        "problem at once, then exit 0 or 2",
    )
    add_arguments(parser)
    sub = parser.add_subparsers(dest="command")
    analyze = sub.add_parser(
        "analyze",
        help="replay a log file through the classifier and "
        "policy; print a timeline (or JSON lines)",
    )
    analyze.add_argument("file", help="Keycloak log file, or - for standard input")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line")
    analyze.add_argument("--quiet", action="store_true", help="print only a one-line JSON summary")
    analyze.add_argument(
        "--rules-file",
        dest="analyze_rules_file",
        default=None,
        metavar="PATH",
        help="extra classification rules (JSON), as the daemon's --rules-file",
    )
    demo = sub.add_parser(
        "demo",
        help="serve the endpoints while a bundled, real-lines replay "
        "of a two-replica Keycloak story plays",
    )
    demo.add_argument(
        "--listen",
        dest="demo_listen",
        default="127.0.0.1:9095",
        metavar="HOST:PORT",
        help="first replica's sidecar address; the second uses the next port "
        "(default 127.0.0.1:9095)",
    )
    demo.add_argument(
        "--story",
        choices=("2015", "26"),
        default="2015",
        help="2015: the WildFly-era Liquibase race with plain logs; 26: Keycloak 26 with JSON "
        "logs (default 2015)",
    )
    demo.add_argument(
        "--speed", type=float, default=1.0, help="replay speed factor (2 = twice as fast)"
    )
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep serving after the replay ends (until Ctrl-C)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    values = {k: v for k, v in vars(args).items() if isinstance(v, str) or v is None}
    return load_settings(values, os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings, rules = _validated(args)
    except ConfigError as error:
        sys.stderr.write(f"keycloak-sidecar: {error}\n")
        return EXIT_CONFIG
    if args.check_config:
        sys.stdout.write("configuration is valid\n")
        return 0
    if args.command == "analyze":
        from sidecar.tools import analyze

        return analyze.run(
            args.file,
            rules,
            policy_from_settings(settings),
            as_json=args.json,
            quiet=args.quiet,
            max_line_bytes=settings.log_max_line_bytes,
            max_record_lines=settings.log_max_record_lines,
            out=sys.stdout,
        )
    if args.command == "demo":
        from sidecar.tools.demo import run as run_demo

        return run_demo(
            story=args.story,
            listen=args.demo_listen,
            speed=args.speed,
            keep_serving=args.keep_serving,
        )
    from sidecar.runtime import main as run_daemon

    return run_daemon(settings, rules)


def _validated(args: argparse.Namespace) -> tuple[Settings, tuple[Rule, ...]]:
    """Settings, files and rules checked together: one ``ConfigError`` lists every problem."""
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = _settings(args)
        values: Mapping[str, Any] = {f.name: getattr(settings, f.name) for f in fields(settings)}
    except ConfigError as error:
        problems.extend(error.problems)
        values = error.values
    if args.command == "analyze" and args.analyze_rules_file:
        values = {**values, "rules_file": args.analyze_rules_file}
        if settings is not None:
            settings = dataclasses.replace(settings, rules_file=args.analyze_rules_file)
    problems.extend(check_files(values))
    rules: tuple[Rule, ...] = ()
    try:
        rules = _rules(values.get("rules_file", ""))
    except ConfigError as error:
        problems.extend(error.problems)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings, rules


def _rules(rules_file: str) -> tuple[Rule, ...]:
    from sidecar.log.rules import RuleError, builtin_rules, load_rules_file

    try:
        user = load_rules_file(rules_file) if rules_file else ()
    except RuleError as error:
        raise ConfigError(error.problems) from error
    # user rules first: they can refine or silence built-in ones
    return (*user, *builtin_rules())


if __name__ == "__main__":
    sys.exit(main())
