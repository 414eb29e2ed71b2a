"""Find the validators installed by .ci/install-tools.sh (tests marked ``tools``).

Outside CI a missing tool skips the test with the command that installs it; inside CI
(``CI=true``) a missing tool is a failure, so CI can never pass by skipping validation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / ".ci" / "tools" / "venv" / "bin"
INSTALL_HINT = "run `bash .ci/install-tools.sh` to install it"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def tool(name: str) -> str:
    """Path of ``name``: the tools venv first, then PATH; skip or fail when missing."""
    candidate = TOOLS_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found in {TOOLS_BIN} or on PATH; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def run(
    argv: list[str],
    *,
    cwd: Path = ROOT,
    timeout_seconds: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capture its output as text; never raises on a non-zero exit."""
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout_seconds, env=env
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """The command and its output, for assertion messages."""
    return (
        f"$ {' '.join(result.args)}\nexit {result.returncode}\n"
        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
