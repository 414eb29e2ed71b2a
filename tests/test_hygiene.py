"""The suite's own guard rails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LEAKY_TEST = '''
import asyncio

async def test_leaks():
    asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten-task")
'''


def test_a_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    """The autouse guard in conftest turns a forgotten task into a failure."""
    pytester.makeconftest(open(__file__.replace("test_hygiene.py", "conftest.py")).read())
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                                "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaked asyncio tasks*forgotten-task*"])


# --- layering ------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "sidecar"

#: what each layer may import from the package (prefixes of module names); "sidecar" alone is
#: the package root (``__version__``).  Anything not listed here is glue and may import all.
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": ("sidecar.core",),
    "log": ("sidecar.core", "sidecar.log", "sidecar.libc"),
    "kube": ("sidecar.core", "sidecar.kube", "sidecar.settings", "sidecar.clock"),
    "http": ("sidecar", "sidecar.core", "sidecar.http", "sidecar.context", "sidecar.probe"),
}


def imported_sidecar_modules(source: str) -> set[str]:
    """Every ``sidecar...`` module a source imports, at any depth (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sidecar")
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.split(".")[0] == "sidecar"):
            found.update(_from_import_targets(node.module, [a.name for a in node.names]))
    return found


def _from_import_targets(module: str, names: list[str]) -> set[str]:
    """``from sidecar.log import rules`` imports the module ``sidecar.log.rules``."""
    base = PACKAGE.parent.joinpath(*module.split("."))
    subs = {f"{module}.{n}" for n in names
            if (base / f"{n}.py").exists() or (base / n / "__init__.py").exists()}
    return subs if len(subs) == len(names) else subs | {module}


def layer_violations(layer: str, source: str) -> list[str]:
    allowed = ALLOWED[layer]
    return sorted(m for m in imported_sidecar_modules(source)
                  if not any(m == a or (a != "sidecar" and m.startswith(a + "."))
                             for a in allowed))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    problems = {
        path.relative_to(PACKAGE).as_posix(): bad
        for path in sorted((PACKAGE / layer).glob("*.py"))
        if (bad := layer_violations(layer, path.read_text(encoding="utf-8")))
    }
    assert problems == {}


@pytest.mark.parametrize(("layer", "source", "expected"), [
    ("core", "from sidecar.log.rules import Rule\n", ["sidecar.log.rules"]),
    ("core", "def f():\n    from sidecar.http import app\n", ["sidecar.http.app"]),
    ("core", "import sidecar.kube.api\n", ["sidecar.kube.api"]),
    ("core", "from sidecar.settings import Settings\n", ["sidecar.settings"]),
    ("kube", "from sidecar.context import Context\n", ["sidecar.context"]),
    ("log", "from sidecar.core.events import LogEvent\n", []),
    ("http", "from sidecar import __version__\n", []),
], ids=["core-imports-log", "core-imports-http-lazily", "core-imports-kube",
        "core-imports-settings", "kube-imports-context", "log-imports-core", "http-version"])
def test_the_layer_check_catches_an_upward_import(layer: str, source: str,
                                                 expected: list[str]) -> None:
    assert layer_violations(layer, source) == expected


def test_no_import_cycles_between_modules() -> None:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {m for m in imported_sidecar_modules(path.read_text(encoding="utf-8"))
                       if m != name}
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    cycles = sorted(n for n in graph if reaches(n, n, set()))
    assert cycles == []
