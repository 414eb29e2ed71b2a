"""The Kubernetes API edge: the only module that imports ``kubernetes_asyncio``.

The import happens inside ``connect`` and the methods, never at import time, so
``--no-kubernetes`` runs and ``analyze`` never load the library.  Requests go through the
real generated client with ``_preload_content=False`` and the JSON bodies are read as
plain dicts: the sidecar needs a dozen fields, not the models.  Every failure becomes a
``KubeError`` with a short code; nothing here retries or decides (``kubeworker.py`` does).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import json
import os
import socket
import sys
import types
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.settings import Settings

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_CONNECT_TIMEOUT_SECONDS = 10.0
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"

Json = dict[str, Any]


class KubeError(Exception):
    """An API call failed.  ``code`` is short and bounded (it becomes a metric label)."""

    def __init__(self, operation: str, code: str, status: int = 0) -> None:
        super().__init__(f"{operation}: {code} ({status})")
        self.operation = operation
        self.code = code
        self.status = status


class KubeConfigError(Exception):
    """No usable API configuration (no in-cluster account, no kubeconfig)."""


def code_for_status(status: int) -> str:
    """HTTP status -> the short error code used in facts, logs and metrics."""
    known = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        410: "gone",
        422: "invalid",
        429: "throttled",
    }
    if status in known:
        return known[status]
    if status >= 500:
        return "server_error"
    return "unreachable" if status == 0 else "client_error"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this sidecar is: its pod and namespace."""

    pod_name: str
    namespace: str


def own_identity(
    environ: Mapping[str, str],
    *,
    sa_dir: Path = SA_DIR,
    hostname: Callable[[], str] = socket.gethostname,
) -> Identity:
    """``POD_NAME``/``POD_NAMESPACE`` (downward API), else the SA file and the host name."""
    namespace = environ.get("POD_NAMESPACE", "").strip()
    if not namespace:
        try:
            namespace = (sa_dir / "namespace").read_text(encoding="utf-8").strip()
        except OSError:
            namespace = "default"
    pod_name = environ.get("POD_NAME", "").strip() or hostname()
    return Identity(pod_name=pod_name, namespace=namespace)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """The Keycloak container's status in a pod."""

    ready: bool
    started: bool
    running: bool
    restart_count: int
    container_id: str


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The few pod fields the sidecar uses."""

    name: str
    uid: str
    labels: Mapping[str, str]
    phase: str
    terminating: bool
    ip: str
    container: ContainerInfo | None
    conditions: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""


def pod_from_json(obj: Json, container_name: str) -> PodInfo:
    """A pod's JSON -> ``PodInfo``; ``container_name`` picks the Keycloak container."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    container = None
    for entry in status.get("containerStatuses") or []:
        if entry.get("name") == container_name:
            container = ContainerInfo(
                ready=bool(entry.get("ready")),
                started=bool(entry.get("started")),
                running="running" in (entry.get("state") or {}),
                restart_count=int(entry.get("restartCount") or 0),
                container_id=str(entry.get("containerID") or ""),
            )
    conditions = {
        str(c.get("type")): str(c.get("status", "")) for c in status.get("conditions") or []
    }
    return PodInfo(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        phase=str(status.get("phase", "")),
        terminating=meta.get("deletionTimestamp") is not None,
        ip=str(status.get("podIP") or ""),
        container=container,
        conditions=conditions,
        resource_version=str(meta.get("resourceVersion", "")),
    )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ADDED/MODIFIED/DELETED carry a pod, BOOKMARK only a version."""

    type: str
    pod: PodInfo | None
    resource_version: str


@dataclass(frozen=True, slots=True)
class Lease:
    """A coordination.k8s.io/v1 Lease, reduced to what the kill budget needs."""

    name: str
    holder: str
    renew_time: float | None
    duration_seconds: int
    transitions: int
    resource_version: str

    def is_held(self, now_wall: float) -> bool:
        """Someone holds it and has renewed within the lease duration."""
        if not self.holder or self.renew_time is None:
            return False
        return self.renew_time + self.duration_seconds > now_wall


def format_microtime(epoch_seconds: float) -> str:
    """Epoch seconds -> the API's MicroTime (always six fraction digits)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime(_MICROTIME)


