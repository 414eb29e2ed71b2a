"""A real kube-apiserver (with an embedded etcd) for the tests, and an admin client for it.

The server is the Go program in ``tests/kubeapiserver`` (kube-apiserver of one Kubernetes
release and etcd in one process), built once by ``.ci/build-kubeapiserver.sh`` into a
git-ignored cache.  ``RealApiServer`` starts it on free loopback ports with a state
directory (certificates, static tokens, etcd data, audit log), waits for ``/readyz``, and
can stop, restart, pause (SIGSTOP: connections hang) and resume it, and compact etcd (so
a watch from an older ``resourceVersion`` gets 410 Gone).  ``AdminClient`` is a small
synchronous client with the admin token (system:masters) for setting up a namespace,
applying objects, minting ServiceAccount tokens (TokenRequest) and playing the kubelet.

Outside CI a missing binary (no Go toolchain, never built) skips the tests with the
command that builds it; with ``CI=true`` it is a failure.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / ".ci" / "build-kubeapiserver.sh"
BUILD_HINT = "run `bash .ci/build-kubeapiserver.sh` (needs Go; `make test` does it)"
READY_TIMEOUT_SECONDS = 120.0
Json = dict[str, Any]


class ApiError(Exception):
    """A request the test expected to succeed did not."""

    def __init__(self, method: str, path: str, status: int, body: object) -> None:
        super().__init__(f"{method} {path}: {status} {json.dumps(body)[:600]}")
        self.status = status
        self.body = body


def cached_binary() -> tuple[Path | None, str]:
    """The built server, or None and why not (the build script with ``--cached-only``)."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--cached-only"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode == 0 and lines and Path(lines[-1]).is_file():
        return Path(lines[-1]), ""
    return None, (result.stderr.strip() or "no binary") + f"; {BUILD_HINT}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AdminClient:
    """Synchronous JSON requests with a bearer token (admin, a node, or a ServiceAccount)."""

    def __init__(self, url: str, token: str, ca_file: Path) -> None:
        self.url = url
        self.token = token
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        content_type: str = "application/json",
        timeout_seconds: float = 10.0,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(
                request, context=self.context, timeout=timeout_seconds
            ) as answer:
                return answer.status, _decode(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())

    def call(self, method: str, path: str, body: object = None, **kwargs: Any) -> Any:
        status, answer = self.request(method, path, body, **kwargs)
        if status >= 300:
            raise ApiError(method, path, status, answer)
        return answer

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def create(self, path: str, obj: Json) -> Json:
        result: Json = self.call("POST", path, obj)
        return result

    def strategic_patch(self, path: str, patch: Json) -> Json:
        result: Json = self.call(
            "PATCH", path, patch, content_type="application/strategic-merge-patch+json"
        )
        return result

    def apply(self, obj: Json) -> Json:
        """Create the object, or replace it (keeping its resourceVersion) if it exists."""
        path = collection_path(obj)
        status, answer = self.request("POST", path, obj)
        if status == 409:
            name = obj["metadata"]["name"]
            current = self.get(f"{path}/{name}")
            replacement = {**obj, "metadata": {**obj["metadata"]}}
            replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.call("PUT", f"{path}/{name}", replacement)  # type: ignore[no-any-return]
        if status >= 300:
            raise ApiError("POST", path, status, answer)
        return answer  # type: ignore[no-any-return]

    def mint_token(self, namespace: str, account: str, seconds: int = 3600) -> str:
        """A token for the ServiceAccount through the TokenRequest API."""
        answer = self.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        token: str = answer["status"]["token"]
        return token


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")[:2000]}


_CORE = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Pod": "pods",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
}
_GROUPED = {"Role": "roles", "RoleBinding": "rolebindings", "Lease": "leases"}


def collection_path(obj: Json) -> str:
    """The REST collection of a (namespaced or Namespace) object."""
    kind, api_version = obj["kind"], obj["apiVersion"]
    if kind == "Namespace":
        return "/api/v1/namespaces"
    namespace = obj["metadata"]["namespace"]
    if api_version == "v1":
        return f"/api/v1/namespaces/{namespace}/{_CORE[kind]}"
    return f"/apis/{api_version}/namespaces/{namespace}/{_GROUPED[kind]}"


@dataclass
class RealApiServer:
    """One kube-apiserver + etcd process with its state directory."""

    binary: Path
    state_dir: Path
    extra_args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    etcd_client_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        output = (self.state_dir / f"server-{self.starts}.log").open("wb")
        with output:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    f"--state-dir={self.state_dir}",
                    f"--port={self.port}",
                    f"--etcd-client-port={self.etcd_client_port}",
                    f"--etcd-peer-port={self.etcd_peer_port}",
                    "--",
                    "--v=0",
                    *self.extra_args,
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout_seconds
        last: object = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"kube-apiserver exited: {self.output_tail()}")
            if (self.state_dir / "admin.kubeconfig").exists():
                try:
                    status, answer = self.admin().request("GET", "/readyz", timeout_seconds=5)
                except OSError as error:
                    last = error
                else:
                    if status == 200:
                        return
                    last = (status, answer)
            time.sleep(0.05)
        raise AssertionError(f"kube-apiserver not ready: {last}\n{self.output_tail()}")

    def stop(self) -> None:
        """SIGTERM (kube-apiserver shuts down, then etcd), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the process: connections are accepted by the kernel but nobody answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def output_tail(self, chars: int = 4000) -> str:
        path = self.state_dir / f"server-{self.starts}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ------------------------------------------------------------- access

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.crt"

    def tokens(self) -> dict[str, str]:
        """User name -> static token (admin and the node identities)."""
        table = (self.state_dir / "tokens.csv").read_text(encoding="utf-8").splitlines()
        return {line.split(",")[1]: line.split(",")[0] for line in table if line}

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.tokens()["admin"], self.ca_file)

    def node(self, name: str) -> AdminClient:
        """A client with the kubelet identity ``system:node:<name>`` (Node authorizer)."""
        return AdminClient(self.url, self.tokens()[f"system:node:{name}"], self.ca_file)

    def write_kubeconfig(self, path: Path, token: str, namespace: str) -> Path:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sidecar",
            "clusters": [
                {"name": "real", "cluster": {"server": self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "sidecar", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sidecar",
                    "context": {"cluster": "real", "user": "sidecar", "namespace": namespace},
                }
            ],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # ------------------------------------------------------------- etcd and audit

    def _etcd(self, call: str, body: Json) -> Json:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.etcd_client_port}/v3/{call}",
            data=json.dumps(body).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: Json = json.loads(answer.read())
            return result

    def etcd_revision(self) -> int:
        key = base64.b64encode(b"/registry/health").decode()
        return int(self._etcd("kv/range", {"key": key})["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd up to its current revision; returns that revision."""
        revision = self.etcd_revision()
        self._etcd("kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def audit_events(self) -> Iterator[Json]:
        path = self.state_dir / "audit.log"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


def placed_in(obj: Json, namespace: str) -> Json:
    """A rendered namespaced object moved to ``namespace`` (a RoleBinding's ServiceAccount
    subjects too: kustomize wrote the manifest's namespace into them)."""
    placed = copy.deepcopy(obj)
    placed["metadata"]["namespace"] = namespace
    for subject in placed.get("subjects", []):
        if subject.get("kind") == "ServiceAccount":
            subject["namespace"] = namespace
    return placed


def render_kustomization(kubectl: str, directory: Path) -> list[Json]:
    """``kubectl kustomize DIRECTORY`` as a list of objects."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]
