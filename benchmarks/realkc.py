"""The sidecar's cost next to a real Keycloak 26, idle and busy, and its time to a real fatal line.

    .venv/bin/python benchmarks/realkc.py                       # the run of benchmarks/README.md
    .venv/bin/python benchmarks/realkc.py --seconds 15 --warmup 10 --fatal-runs 1   # quicker
    .venv/bin/python benchmarks/realkc.py --scan-connections 4,8,16,32   # what limits the rate

One real PostgreSQL and one real Keycloak node (the harness of tests/realkc, the version of
tests/realkc/versions.txt or KEYCLOAK_VERSION), with the real sidecar configured as in
k8s/base/keycloak.yaml.  Keycloak logs its events: ``--log-level=INFO,org.keycloak.events:debug``
turns on the success events of the default ``jboss-logging`` event listener, one log line per
login or token, so the sidecar has real log traffic to read under load.

Measured from /proc over each window: CPU seconds (utime+stime of each process tree: the
JVM, the sidecar, PostgreSQL, wrk; the whole machine from /proc/stat), RSS (VmRSS summed
over the tree at the end), and the log lines the sidecar read (its
``keycloak_sidecar_log_lines`` counter).  The states:

* idle: nobody talks to Keycloak; the sidecar probes it every 5 s and follows its log;
* tokens: OAuth2 client-credentials token requests;
* logins: password-grant logins (each one a user session, persisted) of a user of a realm
  whose password policy asks for a cheap hash (--password-policy, by default
  ``hashAlgorithm(pbkdf2-sha512) and hashIterations(1000)``);
* logins at the default hash: the same in a realm without a password policy, so with
  Keycloak 26's default hash (argon2; the run prints what Keycloak stored), at most
  4 connections: each login costs tens of milliseconds of CPU and a few MiB of memory.

Each load is ``wrk`` on loopback, bounded by its duration: first --warmup seconds (the JIT),
then the measured window.  Then the time from Keycloak's real fatal line (a Liquibase failure
on a schema with a table in the way) to the sidecar's /livez 503: each line's arrival in the
file is timed by polling the file every 5 ms, /livez is asked after each poll.  Prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "realkc"))

from realkc_cluster import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    HEAP_OPTIONS,
    KeycloakNode,
    Postgres,
    Processes,
    Sidecar,
    analyze_json,
    build_keycloak,
    fetch_keycloak,
    kill_group,
    selected_version,
    wait_until,
)

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret"  # a throw-away loopback Keycloak
USER = "bench-user"
USER_PASSWORD = "bench-user-password"
#: the success events of the jboss-logging event listener are logged at DEBUG
LOG_LEVEL = "INFO,org.keycloak.events:debug"
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
LOADS = ("tokens", "logins", "logins-default-hash")
#: Keycloak 26's default hash (argon2) costs ~0.1 s of CPU a login: this one a small part of it
FAST_HASH_POLICY = "hashAlgorithm(pbkdf2-sha512) and hashIterations(1000)"
#: logins at the default hash are CPU-bound at a few a second: more connections only queue
SLOW_LOGIN_CONNECTIONS = 4


# --------------------------------------------------------------------------- /proc


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants (PostgreSQL's backends each call setsid: not one group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """utime+stime of a process tree's live processes (and of the children they waited for)."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / TICKS_PER_SECOND


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (user..steal, without idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS_PER_SECOND


def rss_mib(root: int) -> float:
    total_kib = 0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --------------------------------------------------------------------------- a window


def sidecar_lines(sidecar: Sidecar) -> float:
    """The sidecar's own count of the log lines it read."""
    with urllib.request.urlopen(sidecar.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(r"^keycloak_sidecar_log_lines(?:_total)? ([0-9.e+]+)$", text, re.MULTILINE)
    if not found:
        raise RuntimeError("no keycloak_sidecar_log_lines in /metrics")
    return float(found.group(1))


@dataclass
class Window:
    """CPU (% of one core) and RSS (MiB) per process tree, and what the sidecar read."""

    seconds: float
    cpu: dict[str, float]
    rss: dict[str, float]
    machine_cpu: float
    lines_per_second: float
    livez: int
    load: str


def measure(groups: dict[str, int], sidecar: Sidecar, seconds: float) -> Window:
    lines_before = sidecar_lines(sidecar)
    busy_before = machine_busy_seconds()
    before = {name: cpu_seconds(pid) for name, pid in groups.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = {name: 100 * (cpu_seconds(pid) - before[name]) / elapsed for name, pid in groups.items()}
    machine = 100 * (machine_busy_seconds() - busy_before) / elapsed
    lines = (sidecar_lines(sidecar) - lines_before) / elapsed
    rss = {name: rss_mib(pid) for name, pid in groups.items()}
    return Window(elapsed, cpu, rss, machine, lines, sidecar.status("/livez"), load_average())


# --------------------------------------------------------------------------- Keycloak set-up


def admin_token(node: KeycloakNode) -> str:
    answer = post_form(
        f"{node.http_url}/realms/master/protocol/openid-connect/token",
        {
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        },
    )
    return str(answer["access_token"])


def post_form(url: str, form: dict[str, str]) -> dict[str, object]:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def admin(node: KeycloakNode, method: str, path: str, body: object = None) -> object:
    """One call of the admin REST API (a fresh admin token each time: it lives 60 s)."""
    request = urllib.request.Request(
        f"{node.http_url}/admin/realms{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {admin_token(node)}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def create_realm(node: KeycloakNode, realm: str, password_policy: str) -> str:
    """A realm with a confidential client (service account, direct grants) and one user.

    Returns the stored password hash's parameters, as Keycloak reports them.
    """
    representation: dict[str, object] = {"realm": realm, "enabled": True}
    if password_policy:
        representation["passwordPolicy"] = password_policy
    admin(node, "POST", "", representation)
    client = {
        "clientId": CLIENT_ID,
        "secret": CLIENT_SECRET,
        "publicClient": False,
        "serviceAccountsEnabled": True,
        "directAccessGrantsEnabled": True,
        "standardFlowEnabled": False,
    }
    admin(node, "POST", f"/{realm}/clients", client)
    user = {
        "username": USER,
        "enabled": True,
        # Keycloak 24+ user profile: without these a login asks to complete the profile
        "email": f"{USER}@example.invalid",
        "emailVerified": True,
        "firstName": "Bench",
        "lastName": "User",
        "credentials": [{"type": "password", "value": USER_PASSWORD, "temporary": False}],
    }
    admin(node, "POST", f"/{realm}/users", user)
    found = admin(node, "GET", f"/{realm}/users?username={USER}&exact=true")
    assert isinstance(found, list)
    credentials = admin(node, "GET", f"/{realm}/users/{found[0]['id']}/credentials")
    assert isinstance(credentials, list)
    data = json.loads(credentials[0]["credentialData"])
    return f"{data.get('algorithm')}, {data.get('hashIterations')} iterations"


# --------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Load:
    name: str
    label: str
    realm: str
    form: dict[str, str]


def loads(selected: list[str]) -> list[Load]:
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    password = {"grant_type": "password", "username": USER, "password": USER_PASSWORD}
    every = {
        "tokens": Load(
            "tokens",
            "client-credentials tokens",
            "bench",
            {"grant_type": "client_credentials", **client},
        ),
        "logins": Load("logins", "password logins", "bench", {**password, **client}),
        "logins-default-hash": Load(
            "logins-default-hash",
            "password logins, default hash",
            "bench-default-hash",
            {**password, **client},
        ),
    }
    return [every[name] for name in selected]


@dataclass
class WrkResult:
    rate: float
    requests: int
    non_2xx: int
    latency_ms: float
    socket_errors: str


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, requests, non-2xx answers, mean latency and socket errors of one wrk run."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", output)
    if not rate or not requests or not latency:
        raise RuntimeError(f"unreadable wrk output: {output[-400:]}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s*(.*)", output)
    return WrkResult(
        float(rate.group(1)),
        int(requests.group(1)),
        int(non_2xx.group(1)) if non_2xx else 0,
        float(latency.group(1)) * scale,
        errors.group(1).strip() if errors else "",
    )


@dataclass
class Wrk:
    """wrk POSTing one form to the token endpoint of a realm, bounded by its duration."""

    node: KeycloakNode
    load: Load
    threads: int
    connections: int
    directory: Path

    def argv(self, seconds: float) -> list[str]:
        script = self.directory / f"{self.load.name}.lua"
        body = urllib.parse.urlencode(self.load.form)
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{body}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n',
            encoding="utf-8",
        )
        url = f"{self.node.http_url}/realms/{self.load.realm}/protocol/openid-connect/token"
        return [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds:.0f}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]

    def shown(self, seconds: float) -> str:
        argv = self.argv(seconds)
        argv[-2] = f"{self.load.name}.lua"
        argv[-1] = argv[-1].replace(self.node.http_url, "http://KC")
        return " ".join(argv)

    def start(self, procs: Processes, seconds: float, tag: str) -> tuple[int, Path]:
        out = self.directory / f"wrk-{self.load.name}-c{self.connections}-{tag}.txt"
        proc = procs.spawn(self.argv(seconds), stdout=out.open("wb"), stderr=subprocess.STDOUT)
        return proc.pid, out

    def run(self, procs: Processes, seconds: float, tag: str) -> WrkResult:
        pid, out = self.start(procs, seconds, tag)
        wait_pid(procs, pid, seconds + 30)
        return parse_wrk(out.read_text())


def wait_pid(procs: Processes, pid: int, timeout: float) -> None:
    for proc in procs.started:
        if proc.pid == pid:
            proc.wait(timeout=timeout)
            return
    raise KeyError(pid)


@dataclass
class Busy:
    load: Load
    connections: int
    wrk: WrkResult
    window: Window
    command: str


def busy_window(
    procs: Processes,
    wrk: Wrk,
    *,
    groups: dict[str, int],
    sidecar: Sidecar,
    seconds: float,
    warmup: float,
) -> Busy:
    """Warm up, then measure a window inside a wrk run 2 s longer than it."""
    if warmup > 0:
        wrk.run(procs, warmup, "warmup")
    pid, out = wrk.start(procs, seconds + 2, "measured")
    groups = {**groups, "wrk": pid}
    time.sleep(1)
    window = measure(groups, sidecar, seconds)
    wait_pid(procs, pid, seconds + 30)
    result = parse_wrk(out.read_text())
    return Busy(wrk.load, wrk.connections, result, window, wrk.shown(seconds + 2))


# --------------------------------------------------------------------------- fatal line


def fatal_latency(procs: Processes, pg: Postgres, home: Path, root: Path, run: int) -> float:
    database = f"broken{run}"
    pg.create_database(database)
    pg.psql("CREATE TABLE public.realm (id integer)", database=database)
    node = KeycloakNode(
        f"fatal{run}", home, "127.0.0.9", pg.jdbc_url(database), root / f"fatal{run}", procs
    )
    sidecar = Sidecar(node, procs)
    sidecar.start()
    node.start()
    arrivals: list[float] = []
    failed_at = 0.0
    deadline = time.monotonic() + 300
    while not failed_at and time.monotonic() < deadline:
        now = time.monotonic()
        lines = node.log_text().count("\n")
        arrivals.extend([now] * (lines - len(arrivals)))
        if sidecar.status("/livez") == 503:
            failed_at = now
        time.sleep(0.005)
    for proc in (node.proc, sidecar.proc):
        if proc is not None:
            kill_group(proc, 9)
    if not failed_at:
        raise SystemExit("no /livez 503 within 300 s")
    events, _ = analyze_json(node.log_path)
    fatal = [e for e in events if e["event"] == "startup_fatal"]
    return failed_at - arrivals[int(fatal[0]["line"]) - 1]


# --------------------------------------------------------------------------- report


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole > 0 else "n/a"


def row(state: str, rate: str, window: Window) -> str:
    kc_cpu, sc_cpu = window.cpu["keycloak"], window.cpu["sidecar"]
    kc_rss, sc_rss = window.rss["keycloak"], window.rss["sidecar"]
    return (
        f"| {state} | {rate} | {window.lines_per_second:.0f} | {kc_cpu:.1f} % | {kc_rss:.0f} MiB "
        f"| {sc_cpu:.2f} % | {sc_rss:.0f} MiB | {share(sc_cpu, kc_cpu)} | {share(sc_rss, kc_rss)} |"
    )


def where_row(state: str, window: Window, wrk: WrkResult | None) -> str:
    cpu = window.cpu
    known = sum(cpu.values())
    latency = f"{wrk.latency_ms:.1f} ms" if wrk else ""
    return (
        f"| {state} | {cpu['keycloak']:.0f} % | {cpu['postgres']:.0f} % "
        f"| {cpu.get('wrk', 0):.0f} % "
        f"| {cpu['sidecar']:.1f} % | {max(window.machine_cpu - known, 0):.0f} % "
        f"| {window.machine_cpu:.0f} % | {latency} | {window.load} | {window.livez} |"
    )


def report(
    version: str, args: argparse.Namespace, idle: Window, busy: list[Busy], hashes: dict[str, str]
) -> None:
    print(
        f"Keycloak {version} ({args.heap}); {os.cpu_count()} cores; windows {args.seconds:.0f} s "
        f"after {args.warmup:.0f} s of warm-up; log level {LOG_LEVEL}"
    )
    for realm, stored in hashes.items():
        print(f"realm {realm}: password stored as {stored}")
    print()
    print(
        "| state | achieved rate | log lines/s read by the sidecar | Keycloak CPU | Keycloak RSS "
        "| sidecar CPU | sidecar RSS | sidecar / Keycloak CPU | sidecar / Keycloak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("idle", "", idle))
    for b in busy:
        failed = f", {b.wrk.non_2xx} non-2xx" if b.wrk.non_2xx else ""
        failed += f", socket errors {b.wrk.socket_errors}" if b.wrk.socket_errors else ""
        rate = f"{b.wrk.rate:.0f} {b.load.label}/s ({b.connections} connections{failed})"
        print(row(b.load.name, rate, b.window))
    print()
    print(
        "Where the CPU went (% of one core; the machine has 200 %), wrk's mean latency, "
        "the load average at the end, the sidecar's /livez at the end:"
    )
    print()
    print(
        "| state | Keycloak | PostgreSQL | wrk | sidecar | rest of the machine | machine "
        "| latency | load average | /livez |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(where_row("idle", idle, None))
    for b in busy:
        print(where_row(f"{b.load.name} c{b.connections}", b.window, b.wrk))
    print()
    for b in busy:
        print(f"    {b.command}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="each measured window")
    parser.add_argument("--warmup", type=float, default=30.0, help="load before each window")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"some of {','.join(LOADS)}")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--scan-connections",
        default="",
        help="comma-separated connection counts: measure each load at each (finding the limit)",
    )
    parser.add_argument(
        "--password-policy",
        default=FAST_HASH_POLICY,
        help="of the realm of the 'logins' load (Keycloak's default hash costs ~0.1 s a login)",
    )
    parser.add_argument("--heap", default=HEAP_OPTIONS, help="Keycloak's JAVA_OPTS_KC_HEAP")
    parser.add_argument("--fatal-runs", type=int, default=5)
    args = parser.parse_args()
    selected = [name.strip() for name in args.loads.split(",") if name.strip()]
    unknown = set(selected) - set(LOADS)
    if unknown:
        parser.error(f"unknown loads {sorted(unknown)}; known: {', '.join(LOADS)}")
    levels = [int(c) for c in args.scan_connections.split(",") if c] or [args.connections]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    version = selected_version()
    home = fetch_keycloak(version)
    build_keycloak(home)
    root = Path(tempfile.mkdtemp(prefix="realkc-bench-"))
    procs = Processes()
    pg = Postgres(procs)
    busy: list[Busy] = []
    hashes: dict[str, str] = {}
    latencies: list[float] = []
    try:
        pg.init()
        pg.start()
        pg.create_database("keycloak")
        node = KeycloakNode(
            "kc",
            home,
            "127.0.0.8",
            pg.jdbc_url("keycloak"),
            root / "kc",
            procs,
            extra_args=(f"--log-level={LOG_LEVEL}",),
            heap_options=args.heap,
        )
        sidecar = Sidecar(node, procs)
        sidecar.start()
        started = time.monotonic()
        node.start()
        wait_until("Keycloak ready", lambda: sidecar.status("/readyz") == 200, 600)
        print(
            f"[realkc-bench] Keycloak {version} ready after {time.monotonic() - started:.0f} s",
            flush=True,
        )
        assert node.proc is not None
        assert sidecar.proc is not None
        assert pg.proc is not None
        groups = {"keycloak": node.proc.pid, "sidecar": sidecar.proc.pid, "postgres": pg.proc.pid}
        time.sleep(10)  # let the boot's after-work settle
        idle = measure(groups, sidecar, args.seconds)
        print(f"[realkc-bench] idle: load average {idle.load}", flush=True)
        for load in loads(selected):
            if load.realm not in hashes:
                policy = "" if load.realm.endswith("default-hash") else args.password_policy
                hashes[load.realm] = create_realm(node, load.realm, policy)
            cap = SLOW_LOGIN_CONNECTIONS if load.name == "logins-default-hash" else 10**6
            for connections in sorted({min(level, cap) for level in levels}):
                wrk = Wrk(node, load, args.threads, connections, root)
                done = busy_window(
                    procs,
                    wrk,
                    groups=groups,
                    sidecar=sidecar,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                busy.append(done)
                print(
                    f"[realkc-bench] {load.name} c{connections}: {done.wrk.rate:.0f}/s, "
                    f"Keycloak {done.window.cpu['keycloak']:.0f} %, load {done.window.load}",
                    flush=True,
                )
        kill_group(node.proc, 15)
        node.proc.wait(timeout=60)
        kill_group(sidecar.proc, 15)
        for run in range(args.fatal_runs):
            latencies.append(fatal_latency(procs, pg, home, root, run))
            print(f"[realkc-bench] fatal boot {run}: {1000 * latencies[-1]:.0f} ms", flush=True)
    finally:
        procs.close()
        pg.remove()
    report(version, args, idle, busy, hashes)
    if latencies:
        shown = ", ".join(f"{1000 * s:.0f} ms" for s in latencies)
        print()
        print(
            f"real fatal line -> /livez 503 ({len(latencies)} boots, 5 ms polls): {shown}; "
            f"median {1000 * statistics.median(latencies):.0f} ms, "
            f"max {1000 * max(latencies):.0f} ms"
        )
    print(f"logs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