def format_time(epoch_seconds: float) -> str:
    """Epoch seconds -> the API's Time (RFC 3339, whole seconds)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (with or without fraction) -> epoch seconds; None when absent or invalid."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def lease_from_json(obj: Json) -> Lease:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return Lease(
        name=str(meta.get("name", "")),
        holder=str(spec.get("holderIdentity") or ""),
        renew_time=parse_time(spec.get("renewTime")),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def lease_body(lease: Lease, acquire_time: float | None) -> Json:
    spec: Json = {
        "holderIdentity": lease.holder or None,
        "leaseDurationSeconds": lease.duration_seconds,
        "leaseTransitions": lease.transitions,
        "renewTime": format_microtime(lease.renew_time) if lease.renew_time else None,
    }
    if acquire_time is not None:
        spec["acquireTime"] = format_microtime(acquire_time)
    meta: Json = {"name": lease.name}
    if lease.resource_version:
        meta["resourceVersion"] = lease.resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}


_SLIM_PACKAGES = ("", "client", "client/models", "client/api")
_SLIM_MODULES = (
    "kubernetes_asyncio.client.exceptions",
    "kubernetes_asyncio.client.configuration",
    "kubernetes_asyncio.client.rest",
    "kubernetes_asyncio.client.api_client",
)

_PODS = "/api/v1/namespaces/{namespace}/pods"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_EVENTS = "/api/v1/namespaces/{namespace}/events"
#: operation -> (HTTP method, path).  The calls go straight to ``ApiClient.call_api``: the
#: generated ``CoreV1Api`` module alone is 38,000 lines and 2.9 MiB of RSS in every pod.
_ROUTES: dict[str, tuple[str, str]] = {
    "pods_list": ("GET", _PODS),
    "pods_watch": ("GET", _PODS),
    "pods_status_patch": ("PATCH", _PODS + "/{name}/status"),
    "pods_log": ("GET", _PODS + "/{name}/log"),
    "leases_get": ("GET", _LEASES + "/{name}"),
    "leases_create": ("POST", _LEASES),
    "leases_update": ("PUT", _LEASES + "/{name}"),
    "events_create": ("POST", _EVENTS),
    "events_patch": ("PATCH", _EVENTS + "/{name}"),
}
#: a PATCH with a dict body is a strategic merge (what the generated client sends too)
_CONTENT_TYPES = {"PATCH": "application/strategic-merge-patch+json"}


def _kubernetes_asyncio() -> tuple[Any, Any]:
    """``(client, config)`` of kubernetes_asyncio, importing only what the sidecar uses.

    The package's ``__init__`` imports every API group and ~700 model classes (+39 MiB of
    RSS, in every Keycloak pod).  The sidecar reads every answer as raw JSON
    (``_preload_content=False``) and sends dict bodies, so it needs only the API client,
    its configuration and two API classes: those are loaded under lightweight package
    modules.  Anything unexpected falls back to the ordinary full import.
    """
    loaded = sys.modules.get("kubernetes_asyncio")
    if loaded is not None and hasattr(loaded, "client") and hasattr(loaded, "config"):
        return loaded.client, loaded.config
    try:
        return _load_slim()
    except Exception:
        for name in [n for n in sys.modules if n.startswith("kubernetes_asyncio")]:
            del sys.modules[name]
        import kubernetes_asyncio

        return kubernetes_asyncio.client, kubernetes_asyncio.config


def _load_slim() -> tuple[Any, Any]:
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kubernetes_asyncio is not installed")
    root = next(iter(spec.submodule_search_locations))
    packages = {}
    for relative in _SLIM_PACKAGES:
        name = "kubernetes_asyncio" + ("." + relative.replace("/", ".") if relative else "")
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, relative)]
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        sys.modules[name] = packages[relative] = module
    client = packages["client"]
    for name in _SLIM_MODULES:
        module = importlib.import_module(name)
        for attribute in ("Configuration", "ApiClient"):
            if hasattr(module, attribute):
                setattr(client, attribute, getattr(module, attribute))
        setattr(client, name.rsplit(".", 1)[1], module)
    config = importlib.import_module("kubernetes_asyncio.config")
    packages[""].client = client  # type: ignore[attr-defined]
    packages[""].config = config  # type: ignore[attr-defined]
    return client, config


async def connect(
    settings: Settings, environ: Mapping[str, str], request_timeout_seconds: float
) -> KubeApi:
    """Load the API configuration: ``--kubeconfig``, ``$KUBECONFIG``, in-cluster, ~/.kube."""
    client, config = _kubernetes_asyncio()
    configuration = client.Configuration()
    kubeconfig = settings.kubeconfig or environ.get("KUBECONFIG", "")
    try:
        if not kubeconfig and environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            path = kubeconfig or str(Path.home() / ".kube" / "config")
            await config.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
    except (config.ConfigException, OSError, ValueError, TypeError) as error:
        raise KubeConfigError(str(error).splitlines()[0] if str(error) else "no config") from None
    return KubeApi(client.ApiClient(configuration), request_timeout_seconds)


class KubeApi:
    """The calls the sidecar makes.  Use as an async context manager (closes the client)."""

    def __init__(self, api_client: Any, request_timeout_seconds: float) -> None:
        self._api_client = api_client
        self._timeout_seconds = request_timeout_seconds

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._api_client.close()

    async def _json(
        self, operation: str, path: dict[str, str], query: Json | None = None, body: Any = None
    ) -> Json:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._start(operation, path, query, body)
                async with response:
                    answer = await response.read()
        except TimeoutError:
            raise KubeError(operation, "timeout") from None
        except (aiohttp.ClientError, OSError):
            raise KubeError(operation, "unreachable") from None
        try:
            decoded = json.loads(answer)
        except ValueError:
            raise KubeError(operation, "bad_response", 200) from None
        if not isinstance(decoded, dict):
            raise KubeError(operation, "bad_response", 200)
        return decoded

    async def _start(
        self, operation: str, path: dict[str, str], query: Json | None = None, body: Any = None
    ) -> Any:
        """Send a request, return the open response; non-2xx -> ``KubeError``."""
        from kubernetes_asyncio.client.exceptions import ApiException

        method, resource_path = _ROUTES[operation]
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = _CONTENT_TYPES.get(method, "application/json")
        try:
            response = await self._api_client.call_api(
                resource_path,
                method,
                path_params=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
            )
        except ApiException as error:
            raise KubeError(
                operation, code_for_status(error.status or 0), error.status or 0
            ) from None
        except (aiohttp.ClientError, OSError):
            raise KubeError(operation, "unreachable") from None
        if not 200 <= response.status < 300:
            status = int(response.status)
            response.release()
            raise KubeError(operation, code_for_status(status), status)
        return response

    # --- pods

    async def list_pods(
        self, namespace: str, container: str, *, label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[PodInfo], str]:
        """The pods and the list's resourceVersion (to resume a watch from)."""
        obj = await self._json(
            "pods_list", {"namespace": namespace}, _selectors(label_selector, field_selector)
        )
        items = [pod_from_json(item, container) for item in obj.get("items") or []]
        return items, str((obj.get("metadata") or {}).get("resourceVersion", ""))

    async def watch_pods(
        self,
        namespace: str,
        container: str,
        *,
        resource_version: str,
        timeout_seconds: int,
        silence_seconds: float,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        """Watch from ``resource_version``; ends when the server closes the stream.

        ``KubeError`` code ``gone`` (410, as HTTP status or ERROR event) means re-list;
        ``timeout`` means nothing arrived for ``silence_seconds`` (a silent watch).
        """
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
            **_selectors(label_selector, field_selector),
        }
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._start("pods_watch", {"namespace": namespace}, query)
        except TimeoutError:
            raise KubeError("pods_watch", "timeout") from None
        try:
            while True:
                line = await _read_line(response, silence_seconds)
                if not line:
                    return
                if line.strip():
                    yield _watch_event(line, container)
        finally:
            response.release()

    async def patch_pod_condition(self, namespace: str, pod: str, condition: Json) -> None:
        """Strategic merge on ``pods/status``: the server keys conditions by ``type``."""
        body = {"status": {"conditions": [condition]}}
        await self._json("pods_status_patch", {"namespace": namespace, "name": pod}, body=body)

    async def follow_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        since_seconds: int | None,
        previous: bool = False,
        chunk_timeout_seconds: float,
    ) -> AsyncIterator[bytes | None]:
        """Yield raw chunks of ``kubectl logs -f --timestamps``; None after a quiet spell."""
        query: Json = {"container": container, "timestamps": True, "follow": not previous}
        if since_seconds is not None:
            query["sinceSeconds"] = since_seconds
        if previous:
            query["previous"] = True
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._start(
                    "pods_log", {"namespace": namespace, "name": pod}, query
                )
        except TimeoutError:
            raise KubeError("pods_log", "timeout") from None
        try:
            while True:
                try:
                    async with asyncio.timeout(chunk_timeout_seconds):
                        chunk = await response.content.readany()
                except TimeoutError:
                    yield None
                    continue
                if not chunk:
                    return
                yield chunk
        except (aiohttp.ClientError, OSError):
            raise KubeError("pods_log", "unreachable") from None
        finally:
            response.release()

    # --- leases

    async def read_lease(self, namespace: str, name: str) -> Lease | None:
        try:
            obj = await self._json("leases_get", {"namespace": namespace, "name": name})
        except KubeError as error:
            if error.code == "not_found":
                return None
            raise
        return lease_from_json(obj)

    async def create_lease(self, namespace: str, lease: Lease, acquire_time: float) -> Lease:
        body = lease_body(lease, acquire_time)
        obj = await self._json("leases_create", {"namespace": namespace}, body=body)
        return lease_from_json(obj)

    async def replace_lease(
        self, namespace: str, lease: Lease, acquire_time: float | None
    ) -> Lease:
        """Update; ``KubeError`` ``conflict`` when ``lease.resource_version`` is stale."""
        obj = await self._json(
            "leases_update",
            {"namespace": namespace, "name": lease.name},
            body=lease_body(lease, acquire_time),
        )
        return lease_from_json(obj)

    # --- events (core/v1, what ``kubectl describe pod`` shows)

    async def create_event(self, namespace: str, body: Json) -> str:
        """Create; returns the server-assigned name (for later aggregation)."""
        obj = await self._json("events_create", {"namespace": namespace}, body=body)
        return str((obj.get("metadata") or {}).get("name", ""))

    async def patch_event(self, namespace: str, name: str, count: int, last_time: float) -> None:
        body = {"count": count, "lastTimestamp": format_time(last_time)}
        await self._json("events_patch", {"namespace": namespace, "name": name}, body=body)


def _selectors(label_selector: str, field_selector: str) -> Json:
    out: Json = {}
    if label_selector:
        out["labelSelector"] = label_selector
    if field_selector:
        out["fieldSelector"] = field_selector
    return out


async def _read_line(response: Any, silence_seconds: float) -> bytes:
    try:
        async with asyncio.timeout(silence_seconds):
            line: bytes = await response.content.readline()
    except TimeoutError:
        raise KubeError("pods_watch", "timeout") from None
    except (aiohttp.ClientError, OSError, ValueError):
        raise KubeError("pods_watch", "unreachable") from None
    return line


def _watch_event(line: bytes, container: str) -> WatchEvent:
    try:
        event = json.loads(line)
        kind = str(event["type"])
        obj = event["object"]
    except (ValueError, KeyError, TypeError):
        raise KubeError("pods_watch", "bad_response", 200) from None
    if kind == "ERROR":
        status = int(obj.get("code") or 0)
        raise KubeError("pods_watch", code_for_status(status), status)
    version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    if kind == "BOOKMARK":
        return WatchEvent(kind, None, version)
    return WatchEvent(kind, pod_from_json(obj, container), version)
