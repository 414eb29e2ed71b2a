"""Real PostgreSQL, real Keycloak nodes and the real sidecar, each as a local process (issue 16).

Nothing here is simulated: Keycloak is the server distribution fetched from Maven Central by
``.ci/fetch-keycloak.sh`` (built once per cache with ``kc.sh build``), PostgreSQL is Debian's
server started from ``initdb`` in a temporary folder on loopback, and the sidecar is
``python -m sidecar`` with the arguments of the ``sidecar`` container of
``k8s/base/keycloak.yaml``, localized (log file, Keycloak URL, listen address) and with the
Kubernetes side off.  Every process runs in its own process group; ``Processes.close()``
kills the groups that are still alive, so a failing test leaves nothing behind.

Each Keycloak node binds HTTP, management and JGroups to its own loopback address
(127.0.0.2, 127.0.0.3, ...); Keycloak 26's default JGroups stack (``jdbc-ping``) discovers
the other node through the shared database, so the nodes form one Infinispan cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = Path(__file__).with_name("versions.txt")
FETCH_SCRIPT = REPO / ".ci" / "fetch-keycloak.sh"
MANIFEST = REPO / "k8s" / "base" / "keycloak.yaml"
FIXTURES = REPO / "tests" / "data" / "realkc"
#: build-time options; a change rebuilds the cache (the stamp file names them)
BUILD_OPTIONS = ("--db=postgres", "--health-enabled=true", "--metrics-enabled=true")
#: small heap: the machine has 2 cores shared by several runs; Keycloak 26 boots in 384 MiB
HEAP_OPTIONS = "-Xms64m -Xmx384m"
DB_USER = "keycloak"
DB_PASSWORD = "keycloak-test-password"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-test-password"
POLL_SECONDS = 0.1
#: JGroups TCP (7800) and FD_SOCK2 (bind port + 50000), Keycloak 26's jdbc-ping stack
JGROUPS_PORTS = ("7800", "57800")


class Missing(RuntimeError):
    """A tool the suite needs is absent (skip locally, fail under CI=true)."""


def unavailable(reason: str) -> None:
    """Fail loudly in CI (a silent skip would hide the point of the suite); skip locally."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"real-Keycloak suite cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"real Keycloak unavailable: {reason}")


class Unserved(RuntimeError):
    """The Keycloak version asked for is no version, or Maven Central does not serve it."""


def versions() -> list[str]:
    lines = VERSIONS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def selected_version() -> str:
    """``KEYCLOAK_VERSION`` (a version, ``newest``/``oldest`` of those listed), else the pin."""
    wanted = os.environ.get("KEYCLOAK_VERSION", "").strip()
    known = versions()
    if wanted in ("newest", "oldest"):
        ordered = sorted(known, key=version_key)
        return ordered[-1] if wanted == "newest" else ordered[0]
    return wanted or known[0]


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries (the newest installed major version)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not candidates:
        raise Missing("PostgreSQL server not installed (apt-get install postgresql)")
    return candidates[-1].parent


def check_tools() -> None:
    for tool, package in (("mvn", "maven"), ("java", "openjdk-17-jre-headless")):
        if shutil.which(tool) is None:
            raise Missing(f"{tool} not found (apt-get install {package})")
    postgres_bindir()


