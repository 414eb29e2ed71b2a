"""The API edge through the real kubernetes_asyncio client against the API-server double."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubeapi import KubeApiDouble, label_matches, rfc3339_nano

from sidecar.kube import api as kube
from sidecar.kube.api import KubeError, Lease
from sidecar.kube.worker import LogCursor, parse_timestamp_ns
from sidecar.settings import load_settings


@pytest.fixture
async def double() -> AsyncIterator[KubeApiDouble]:
    async with KubeApiDouble() as server:
        yield server


@pytest.fixture
async def api(double: KubeApiDouble, tmp_path: Path) -> AsyncIterator[kube.KubeApi]:
    settings = load_settings({"kubeconfig": str(double.write_kubeconfig(tmp_path))}, {})
    async with await kube.connect(settings, {}, 5.0) as client:
        yield client


async def _collect(
    api: kube.KubeApi, version: str, count: int, **selectors: str
) -> list[kube.WatchEvent]:
    events = []
    async for event in api.watch_pods(
        "ns",
        "keycloak",
        resource_version=version,
        timeout_seconds=5,
        silence_seconds=5,
        **selectors,
    ):
        events.append(event)
        if len(events) >= count:
            break
    return events


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=kc", {"app": "kc"}, True),
        ("app=kc", {"app": "x"}, False),
        ("app in (kc, kc2)", {"app": "kc2"}, True),
        ("app notin (kc)", {"app": "kc"}, False),
        ("app=kc,tier!=db", {"app": "kc", "tier": "db"}, False),
        ("app", {}, False),
        ("!app", {}, True),
    ],
    ids=["eq", "eq-miss", "in", "notin", "neq", "exists", "not-exists"],
)
def test_double_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert label_matches(selector, labels) is expected


async def test_list_honours_label_selectors(double: KubeApiDouble, api: kube.KubeApi) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    double.add_pod("kc-1", {"app": "kc2"})
    double.add_pod("db-0", {"app": "db"})
    pods, version = await api.list_pods("ns", "keycloak", label_selector="app in (kc, kc2)")
    assert sorted(p.name for p in pods) == ["kc-0", "kc-1"]
    assert int(version) == double.resource_version
    assert pods[0].container is not None
    assert pods[0].container.ready


async def test_watch_resumes_after_the_list_version(
    double: KubeApiDouble, api: kube.KubeApi
) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    _pods, version = await api.list_pods("ns", "keycloak", label_selector="app=kc")
    double.set_ready("kc-0", False)
    double.add_pod("kc-1", {"app": "kc"})
    double.add_pod("other", {"app": "x"})
    events = [
        e for e in await _collect(api, version, 3, label_selector="app=kc") if e.type != "BOOKMARK"
    ]
    assert [(e.type, e.pod.name if e.pod else "") for e in events][:2] == [
        ("MODIFIED", "kc-0"),
        ("ADDED", "kc-1"),
    ]
    assert events[0].pod is not None
    assert events[0].pod.container is not None
    assert not events[0].pod.container.ready


async def test_label_change_out_of_the_selection_is_a_delete(
    double: KubeApiDouble, api: kube.KubeApi
) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    _pods, version = await api.list_pods("ns", "keycloak", label_selector="app=kc")
    double.set_labels("kc-0", {"app": "gone"})
    events = [
        e for e in await _collect(api, version, 2, label_selector="app=kc") if e.type != "BOOKMARK"
    ]
    assert events[0].type == "DELETED"


async def test_bookmarks_carry_the_latest_version(double: KubeApiDouble, api: kube.KubeApi) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    _pods, version = await api.list_pods("ns", "keycloak", label_selector="app=kc")
    double.add_pod("unrelated", {"app": "x"})
    events = await _collect(api, version, 1, label_selector="app=kc")
    assert events[0].type == "BOOKMARK"
    assert events[0].resource_version == str(double.resource_version)
    assert double.ops("pods_watch")[0].query["allowWatchBookmarks"] in {"true", "True"}


async def test_stale_version_is_gone_on_watch(
    double: KubeApiDouble, api: kube.KubeApi
) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    _pods, version = await api.list_pods("ns", "keycloak")
    double.set_ready("kc-0", False)
    double.compact()
    with pytest.raises(KubeError) as caught:
        await _collect(api, version, 1)
    assert (caught.value.code, caught.value.status) == ("gone", 410)


async def test_watch_ends_after_timeout_seconds(double: KubeApiDouble, api: kube.KubeApi) -> None:
    """The stream ends by itself (the iterator finishes) after timeoutSeconds."""
    double.bookmark_interval_seconds = 0.2
    _pods, version = await api.list_pods("ns", "keycloak")
    events = [
        e
        async for e in api.watch_pods(
            "ns", "keycloak", resource_version=version, timeout_seconds=1, silence_seconds=5
        )
    ]
    assert {e.type for e in events} <= {"BOOKMARK"}
    assert double.ops("pods_watch")[0].query["timeoutSeconds"] == "1"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "unauthorized"),
        (403, "forbidden"),
        (429, "throttled"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
async def test_http_errors_become_codes(
    double: KubeApiDouble, api: kube.KubeApi, status: int, code: str
) -> None:
    double.fail("pods_list", status)
    with pytest.raises(KubeError) as caught:
        await api.list_pods("ns", "keycloak")
    assert (caught.value.code, caught.value.status) == (code, status)


async def test_connection_reset_is_unreachable(double: KubeApiDouble, api: kube.KubeApi) -> None:
    double.reset_connection("pods_list")
    with pytest.raises(KubeError) as caught:
        await api.list_pods("ns", "keycloak")
    assert caught.value.code == "unreachable"


async def test_silent_watch_times_out(double: KubeApiDouble, api: kube.KubeApi) -> None:
    double.silence("pods_watch")
    with pytest.raises(KubeError) as caught:
        async for _event in api.watch_pods(
            "ns", "keycloak", resource_version="1", timeout_seconds=30, silence_seconds=0.05
        ):
            pass
    assert caught.value.code == "timeout"


async def test_lease_create_get_and_conflicts(double: KubeApiDouble, api: kube.KubeApi) -> None:
    assert await api.read_lease("ns", "budget-0") is None
    mine = Lease("budget-0", "kc-0", 1_000.0, 30, 0, "")
    created = await api.create_lease("ns", mine, 1_000.0)
    assert created.holder == "kc-0"
    assert double.leases["budget-0"]["spec"]["renewTime"] == "1970-01-01T00:16:40.000000Z"
    with pytest.raises(KubeError) as exists:
        await api.create_lease("ns", mine, 1_000.0)
    assert exists.value.code == "conflict"
    renewed = await api.replace_lease(
        "ns", Lease("budget-0", "kc-0", 1_010.0, 30, 0, created.resource_version), None
    )
    assert renewed.renew_time == 1_010.0
    with pytest.raises(KubeError) as stale:
        await api.replace_lease(
            "ns", Lease("budget-0", "kc-1", 1_020.0, 30, 1, created.resource_version), None
        )
    assert stale.value.code == "conflict"
    assert double.lease_holder("budget-0") == "kc-0"


def test_lease_expiry() -> None:
    lease = Lease("l", "kc-0", 1_000.0, 30, 0, "1")
    assert lease.is_held(1_029.0)
    assert not lease.is_held(1_030.0)
    assert not Lease("l", "", 1_000.0, 30, 0, "1").is_held(1_001.0)


def _event(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "metadata": {"generateName": "kc-0."},
        "involvedObject": {"kind": "Pod", "name": "kc-0", "namespace": "ns"},
        "reason": "KeycloakStartupFailed",
        "message": "m",
        "type": "Warning",
        "count": 1,
        "firstTimestamp": "2030-01-01T00:00:00Z",
        "lastTimestamp": "2030-01-01T00:00:00Z",
        "source": {"component": "keycloak-sidecar"},
    }
    body.update(overrides)
    return body


async def test_event_create_and_patch(double: KubeApiDouble, api: kube.KubeApi) -> None:
    name = await api.create_event("ns", _event())
    assert name.startswith("kc-0.")
    await api.patch_event("ns", name, 2, 1_900_000_000.0)
    assert double.events[name]["count"] == 2
    assert double.events[name]["lastTimestamp"] == "2030-03-17T17:46:40Z"


@pytest.mark.parametrize(
    "bad",
    [
        {"involvedObject": {"kind": "Pod", "name": "kc-0", "namespace": "other"}},
        {"involvedObject": {"kind": "Pod"}},
        {"metadata": {}},
        {"eventTime": "2030-01-01T00:00:00.000000Z"},
    ],
    ids=["other-namespace", "no-involved-namespace", "name", "event-time-without-reporting"],
)
async def test_double_refuses_invalid_events(api: kube.KubeApi, bad: dict[str, object]) -> None:
    """What the real server refuses (tests/realapi/test_double_conformance.py compares them)."""
    with pytest.raises(KubeError) as caught:
        await api.create_event("ns", _event(**bad))
    assert caught.value.status == 422


async def test_double_refuses_a_pod_read_by_name(double: KubeApiDouble) -> None:
    """The Role grants pods ``list`` and ``watch`` only: like the real RBAC, the double
    refuses ``get`` (tests/realapi/test_double_conformance.py compares them), so a sidecar
    that started reading its pod by name fails here as it would in a cluster."""
    double.add_pod("kc-0", {"app": "kc"})
    async with aiohttp.ClientSession() as session:
        for name in ("kc-0", "absent"):
            async with session.get(f"{double.url}/api/v1/namespaces/ns/pods/{name}") as answer:
                assert answer.status == 403
                assert (await answer.json())["reason"] == "Forbidden"


async def test_condition_patch_is_a_strategic_merge_by_type(
    double: KubeApiDouble, api: kube.KubeApi
) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    await api.patch_pod_condition(
        "ns", "kc-0", {"type": "keycloak.org/cluster-member", "status": "False", "reason": "A"}
    )
    await api.patch_pod_condition(
        "ns", "kc-0", {"type": "keycloak.org/cluster-member", "status": "True", "reason": "B"}
    )
    conditions = {c["type"]: c for c in double.pods["kc-0"]["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert (
        conditions["keycloak.org/cluster-member"]["status"],
        conditions["keycloak.org/cluster-member"]["reason"],
    ) == ("True", "B")
    assert (
        double.ops("pods_status_patch")[0].content_type == "application/strategic-merge-patch+json"
    )


async def test_log_follow_ends_when_the_container_restarts(
    double: KubeApiDouble, api: kube.KubeApi
) -> None:
    double.add_pod("kc-0", {"app": "kc"})
    double.append_log("kc-0", "one\ntwo")
    chunks: list[bytes] = []

    async def restart_later() -> None:
        await asyncio.sleep(0.02)
        double.append_log("kc-0", "three")
        double.restart_container("kc-0")

    task = asyncio.create_task(restart_later(), name="restart-later")
    async for chunk in api.follow_log(
        "ns", "kc-0", "keycloak", since_seconds=None, chunk_timeout_seconds=1.0
    ):
        if chunk is not None:
            chunks.append(chunk)
    await task
    lines = b"".join(chunks).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "two", "three"]
    assert double.ops("pods_log")[0].query["timestamps"] in {"true", "True"}


def test_timestamps_parse_with_trimmed_fractions() -> None:
    assert parse_timestamp_ns(b"2030-01-01T00:00:00Z") == 1_893_456_000_000_000_000
    assert parse_timestamp_ns(b"2030-01-01T00:00:00.5Z") == 1_893_456_000_500_000_000
    assert (
        parse_timestamp_ns(rfc3339_nano(1_893_456_000_000_000_123).encode())
        == 1_893_456_000_000_000_123
    )
    assert parse_timestamp_ns(b"09:26:37,074") is None


def test_log_cursor_skips_what_was_delivered_and_keeps_same_stamp_lines() -> None:
    cursor = LogCursor(max_line_bytes=100)
    first = b"2030-01-01T00:00:01Z a\n2030-01-01T00:00:02Z b\n2030-01-01T00:00:02Z c\n"
    assert cursor.feed(first) == b"a\nb\nc\n"
    cursor.new_stream()
    again = first + b"2030-01-01T00:00:02Z d\n2030-01-01T00:00:03Z e\n"
    assert cursor.feed(again[:30]) == b""
    assert cursor.feed(again[30:]) == b"d\ne\n"


def test_log_cursor_frames_partial_crlf_and_overlong_lines() -> None:
    cursor = LogCursor(max_line_bytes=5)
    assert cursor.feed(b"2030-01-01T00:00:01Z abc") == b""
    assert cursor.feed(b"def\r\n") == b"abcde\n"
    assert cursor.feed(b"2030-01-01T00:00:02Z tail", final=True) == b"tail\n"


def test_identity_from_downward_api_then_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("from-file\n", encoding="utf-8")
    env = {"POD_NAME": "kc-0", "POD_NAMESPACE": "env-ns"}
    assert kube.own_identity(env, sa_dir=tmp_path) == kube.Identity("kc-0", "env-ns")
    assert kube.own_identity({}, sa_dir=tmp_path, hostname=lambda: "host-1") == kube.Identity(
        "host-1", "from-file"
    )
    assert (
        kube.own_identity({}, sa_dir=tmp_path / "none", hostname=lambda: "h").namespace == "default"
    )


async def test_connect_without_any_config_fails_clearly(tmp_path: Path) -> None:
    settings = load_settings({"kubeconfig": str(tmp_path / "missing")}, {})
    with pytest.raises(kube.KubeConfigError):
        await kube.connect(settings, {}, 1.0)


def test_module_import_does_not_load_kubernetes_asyncio() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sidecar.kube.api, sidecar.kube.worker, sidecar.core.membership; "
        "print('kubernetes_asyncio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "False"


def test_slim_import_loads_only_what_the_sidecar_uses(tmp_path: Path) -> None:
    """In a fresh process the Kubernetes client comes without its ~700 model modules."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: ns}}]\n"
    )
    script = (
        "import asyncio, sys\n"
        "from sidecar.kube.api import connect\n"
        "from sidecar.settings import load_settings\n"
        f"settings = load_settings({{'kubeconfig': {str(kubeconfig)!r}}}, {{}})\n"
        "async def main():\n"
        "    api = await connect(settings, {}, 1.0)\n"
        "    async with api:\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "loaded = [m for m in sys.modules if m.startswith('kubernetes_asyncio')]\n"
        "print(len(loaded), 'kubernetes_asyncio.client.models.v1_pod' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    count, has_models = result.stdout.split()
    assert int(count) < 50
    assert has_models == "False"
