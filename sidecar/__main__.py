"""Command line: the daemon (default), ``analyze`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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
        "sub-command it runs the daemon. Every flag is also a SIDECAR_* environment variable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings (and files they name), then exit 0 or 2",
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
        help="extra classification rules (JSON)",
    )
    demo = sub.add_parser(
        "demo",
        help="serve the endpoints while a bundled, real-lines replay "
        "of a two-replica Keycloak story plays",
    )
    demo.add_argument("--listen", dest="demo_listen", default="127.0.0.1:9095")
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
        settings = _settings(args)
        if args.command == "analyze" and args.analyze_rules_file:
            settings = _with_rules(settings, args.analyze_rules_file)
        _check_files(settings)
        rules = _rules(settings)
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

        return run_demo(listen=args.demo_listen, speed=args.speed, keep_serving=args.keep_serving)
    from sidecar.runtime import main as run_daemon

    return run_daemon(settings, rules)


def _check_files(settings: Settings) -> None:
    problems = check_files(settings)
    if problems:
        raise ConfigError(problems)


def _with_rules(settings: Settings, path: str) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, rules_file=path)


def _rules(settings: Settings) -> tuple[Rule, ...]:
    from sidecar.log.rules import RuleError, builtin_rules, load_rules_file

    try:
        user = load_rules_file(settings.rules_file) if settings.rules_file else ()
    except RuleError as error:
        raise ConfigError(error.problems) from error
    # user rules first: they can refine or silence built-in ones
    return (*user, *builtin_rules())


if __name__ == "__main__":
    sys.exit(main())
