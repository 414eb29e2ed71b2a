"""Fixtures of the end-to-end suite: run the selected scenarios together, check for leaks.

``outcomes`` runs every scenario whose test was selected (``-k`` works) concurrently in one
event loop (at most ``CONCURRENT_SCENARIOS`` at a time), once per session, and hands each
test its ``Outcome``.  ``no_leaked_processes``
fails a test when any process started for the suite (found by the suite's temporary
directory in its command line or environment) is still alive afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Outcome, Scenario, run_scenario

E2E_ROOT_KEY = pytest.StashKey[Path]()
#: scenarios run at once: their timing assertions are in cluster seconds (real x scale),
#: so real latency on two loaded cores must stay small (E2E_CONCURRENCY overrides)
CONCURRENT_SCENARIOS = int(os.environ.get("E2E_CONCURRENCY", "4"))


def suite_processes(root: Path) -> list[str]:
    """Live processes whose command line or environment names ``root``."""
    marker = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and (marker in cmdline or marker in environ):
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:160]}")
    return found


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def outcomes(request: pytest.FixtureRequest, e2e_root: Path) -> dict[str, Outcome]:
    from test_scenarios import SCENARIOS

    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_scenario"
        and hasattr(item, "callspec")
        and "name" in item.callspec.params
    ]
    scenarios = [SCENARIOS[name] for name in dict.fromkeys(selected)]

    async def run_all(chosen: list[Scenario]) -> list[Outcome]:
        slots = asyncio.Semaphore(CONCURRENT_SCENARIOS)

        async def run_one(scenario: Scenario) -> Outcome:
            async with slots:
                return await run_scenario(scenario, e2e_root / scenario.name)

        return await asyncio.gather(*(run_one(s) for s in chosen))

    return {o.scenario.name: o for o in asyncio.run(run_all(scenarios))}


@pytest.fixture(autouse=True)
def no_leaked_processes(e2e_root: Path) -> Iterator[None]:
    yield
    leaked = suite_processes(e2e_root)
    assert not leaked, "processes survived the scenario:\n" + "\n".join(leaked)
