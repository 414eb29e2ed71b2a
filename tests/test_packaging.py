"""The wheel carries every subpackage: installed into a fresh venv, the daemon runs from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_runtime import BOOT, FATAL, Daemon, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("keycloak_sidecar-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    return venv


def test_wheel_holds_every_module_and_the_data(wheel: Path) -> None:
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sidecar").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    with zipfile.ZipFile(wheel) as archive:
        packed = {n for n in archive.namelist() if n.startswith("sidecar/")}
    assert sources - packed == set()


def test_installed_daemon_runs_outside_the_source_tree(installed: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "keycloak.log"
    log.write_text(BOOT)
    monkeypatch.chdir(tmp_path)  # not the repository: the import must come from the venv
    daemon = Daemon(str(log), command=(str(installed / "bin" / "keycloak-sidecar"),))
    try:
        with log.open("a") as handle:
            handle.write(FATAL)
        assert wait_for(daemon.port, "/livez", 503)["reasons"] == ["startup_fatal"]
        code, _ = daemon.stop()
        assert code == 0
    finally:
        if daemon.process.poll() is None:
            os.killpg(daemon.process.pid, signal.SIGKILL)
            daemon.process.wait()
