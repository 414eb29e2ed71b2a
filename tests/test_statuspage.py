"""The status page (``GET /`` from a browser) over a real socket, and in real Chromium.

The page is rendered from the ``/status`` document of a daemon harness fed real log lines
and Kubernetes facts; the Chromium test loads it headless, checks the DOM Chromium built,
and writes a screenshot (``statuspage.png`` in the test's temporary directory, or in
``$STATUSPAGE_SCREENSHOT_DIR`` when set) for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from ci_tools import tool
from daemon_harness import (
    LIQUIBASE_LINE,
    RAW_FRAGMENTS,
    VIEW_LINE,
    Harness,
    kube_facts,
    make_harness,
)

from sidecar.http.app import create_app, status_document
from sidecar.http.statuspage import render_page, wants_html

Client = TestClient[web.Request, web.Application]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path, probe_targets=("started", "live", "ready"))
    made.ctx.state.update_kube(kube_facts(kill_slot_held=True))
    made.clock.advance(3.0)
    made.write_log(VIEW_LINE)
    made.clock.advance(16.0)
    made.write_log(LIQUIBASE_LINE)
    made.observe()
    yield made
    made.source.close()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(harness.ctx))) as test_client:
        yield test_client


async def get_page(client: Client, accept: str) -> tuple[int, str, str]:
    async with client.get("/", headers={"Accept": accept}) as response:
        return response.status, response.content_type, await response.text()


# --- content negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("application/xhtml+xml", True),
        ("*/*", False),
        ("", False),
        ("text/plain", False),
        ("application/json", False),
    ],
)
def test_only_a_browser_asks_for_the_page(accept: str, html: bool) -> None:
    assert wants_html(accept) is html


async def test_browser_gets_the_status_page(client: Client) -> None:
    status, content_type, text = await get_page(client, BROWSER_ACCEPT)

    assert (status, content_type) == (200, "text/html")
    assert text.startswith("<!DOCTYPE html>")


async def test_curl_still_gets_the_plain_text_help(client: Client) -> None:
    status, content_type, text = await get_page(client, "*/*")

    assert (status, content_type) == (200, "text/plain")
    assert "/livez" in text
    assert "<" not in text


# --- what the page shows ------------------------------------------------------------------------


async def test_page_shows_each_verdict_with_reasons_and_since(client: Client) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    live = re.search(r'<div class="verdict failing" id="verdict-live">(.*?)</div></div>', page)
    assert live is not None
    assert "startup_fatal" in live.group(1)
    assert "since 2024-12-07T17:52:42.000Z" in live.group(1)
    assert 'id="verdict-started"' in page


async def test_page_lists_each_check(harness: Harness, client: Client) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    for verdict in harness.ctx.verdicts().live.checks:
        assert f"<td>{verdict.name}</td>" in page
    assert "<td>liquibase</td>" in page  # the failing check's detail


async def test_page_maps_cluster_members_to_pods(client: Client) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    assert "<td>keycloak-controller-zorqg/keycloak</td><td>keycloak-controller-zorqg</td>" in page
    assert "<td>keycloak-controller-559a8/keycloak</td><td>keycloak-controller-559a8</td>" in page


async def test_page_shows_kubernetes_facts_and_log_source(client: Client) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    assert "<td>keycloak-controller-zorqg</td><td>yes</td><td>yes</td><td>no</td>" in page
    assert "<td>state</td><td>ok</td>" in page
    assert "never fails a Keycloak check" in page


async def test_timeline_has_kinds_reasons_codes_and_times_never_log_text(
    client: Client,
) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    timeline = page.split("Recent events", 1)[1]
    assert "<td>startup_fatal</td><td>liquibase</td>" in timeline
    assert "<td>cluster_view</td>" in timeline
    assert "ISPN000094" in timeline
    assert "2024-12-07T17:52:42.000Z" in timeline
    for fragment in RAW_FRAGMENTS:
        assert fragment not in page


async def test_page_refreshes_itself_without_script_or_outside_assets(client: Client) -> None:
    _, _, page = await get_page(client, BROWSER_ACCEPT)

    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert not re.search(r"url\(|@import", page)


def test_page_escapes_every_value(harness: Harness) -> None:
    document = status_document(harness.ctx)
    document["boot"]["cause"] = "<script>alert(1)</script>"

    page = render_page(document)

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- in a real browser -----------------------------------------------------------------------


@pytest.mark.tools
async def test_chromium_renders_the_page(harness: Harness, tmp_path: Path) -> None:
    """Headless Chromium loads the page from a real socket; its DOM has the verdicts."""
    chromium = tool("chromium")
    async with TestServer(create_app(harness.ctx), host="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/"
        screenshot = tmp_path / "statuspage.png"
        dom = await run_chromium(
            chromium, tmp_path, ["--dump-dom", url], ["--screenshot=" + str(screenshot)], url
        )
    assert 'id="verdict-live"' in dom
    assert "startup_fatal" in dom
    assert "keycloak-controller-zorqg" in dom
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("STATUSPAGE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(screenshot, Path(keep) / "statuspage.png")


async def run_chromium(
    chromium: str, tmp_path: Path, dom_args: list[str], shot_args: list[str], url: str
) -> str:
    """Two headless runs (DOM, then screenshot), each with a fresh profile."""
    outputs = []
    for index, extra in enumerate((dom_args, [*shot_args, "--window-size=1280,2200", url])):
        profile = tmp_path / f"profile-{index}"
        profile.mkdir()
        process = await asyncio.create_subprocess_exec(
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
        outputs.append(stdout.decode(errors="replace"))
    return outputs[0]
