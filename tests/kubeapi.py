"""A test double of the Kubernetes API server: a real HTTP server (aiohttp) in the test process.

It keeps the semantics the sidecar relies on, so the real ``kubernetes_asyncio`` client can
talk to it through a kubeconfig:

* pods: list and watch with ``labelSelector`` (equality, ``!=``, ``in``, ``notin``, exists)
  and ``fieldSelector=metadata.name=..``; one monotonic ``resourceVersion`` counter; a watch
  replays history after its version, turns selector changes into ADDED/DELETED, sends
  BOOKMARKs when asked, ends after ``timeoutSeconds``; a version older than the
  compaction point (``compact()``: the version left the server's watch window, as after
  an etcd compaction and a restart) gets an ERROR event with code 410 (watch) or HTTP 410
  (list with ``resourceVersionMatch=Exact``; without it a list is "not older than" and
  answers the current state);
* ``pods/status`` PATCH as a strategic merge keyed by condition ``type`` (other
  conditions kept) or a JSON merge patch (lists replaced); other content types 415;
* pod logs: ``follow``, ``timestamps`` (RFC 3339 with trimmed nanoseconds, as the kubelet
  prints them), ``sinceSeconds``, ``previous``; a follow stream ends when the test
  restarts the container;
* Leases: create (409 when it exists), get, replace (409 on a stale resourceVersion, 422
  without one);
* core/v1 Events: create validated as the real server validates them (422 otherwise),
  ``generateName``, strategic-merge PATCH;
* faults on demand per operation: an HTTP status, a connection reset, a silent watch.

Every request is recorded (``requests``).  The test drives the cluster through methods
such as ``add_pod``, ``set_ready``, ``restart_container``, ``append_log``, ``compact``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Json = dict[str, Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    operation: str
    content_type: str


@dataclass
class Fault:
    status: int = 0  # HTTP status to answer with; 0 = no status fault
    reset: bool = False  # close the connection without an answer
    silent: bool = False  # watch/log: send headers, then nothing
    times: int | None = None  # None = until cleared


@dataclass
class LogLine:
    ts_ns: int
    text: str


@dataclass
class ContainerLog:
    container_id: str
    lines: list[LogLine] = field(default_factory=list)
    ended: bool = False
    waiters: list[asyncio.Event] = field(default_factory=list)

    def notify(self) -> None:
        for waiter in self.waiters:
            waiter.set()


def rfc3339_nano(ts_ns: int) -> str:
    """The kubelet's RFC3339Nano: trailing zeros of the fraction trimmed."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def make_pod(
    name: str,
    labels: dict[str, str],
    *,
    container: str = "keycloak",
    ready: bool = True,
    phase: str = "Running",
    ip: str = "10.0.0.1",
    restart_count: int = 0,
    container_id: str = "",
) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "", "labels": dict(labels), "uid": ""},
        "spec": {"containers": [{"name": container}, {"name": "sidecar"}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": container,
                    "ready": ready,
                    "started": phase == "Running",
                    "restartCount": restart_count,
                    "containerID": container_id or f"containerd://{name}-{restart_count}",
                    "state": {"running": {}} if phase == "Running" else {"waiting": {}},
                },
                {
                    "name": "sidecar",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "containerID": f"containerd://{name}-sidecar",
                    "state": {"running": {}},
                },
            ],
        },
    }


# ------------------------------------------------------------------ selectors

