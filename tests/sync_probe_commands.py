"""Copy the fail-open probe commands of k8s/base/keycloak.yaml into every k8s/examples file.

The base is the one source of truth (``test_integrations.py`` fails when an example differs);
after changing the base's commands, run ``python tests/sync_probe_commands.py``.  Each example
writes a command as one flow-style line, ``command: ["/bin/bash", "-c", "..."]`` (JSON is
YAML), so a line is replaced by the base's command for the same path (``/startupz``,
``/livez``), keeping its indentation.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "k8s" / "examples"
COMMAND_LINE = re.compile(r'^(?P<indent>\s*)command: (?P<list>\["/bin/bash".*/dev/tcp/.*\])$', re.M)
PROBES = {"startupProbe": "/startupz", "livenessProbe": "/livez"}


def base_commands() -> dict[str, list[str]]:
    """The base's exec commands by the sidecar path they ask."""
    for doc in yaml.safe_load_all((ROOT / "k8s" / "base" / "keycloak.yaml").read_text()):
        if doc and doc["kind"] == "StatefulSet":
            containers = doc["spec"]["template"]["spec"]["containers"]
            keycloak = next(c for c in containers if c["name"] == "keycloak")
            return {path: keycloak[kind]["exec"]["command"] for kind, path in PROBES.items()}
    raise SystemExit("no StatefulSet in k8s/base/keycloak.yaml")


def synced(text: str, commands: dict[str, list[str]]) -> str:
    def replace(match: re.Match[str]) -> str:
        script = json.loads(match.group("list"))[-1]
        path = next(p for p in commands if f"GET {p} " in script)
        return f"{match.group('indent')}command: {json.dumps(commands[path])}"

    return COMMAND_LINE.sub(replace, text)


def main() -> int:
    commands = base_commands()
    changed = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text()
        new = synced(text, commands)
        if new != text:
            path.write_text(new)
            changed.append(path.name)
    sys.stdout.write(f"updated: {', '.join(changed) or 'nothing'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