def fetch_keycloak(version: str) -> Path:
    """The unpacked distribution (fetched by Maven into .cache/keycloak/ on first use)."""
    done = subprocess.run(
        ["bash", str(FETCH_SCRIPT), version],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode == 6:  # no version, or one Maven Central does not serve
        said = [line for line in done.stderr.splitlines() if "[fetch-keycloak]" in line]
        last = said[-1].split("[fetch-keycloak]", 1)[1].strip() if said else done.stderr[-400:]
        raise Unserved(last)
    if done.returncode != 0:
        raise Missing(f"could not fetch Keycloak {version}: {done.stderr.strip()[-400:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def build_keycloak(home: Path) -> None:
    """``kc.sh build`` once per cache (a stamp file remembers the options it was built with)."""
    stamp = home / ".built"
    wanted = " ".join(BUILD_OPTIONS)
    if stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return
    env = {**os.environ, "JAVA_OPTS_KC_HEAP": HEAP_OPTIONS}
    subprocess.run(
        ["nice", "-n", "5", str(home / "bin" / "kc.sh"), "build", *BUILD_OPTIONS],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    stamp.write_text(wanted, encoding="utf-8")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, predicate: Callable[[], bool], timeout_seconds: float) -> float:
    """Poll ``predicate`` until true; returns the seconds it took; AssertionError on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_seconds:
            raise AssertionError(f"not within {timeout_seconds:g} s: {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


@dataclass
class Processes:
    """Every process group the suite started; ``close()`` kills what is still alive."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.started):
            kill_group(proc, signal.SIGKILL)
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        # a stopped group would not die before SIGCONT
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGCONT)


def alive(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is None


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A PostgreSQL server from ``initdb`` in a temporary folder, on 127.0.0.1:<free port>."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="realkc-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else ""

    def _as_owner(self, argv: list[str]) -> list[str]:
        """PostgreSQL refuses to run as root: run it as ``postgres`` when we are root."""
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def init(self) -> None:
        self.root.chmod(0o755)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        argv = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        subprocess.run(
            self._as_owner([*argv, "--no-sync", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        log = self.log_path.open("ab")
        self.proc = self.processes.spawn(self._as_owner(argv), stdout=log, stderr=log)
        wait_until("PostgreSQL accepts connections", self.is_ready, 60)

    def is_ready(self) -> bool:
        if not alive(self.proc):
            raise AssertionError(f"PostgreSQL exited: {self.log_path.read_text()[-800:]}")
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def create_database(self, name: str) -> None:
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'").strip():
            self.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        self.psql(f"CREATE DATABASE {name} OWNER {DB_USER}")

    def copy_database(self, source: str, target: str) -> None:
        """A copy of a migrated database (pg_dump | psql), without the JGroups discovery
        rows: a node started on it boots without a migration and forms a cluster of its own."""
        self.create_database(target)
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        dump = subprocess.run(
            [str(self.bindir / "pg_dump"), *where, "--exclude-table-data=*jgroups*", source],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        subprocess.run(
            [str(self.bindir / "psql"), *where, "-q", "-v", "ON_ERROR_STOP=1", "-d", target],
            input=dump,
            capture_output=True,
            check=True,
            timeout=120,
        )

    def jdbc_url(self, database: str) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster): clients are disconnected."""
        assert self.proc is not None
        kill_group(self.proc, signal.SIGINT)
        self.proc.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the whole server (a throw-away one: no shutdown to wait for)."""
        assert self.proc is not None
        kill_group(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def freeze(self) -> None:
        assert self.proc is not None
        kill_group(self.proc, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        kill_group(self.proc, signal.SIGCONT)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- Keycloak


@dataclass
class KeycloakNode:
    """One ``kc.sh start --optimized`` process on its own loopback address."""

    name: str
    home: Path
    address: str
    database_url: str
    directory: Path
    processes: Processes
    json_log: bool = False
    extra_args: tuple[str, ...] = ()
    heap_options: str = HEAP_OPTIONS
    #: JAVA_OPTS replaced as a user's own (kc.sh's defaults, -XX:+ExitOnOutOfMemoryError
    #: among them, then dropped); empty: kc.sh's defaults
    java_opts: str = ""
    #: Infinispan/JGroups node name; in a pod it derives from the pod's host name
    node_name: str = ""
    http_port: int = 0
    management_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port(self.address)
        self.management_port = self.management_port or free_port(self.address)

    @property
    def log_path(self) -> Path:
        return self.directory / "keycloak.log"

    @property
    def console_path(self) -> Path:
        return self.directory / "console.log"

    @property
    def management_url(self) -> str:
        return f"http://{self.address}:{self.management_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def argv(self) -> list[str]:
        args = [
            str(self.home / "bin" / "kc.sh"),
            "start",
            "--optimized",
            f"--db-url={self.database_url}",
            f"--db-username={DB_USER}",
            f"--db-password={DB_PASSWORD}",
            "--http-enabled=true",
            "--hostname-strict=false",
            f"--http-host={self.address}",
            f"--http-port={self.http_port}",
            f"--http-management-port={self.management_port}",
            f"--cache-embedded-network-bind-address={self.address}",
            "--log=file",
            f"--log-file={self.log_path}",
        ]
        if self.json_log:
            args.append("--log-file-output=json")
        if self.node_name:
            # Keycloak 26 refuses -Djboss.node.name ("System property jboss.node.name is in use")
            args.append(f"--spi-cache-embedded-default-node-name={self.node_name}")
        return [*args, *self.extra_args]

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "JAVA_OPTS_KC_HEAP": self.heap_options,
            "JAVA_OPTS_APPEND": f"-Djava.io.tmpdir={self.directory}",
        }
        if self.java_opts:
            env["JAVA_OPTS"] = self.java_opts
        return env

    def start(self) -> None:
        console = self.console_path.open("ab")
        self.proc = self.processes.spawn(
            self.argv(), env=self.env(), stdout=console, stderr=subprocess.STDOUT
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        kill_group(self.proc, sig)

    def stop(self, timeout_seconds: float = 60) -> int:
        """SIGTERM (what the kubelet sends), then wait for the JVM to exit."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_seconds)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def has_logged(self, fragment: str) -> bool:
        return fragment in self.log_text()


# --------------------------------------------------------------------------- heap exhaustion

#: a heap Keycloak 26 boots in (16-40 s here) and that a few large requests exhaust
OOM_HEAP_OPTIONS = "-Xms64m -Xmx192m"
#: concurrent admin requests, each with a body just under Quarkus' 10 MiB limit: one string
#: of 9 MB that Keycloak reads, decodes and copies (the user profile refuses it with a 400
#: and logs nothing of it); 16 at once need several times the heap
OOM_REQUESTS = 16
OOM_BODY_BYTES = 9_000_000
OOM_REQUEST_TIMEOUT_SECONDS = 30.0
#: a user's own JAVA_OPTS (old charts and guides set the heap this way): kc.sh then drops
#: its defaults, -XX:+ExitOnOutOfMemoryError among them, and the JVM survives the error
USER_JAVA_OPTS = f"{OOM_HEAP_OPTIONS} -XX:MetaspaceSize=96M -XX:MaxMetaspaceSize=256m"


def admin_token(http_url: str) -> str:
    """An access token of the bootstrap admin (admin-cli, password grant)."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        }
    ).encode()
    url = f"{http_url}/realms/master/protocol/openid-connect/token"
    with urllib.request.urlopen(url, form, timeout=60) as answer:
        token: str = json.loads(answer.read())["access_token"]
        return token


def exhaust_heap(http_url: str) -> list[threading.Thread]:
    """Start ``OOM_REQUESTS`` concurrent large user creations (bounded by their timeout)."""
    token = admin_token(http_url)
    body = b'{"enabled":true,"username":"' + b"a" * OOM_BODY_BYTES + b'"}'
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post() -> None:
        request = urllib.request.Request(f"{http_url}/admin/realms/master/users", body, headers)
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(request, timeout=OOM_REQUEST_TIMEOUT_SECONDS) as answer,
        ):
            answer.read()

    threads = [threading.Thread(target=post, daemon=True) for _ in range(OOM_REQUESTS)]
    for thread in threads:
        thread.start()
    return threads


# --------------------------------------------------------------------------- the sidecar


def manifest_sidecar_args() -> list[str]:
    """The ``sidecar`` container's args in k8s/base/keycloak.yaml (comments dropped by YAML)."""
    for document in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")):
        if not document or document.get("kind") != "StatefulSet":
            continue
        spec = document["spec"]["template"]["spec"]
        # a native sidecar (init container with restartPolicy Always) or a plain container
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if container["name"] == "sidecar":
                return [str(arg) for arg in container["args"]]
    raise AssertionError(f"no sidecar container in {MANIFEST}")


def localized_args(node: KeycloakNode, listen: str, overrides: dict[str, str]) -> list[str]:
    """The manifest's args with the pod-local values of this node (later flags win)."""
    local = {
        "--log-file": str(node.log_path),
        "--keycloak-url": node.management_url,
        "--listen": listen,
        **overrides,
    }
    args = [arg for arg in manifest_sidecar_args() if arg.partition("=")[0] not in local]
    return [*args, *(f"{flag}={value}" for flag, value in local.items())]


@dataclass
class Sidecar:
    """``python -m sidecar`` next to one node, Kubernetes side off unless a kubeconfig is given."""

    node: KeycloakNode
    processes: Processes
    overrides: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    name: str = ""  # of its log file; default "sidecar"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.node.directory / f"{self.name or 'sidecar'}.log"

    def argv(self) -> list[str]:
        overrides = {"--no-kubernetes": "true", **self.overrides}
        args = localized_args(self.node, f"127.0.0.1:{self.port}", overrides)
        return [sys.executable, "-m", "sidecar", *args]

    def start(self) -> None:
        out = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        self.proc = self.processes.spawn(self.argv(), env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_until(f"sidecar of {self.node.name} serves", self.serves, 30)

    def serves(self) -> bool:
        if not alive(self.proc):
            raise AssertionError(f"sidecar exited: {self.log_path.read_text()[-800:]}")
        with contextlib.suppress(OSError):
            return self.get("/metrics")[0] == 200
        return False

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of one of the sidecar's endpoints."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                body = answer.read()
                status: int = answer.status
        except urllib.error.HTTPError as error:
            body = error.read()
            status = error.code
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"text": body.decode(errors="replace")}
        return status, parsed

    def status(self, path: str) -> int:
        return self.get(path)[0]

    def reasons(self, path: str) -> list[str]:
        return list(self.get(path)[1].get("reasons", []))


def analyze_json(log_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``python -m sidecar analyze --json`` on a log: (events, final verdict)."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "analyze", str(log_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    verdict = records[-1]["verdict"]
    return records[:-1], verdict


def first_line_number(log_path: Path, fragment: str) -> int:
    with log_path.open(encoding="utf-8", errors="replace") as log:
        for number, line in enumerate(log, start=1):
            if fragment in line:
                return number
    raise AssertionError(f"{fragment!r} not in {log_path}")


@contextlib.contextmanager
def processes_closed() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.close()


# --------------------------------------------------------------------------- the API double


class KubeApiThread:
    """tests/kubeapi.py's Kubernetes API double, served from its own event loop in a thread."""

    def __init__(self, namespace: str) -> None:
        from kubeapi import KubeApiDouble

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kube-api", daemon=True)
        self.api = KubeApiDouble(namespace=namespace)

    def start(self, directory: Path) -> Path:
        """Start serving; returns the kubeconfig that points at it."""
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.api.__aenter__(), self.loop).result(30)
        return self.call(self.api.write_kubeconfig, directory)

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function`` in the double's loop (its state belongs to that loop)."""

        async def run() -> Any:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self) -> None:
        if self.thread.is_alive():
            exit_ = self.api.__aexit__(None, None, None)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(exit_, self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        self.loop.close()


# --------------------------------------------------------------------------- a partition


@dataclass
class Partition:
    """Packet filtering of the JGroups traffic of two nodes (iptables, a chain of our own)."""

    first: str
    second: str
    chain: str = field(default_factory=lambda: f"REALKC{os.getpid()}")
    active: bool = False

    @staticmethod
    def available() -> str:
        """Empty when a partition can be made here, else why not."""
        if shutil.which("iptables") is None:
            return "iptables not found (apt-get install iptables)"
        if os.geteuid() != 0:
            return "iptables needs root"
        return ""

    def _iptables(self, *args: str, check: bool = True) -> None:
        subprocess.run(["iptables", "-w", *args], check=check, capture_output=True, timeout=30)

    def cut(self) -> None:
        """Drop every JGroups packet to or from either node's JGroups ports.

        By port, not by address pair: a node's outgoing connections may leave from 127.0.0.1
        whatever its bind address.  The database, HTTP and management ports stay open.
        """
        self._iptables("-N", self.chain)
        for address in (self.first, self.second):
            for port in JGROUPS_PORTS:
                for direction in (("-d", address, "--dport"), ("-s", address, "--sport")):
                    where, ip, port_flag = direction
                    rule = [where, ip, "-p", "tcp", port_flag, port, "-j", "DROP"]
                    self._iptables("-A", self.chain, *rule)
        self._iptables("-I", "INPUT", "-j", self.chain)
        self.active = True

    def heal(self) -> None:
        self._iptables("-D", "INPUT", "-j", self.chain, check=False)
        self._iptables("-F", self.chain, check=False)
        self._iptables("-X", self.chain, check=False)
        self.active = False


# --------------------------------------------------------------------------- the cluster


@dataclass
class LivezWatch:
    """Polls every sidecar's /livez in a thread: what a kubelet would have seen, densely."""

    sidecars: dict[str, Sidecar]
    interval_seconds: float = 0.25
    samples: list[tuple[float, str, int, tuple[str, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="livez-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            for name, sidecar in list(self.sidecars.items()):
                try:
                    status, body = sidecar.get("/livez")
                except OSError:
                    continue
                reasons = tuple(body.get("reasons", ()))
                self.samples.append((time.monotonic(), name, status, reasons))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def mark(self) -> float:
        return time.monotonic()

    def failures(self, name: str, since: float = 0.0) -> list[tuple[float, tuple[str, ...]]]:
        return [(t, r) for t, n, s, r in self.samples if n == name and s != 200 and t >= since]

    def longest_failure_seconds(self, name: str, since: float = 0.0) -> float:
        """The longest run of consecutive failing /livez answers of one sidecar."""
        longest, run_start = 0.0, None
        for t, n, status, _ in self.samples:
            if n != name or t < since:
                continue
            if status != 200:
                run_start = t if run_start is None else run_start
                longest = max(longest, t - run_start)
            else:
                run_start = None
        return longest


@dataclass(frozen=True)
class Exit:
    """A Keycloak JVM that exited by itself during the boot, and what its sidecar said then."""

    node: str
    returncode: int
    livez: dict[str, Any]
    log_text: str


@dataclass
class RealCluster:
    version: str
    home: Path
    root: Path
    processes: Processes
    postgres: Postgres
    nodes: list[KeycloakNode]
    sidecars: list[Sidecar]
    watch: LivezWatch
    boot_seconds: float = 0.0
    exits: list[Exit] = field(default_factory=list)
    #: what one scenario observed for a later test to judge (file order)
    notes: dict[str, Any] = field(default_factory=dict)

    def extra_node(
        self, name: str, address: str, database: str, **kwargs: object
    ) -> tuple[KeycloakNode, Sidecar]:
        """A node outside the cluster's pair, with its own sidecar (watched too)."""
        node = KeycloakNode(
            name,
            self.home,
            address,
            self.postgres.jdbc_url(database),
            self.root / name,
            self.processes,
            **kwargs,  # type: ignore[arg-type]
        )
        sidecar = Sidecar(node, self.processes)
        sidecar.start()
        self.watch.sidecars[name] = sidecar
        return node, sidecar