_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def label_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for the forms the sidecar may send."""
    for term in _split_selector(selector):
        match = _SET_RE.match(term)
        if match:
            key, op, values = match.groups()
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if (op == "in") != (labels.get(key) in allowed):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.split("=", 1))
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_matches(selector: str, obj: Json) -> bool:
    for term in _split_selector(selector):
        key, _, value = term.partition("=")
        if key.strip() == "metadata.name" and obj["metadata"]["name"] != value.strip():
            return False
    return True


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class KubeApiDouble:
    """The server and its in-memory cluster.  ``async with KubeApiDouble() as api``."""

    def __init__(
        self,
        *,
        namespace: str = "ns",
        wall: Callable[[], float] = time.time,
        bookmark_interval_seconds: float = 0.05,
    ) -> None:
        self.namespace = namespace
        self.wall = wall
        self.bookmark_interval_seconds = bookmark_interval_seconds
        self.requests: list[Recorded] = []
        self.faults: dict[str, Fault] = {}
        self.pods: dict[str, Json] = {}
        self.leases: dict[str, Json] = {}
        self.events: dict[str, Json] = {}
        self.logs: dict[tuple[str, str], list[ContainerLog]] = {}
        self.resource_version = 100
        self.compacted_rv = 0
        self.history: list[tuple[int, str, Json | None, Json | None]] = []
        self._watchers: set[asyncio.Queue[tuple[int, str, Json | None, Json | None] | None]]
        self._watchers = set()
        self._name_counter = 0
        self._last_log_ns = 0
        self._server: TestServer | None = None
        self._streams: set[web.StreamResponse] = set()

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> KubeApiDouble:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._server = TestServer(app)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for queue in list(self._watchers):
            queue.put_nowait(None)
        for logs in self.logs.values():
            for entry in logs:
                entry.ended = True
                entry.notify()
        assert self._server is not None
        await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    def write_kubeconfig(self, directory: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "sidecar", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": "double",
                    "context": {
                        "cluster": "double",
                        "user": "sidecar",
                        "namespace": self.namespace,
                    },
                }
            ],
        }
        path = directory / "kubeconfig"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    # ------------------------------------------------------------- faults

    def fail(self, operation: str, status: int, times: int | None = None) -> None:
        self.faults[operation] = Fault(status=status, times=times)

    def reset_connection(self, operation: str, times: int | None = None) -> None:
        self.faults[operation] = Fault(reset=True, times=times)

    def silence(self, operation: str = "pods_watch", times: int | None = None) -> None:
        self.faults[operation] = Fault(silent=True, times=times)

    def heal(self, operation: str | None = None) -> None:
        if operation is None:
            self.faults.clear()
        else:
            self.faults.pop(operation, None)

    def _take_fault(self, operation: str) -> Fault | None:
        fault = self.faults.get(operation)
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self.faults[operation]
        return fault

    # ------------------------------------------------------------- cluster mutations

    def _bump(self, kind: str, old: Json | None, new: Json | None) -> int:
        self.resource_version += 1
        rv = self.resource_version
        if new is not None:
            new["metadata"]["resourceVersion"] = str(rv)
        entry = (rv, kind, copy.deepcopy(old), copy.deepcopy(new))
        self.history.append(entry)
        for queue in self._watchers:
            queue.put_nowait(entry)
        return rv

    def add_pod(self, name: str, labels: dict[str, str], **kwargs: Any) -> Json:
        pod = make_pod(name, labels, **kwargs)
        pod["metadata"]["namespace"] = self.namespace
        pod["metadata"]["uid"] = f"uid-{name}"
        self.pods[name] = pod
        status = pod["status"]["containerStatuses"][0]
        self.logs.setdefault((name, status["name"]), []).append(
            ContainerLog(container_id=status["containerID"])
        )
        self._bump("ADDED", None, pod)
        return pod

    def modify_pod(self, name: str, change: Callable[[Json], None]) -> None:
        old = copy.deepcopy(self.pods[name])
        change(self.pods[name])
        self._bump("MODIFIED", old, self.pods[name])

    def set_ready(self, name: str, ready: bool, container: str = "keycloak") -> None:
        def change(pod: Json) -> None:
            for status in pod["status"]["containerStatuses"]:
                if status["name"] == container:
                    status["ready"] = ready
            for cond in pod["status"]["conditions"]:
                if cond["type"] == "Ready":
                    cond["status"] = "True" if ready else "False"

        self.modify_pod(name, change)

    def set_labels(self, name: str, labels: dict[str, str]) -> None:
        self.modify_pod(name, lambda pod: pod["metadata"].update(labels=dict(labels)))

    def mark_terminating(self, name: str) -> None:
        self.modify_pod(
            name, lambda pod: pod["metadata"].update(deletionTimestamp="2030-01-01T00:00:00Z")
        )

    def delete_pod(self, name: str) -> None:
        old = self.pods.pop(name)
        gone = copy.deepcopy(old)
        self._bump("DELETED", old, gone)

    def container(self, name: str, container: str = "keycloak") -> Json:
        for status in self.pods[name]["status"]["containerStatuses"]:
            if status["name"] == container:
                return status  # type: ignore[no-any-return]
        raise KeyError(container)

    def restart_container(self, name: str, container: str = "keycloak", ready: bool = False) -> str:
        """The container exits and a new one starts: new ID, restartCount + 1."""
        logs = self.logs.setdefault((name, container), [])
        if logs:
            logs[-1].ended = True
            logs[-1].notify()
        count = self.container(name, container)["restartCount"] + 1
        new_id = f"containerd://{name}-{count}"
        logs.append(ContainerLog(container_id=new_id))

        def change(pod: Json) -> None:
            status = self.container(name, container)
            status.update(
                restartCount=count, containerID=new_id, ready=ready, state={"running": {}}
            )

        self.modify_pod(name, change)
        return new_id

    def append_log(
        self, name: str, text: str, container: str = "keycloak", ts_ns: int | None = None
    ) -> None:
        """Append lines to the current container's log (timestamps from ``wall``)."""
        current = self.logs[(name, container)][-1]
        for line in text.splitlines():
            stamp = (
                ts_ns if ts_ns is not None else max(int(self.wall() * 1e9), self._last_log_ns + 1)
            )
            self._last_log_ns = max(self._last_log_ns, stamp)
            current.lines.append(LogLine(stamp, line))
        current.notify()

    def compact(self) -> None:
        """Forget history: every version up to now becomes too old (410)."""
        self.compacted_rv = self.resource_version
        self.history.clear()

    def drop_watches(self) -> None:
        """End every open watch stream (as an apiserver restart would)."""
        for queue in list(self._watchers):
            queue.put_nowait(None)

    def ops(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if r.operation == operation]

    # ------------------------------------------------------------- HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        operation, handler, args = self._route(request.method, path, request.query)
        self.requests.append(
            Recorded(
                request.method, path, dict(request.query), body, operation, request.content_type
            )
        )
        fault = self._take_fault(operation)
        if fault is not None and fault.status:
            return _status(fault.status, "Injected", f"injected {fault.status}")
        if fault is not None and fault.reset:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if handler is None:
            return _status(404, "NotFound", f"no route for {request.method} {path}")
        silent = fault is not None and fault.silent
        return await handler(request, body, silent, *args)

    def _route(self, method: str, path: str, query: Any) -> tuple[str, Any, tuple[str, ...]]:
        ns = self.namespace
        core = f"/api/v1/namespaces/{ns}"
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        table: list[tuple[str, str, str, Any]] = [
            (
                "GET",
                rf"{core}/pods",
                "pods_watch" if query.get("watch") in {"true", "True", "1"} else "pods_list",
                self._pods,
            ),
            ("GET", rf"{core}/pods/([^/]+)/log", "pods_log", self._log),
            ("PATCH", rf"{core}/pods/([^/]+)/status", "pods_status_patch", self._patch_status),
            # the Role grants no `get` on pods (the sidecar lists and watches): RBAC refuses it
            ("GET", rf"{core}/pods/([^/]+)", "pods_get", self._forbidden_get_pod),
            ("POST", rf"{core}/events", "events_create", self._create_event),
            ("PATCH", rf"{core}/events/([^/]+)", "events_patch", self._patch_event),
            ("POST", rf"{leases}", "leases_create", self._create_lease),
            ("GET", rf"{leases}/([^/]+)", "leases_get", self._get_lease),
            ("PUT", rf"{leases}/([^/]+)", "leases_update", self._update_lease),
        ]
        for verb, pattern, operation, handler in table:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return operation, handler, match.groups()
        return "unknown", None, ()

    # --- pods

    def _selected(self, query: Any, obj: Json) -> bool:
        return label_matches(
            query.get("labelSelector", ""), obj["metadata"].get("labels") or {}
        ) and field_matches(query.get("fieldSelector", ""), obj)

    async def _pods(self, request: web.Request, _body: Any, silent: bool) -> web.StreamResponse:
        query = request.query
        rv_text = query.get("resourceVersion", "")
        if rv_text not in {"", "0"} and int(rv_text) < self.compacted_rv:
            # a list at an old version is "not older than": the current list, as the real
            # server answers; an Exact list or a watch from there gets 410
            if query.get("watch") in {"true", "True", "1"}:
                return await self._watch_gone(request)
            if query.get("resourceVersionMatch") == "Exact":
                return _status(410, "Expired", "too old resource version")
        if query.get("watch") in {"true", "True", "1"}:
            return await self._watch(request, silent)
        items = [copy.deepcopy(p) for p in self.pods.values() if self._selected(query, p)]
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "items": items,
                "metadata": {"resourceVersion": str(self.resource_version)},
            }
        )

    async def _watch_gone(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        error = {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Expired",
                "message": "too old resource version",
                "code": 410,
            },
        }
        await response.write(json.dumps(error).encode() + b"\n")
        await response.write_eof()
        return response

    async def _watch(self, request: web.Request, silent: bool) -> web.StreamResponse:
        query = request.query
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue[tuple[int, str, Json | None, Json | None] | None]
        queue = asyncio.Queue()
        self._watchers.add(queue)
        timeout_seconds = float(query.get("timeoutSeconds", "1800"))
        bookmarks = query.get("allowWatchBookmarks") in {"true", "True", "1"}
        try:
            if silent:
                await asyncio.sleep(timeout_seconds)
                return response
            rv_text = query.get("resourceVersion", "")
            if rv_text in {"", "0"}:
                for pod in list(self.pods.values()):
                    if self._selected(query, pod):
                        await self._send(response, "ADDED", pod)
            else:
                for entry in [e for e in self.history if e[0] > int(rv_text)]:
                    await self._send_entry(response, query, entry)
            await self._pump(response, query, queue, timeout_seconds, bookmarks)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._watchers.discard(queue)
        await response.write_eof()
        return response

    async def _pump(
        self,
        response: web.StreamResponse,
        query: Any,
        queue: asyncio.Queue[Any],
        timeout_seconds: float,
        bookmarks: bool,
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            try:
                entry = await asyncio.wait_for(
                    queue.get(), min(left, self.bookmark_interval_seconds)
                )
            except TimeoutError:
                if bookmarks:
                    mark = {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self.resource_version)},
                    }
                    await response.write(
                        json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n"
                    )
                continue
            if entry is None:
                return
            await self._send_entry(response, query, entry)

    async def _send_entry(
        self,
        response: web.StreamResponse,
        query: Any,
        entry: tuple[int, str, Json | None, Json | None],
    ) -> None:
        _rv, kind, old, new = entry
        was = old is not None and self._selected(query, old)
        now = new is not None and self._selected(query, new)
        if kind == "DELETED":
            if was:
                await self._send(response, "DELETED", new)
        elif was and now:
            await self._send(response, "MODIFIED", new)
        elif now:
            await self._send(response, "ADDED", new)
        elif was:
            await self._send(response, "DELETED", new)

    @staticmethod
    async def _send(response: web.StreamResponse, kind: str, obj: Json | None) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    async def _forbidden_get_pod(
        self, _request: web.Request, _body: Any, _silent: bool, name: str
    ) -> web.StreamResponse:
        """As the real server answers the sidecar's account, whether the pod exists or not."""
        user = f"system:serviceaccount:{self.namespace}:keycloak-sidecar"
        return _status(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: User "{user}" cannot get resource "pods" in API '
            f'group "" in the namespace "{self.namespace}"',
        )

    async def _patch_status(
        self, request: web.Request, body: Any, _silent: bool, name: str
    ) -> web.StreamResponse:
        strategic = request.content_type == "application/strategic-merge-patch+json"
        if not strategic and request.content_type != "application/merge-patch+json":
            return _status(415, "UnsupportedMediaType", request.content_type)
        if name not in self.pods:
            return _status(404, "NotFound", f"pods {name!r} not found")
        patch_status = (body or {}).get("status") or {}

        def change(pod: Json) -> None:
            status = pod["status"]
            for key, value in patch_status.items():
                if key == "conditions" and strategic:
                    merged = {c["type"]: c for c in status.get("conditions", [])}
                    for cond in value:
                        merged[cond["type"]] = {**merged.get(cond["type"], {}), **cond}
                    status["conditions"] = list(merged.values())
                else:
                    status[key] = value

        self.modify_pod(name, change)
        return web.json_response(self.pods[name])

    # --- logs

    async def _log(
        self, request: web.Request, _body: Any, silent: bool, name: str
    ) -> web.StreamResponse:
        query = request.query
        container = query.get("container", "keycloak")
        incarnations = self.logs.get((name, container))
        if name not in self.pods or not incarnations:
            return _status(404, "NotFound", f"pods {name!r} not found")
        previous = query.get("previous") in {"true", "True", "1"}
        if previous and len(incarnations) < 2:
            return _status(400, "BadRequest", "previous terminated container not found")
        log = incarnations[-2] if previous else incarnations[-1]
        follow = query.get("follow") in {"true", "True", "1"} and not previous
        since = query.get("sinceSeconds")
        min_ns = int((self.wall() - float(since)) * 1e9) if since else 0
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        if silent:
            await asyncio.sleep(3600)
        sent = 0
        try:
            while True:
                for line in log.lines[sent:]:
                    if line.ts_ns >= min_ns:
                        await response.write(self._log_line(line, query))
                sent = len(log.lines)
                if not follow or log.ended:
                    break
                waiter = asyncio.Event()
                log.waiters.append(waiter)
                try:
                    await waiter.wait()
                finally:
                    log.waiters.remove(waiter)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    @staticmethod
    def _log_line(line: LogLine, query: Any) -> bytes:
        if query.get("timestamps") in {"true", "True", "1"}:
            return f"{rfc3339_nano(line.ts_ns)} {line.text}\n".encode()
        return f"{line.text}\n".encode()

    # --- events

    def _event_problems(self, body: Json) -> list[str]:
        """What the real server's core/v1 Event validation refuses (legacyValidateEvent):
        without ``eventTime`` only the namespaces are checked; with it, the reporting
        fields too."""
        problems = []
        meta = body.get("metadata") or {}
        if not meta.get("name") and not meta.get("generateName"):
            problems.append("metadata.name: Required value: name or generateName is required")
        if meta.get("namespace") not in {None, self.namespace}:
            problems.append("metadata.namespace: does not match the request namespace")
        involved = (body.get("involvedObject") or {}).get("namespace", "")
        if not body.get("eventTime"):
            if involved != self.namespace and (involved or self.namespace != "default"):
                problems.append("involvedObject.namespace: does not match event.namespace")
            return problems
        if not involved and self.namespace not in {"default", "kube-system"}:
            problems.append("involvedObject.namespace: does not match event.namespace")
        for key in ("reportingComponent", "reportingInstance", "action", "reason"):
            if not body.get(key):
                problems.append(f"{key}: Required value")
        if len(body.get("message") or "") > 1024:
            problems.append("message: can have at most 1024 characters")
        return problems

    async def _create_event(
        self, request: web.Request, body: Any, _silent: bool
    ) -> web.StreamResponse:
        problems = self._event_problems(body or {})
        if problems:
            return _status(422, "Invalid", "; ".join(problems))
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            self._name_counter += 1
            meta["name"] = f"{meta['generateName']}{self._name_counter:05x}"
        if meta["name"] in self.events:
            return _status(409, "AlreadyExists", f"events {meta['name']!r} already exists")
        meta["namespace"] = self.namespace
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        self.events[meta["name"]] = body
        return web.json_response(body, status=201)

    async def _patch_event(
        self, request: web.Request, body: Any, _silent: bool, name: str
    ) -> web.StreamResponse:
        if "merge-patch+json" not in request.content_type:
            return _status(415, "UnsupportedMediaType", request.content_type)
        if name not in self.events:
            return _status(404, "NotFound", f"events {name!r} not found")
        self.events[name].update(body or {})
        return web.json_response(self.events[name])

    # --- leases

    async def _create_lease(
        self, _request: web.Request, body: Any, _silent: bool
    ) -> web.StreamResponse:
        name = (body.get("metadata") or {}).get("name", "")
        if not name:
            return _status(422, "Invalid", "metadata.name: Required value")
        if name in self.leases:
            return _status(409, "AlreadyExists", f"leases {name!r} already exists")
        body["metadata"].pop("resourceVersion", None)
        self.resource_version += 1
        body["metadata"].update(
            resourceVersion=str(self.resource_version), namespace=self.namespace
        )
        self.leases[name] = body
        return web.json_response(body, status=201)

    async def _get_lease(
        self, _request: web.Request, _body: Any, _silent: bool, name: str
    ) -> web.StreamResponse:
        if name not in self.leases:
            return _status(404, "NotFound", f"leases {name!r} not found")
        return web.json_response(self.leases[name])

    async def _update_lease(
        self, _request: web.Request, body: Any, _silent: bool, name: str
    ) -> web.StreamResponse:
        if name not in self.leases:
            return _status(404, "NotFound", f"leases {name!r} not found")
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if not sent_rv:  # Leases allow no unconditional update
            return _status(
                422, "Invalid", "metadata.resourceVersion: must be specified for an update"
            )
        if sent_rv != self.leases[name]["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified")
        self.resource_version += 1
        body["metadata"].update(
            resourceVersion=str(self.resource_version), namespace=self.namespace
        )
        self.leases[name] = body
        return web.json_response(body)

    def lease_holder(self, name: str) -> str:
        lease = self.leases.get(name)
        return str((lease or {}).get("spec", {}).get("holderIdentity") or "")
