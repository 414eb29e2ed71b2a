"""What the sidecar costs next to a real Keycloak 26, and how fast it sees a real fatal line.

    .venv/bin/python benchmarks/realkc.py                 # idle 60 s, busy 60 s, 3 fatal boots
    .venv/bin/python benchmarks/realkc.py --seconds 20 --fatal-runs 1    # quicker

One real PostgreSQL and one real Keycloak node (the harness of tests/realkc, the version of
tests/realkc/versions.txt or KEYCLOAK_VERSION), with the real sidecar configured as in
k8s/base/keycloak.yaml.  Measured from /proc: CPU seconds (utime+stime of every process of
each process group) over a window, and RSS (VmRSS summed over the group), for:

* idle: nobody talks to Keycloak; the sidecar probes it every 5 s and follows its log;
* busy: a bounded load loop on loopback (``wrk``, 2 threads, 8 connections, for --seconds)
  of OAuth2 client-credentials token requests against a client created via the admin API.

Then the time from Keycloak's real fatal line (a Liquibase failure on a schema with a table in
the way) to the sidecar's /livez 503: each line's arrival in the file is timed by polling the
file every 5 ms, /livez is asked after each poll.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "realkc"))

from realkc_cluster import (
    ADMIN_PASSWORD,
    ADMIN_USER,
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
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pgid: int) -> float:
    total = 0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS_PER_SECOND


def rss_mib(pgid: int) -> float:
    total_kib = 0
    for pid in group_pids(pgid):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def window(groups: dict[str, int], seconds: float) -> dict[str, tuple[float, float]]:
    """Per group: (CPU % of one core over the window, RSS MiB at its end)."""
    before = {name: cpu_seconds(pgid) for name, pgid in groups.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {
        name: (100 * (cpu_seconds(pgid) - before[name]) / elapsed, rss_mib(pgid))
        for name, pgid in groups.items()
    }


def post_form(url: str, form: dict[str, str], token: str = "") -> dict[str, object]:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def create_client(node: KeycloakNode) -> None:
    """A confidential client with a service account, through the admin REST API."""
    token = post_form(
        f"{node.http_url}/realms/master/protocol/openid-connect/token",
        {
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        },
    )["access_token"]
    client = {
        "clientId": CLIENT_ID,
        "secret": CLIENT_SECRET,
        "publicClient": False,
        "serviceAccountsEnabled": True,
        "standardFlowEnabled": False,
    }
    request = urllib.request.Request(
        f"{node.http_url}/admin/realms/master/clients",
        data=json.dumps(client).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def run_load(
    node: KeycloakNode, seconds: float, directory: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """wrk POSTing client-credentials token requests, bounded by -d."""
    script = directory / "token.lua"
    body = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n',
        encoding="utf-8",
    )
    out = directory / "wrk.txt"
    url = f"{node.http_url}/realms/master/protocol/openid-connect/token"
    argv = ["wrk", "-t2", "-c8", f"-d{seconds:.0f}s", "-s", str(script), url]
    return subprocess.Popen(argv, stdout=out.open("wb"), stderr=subprocess.STDOUT), out


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
    return failed_at - arrivals[fatal[0]["line"] - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle and busy windows")
    parser.add_argument("--fatal-runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    version = selected_version()
    home = fetch_keycloak(version)
    build_keycloak(home)
    root = Path(tempfile.mkdtemp(prefix="realkc-bench-"))
    procs = Processes()
    pg = Postgres(procs)
    try:
        pg.init()
        pg.start()
        pg.create_database("keycloak")
        node = KeycloakNode("kc", home, "127.0.0.8", pg.jdbc_url("keycloak"), root / "kc", procs)
        sidecar = Sidecar(node, procs)
        sidecar.start()
        node.start()
        wait_until("Keycloak ready", lambda: sidecar.status("/readyz") == 200, 600)
        assert node.proc is not None
        assert sidecar.proc is not None
        groups = {"keycloak": node.proc.pid, "sidecar": sidecar.proc.pid}
        time.sleep(10)  # let the boot's after-work settle
        idle = window(groups, args.seconds)
        create_client(node)
        load, out = run_load(node, args.seconds, root)
        busy = window(groups, args.seconds - 2)
        load.wait(timeout=args.seconds + 60)
        wrk = out.read_text()
        rate = next(
            (ln.split()[1] for ln in wrk.splitlines() if ln.startswith("Requests/sec")), "?"
        )
        kill_group(node.proc, 15)
        node.proc.wait(timeout=60)
        kill_group(sidecar.proc, 15)
        latencies = [fatal_latency(procs, pg, home, root, run) for run in range(args.fatal_runs)]
    finally:
        procs.close()
        pg.remove()
    print(
        f"Keycloak {version}; {os.cpu_count()} cores; window {args.seconds:.0f} s; "
        f"wrk: {rate} token requests/s"
    )
    print()
    print(
        "| state | Keycloak CPU | Keycloak RSS | sidecar CPU | sidecar RSS "
        "| sidecar / Keycloak (CPU, RSS) |"
    )
    print("|---|---|---|---|---|---|")
    for state, figures in (("idle", idle), (f"busy ({rate} tokens/s)", busy)):
        kc_cpu, kc_rss = figures["keycloak"]
        sc_cpu, sc_rss = figures["sidecar"]
        print(
            f"| {state} | {kc_cpu:.1f} % | {kc_rss:.0f} MiB | {sc_cpu:.2f} % | {sc_rss:.0f} MiB | "
            f"{100 * sc_cpu / max(kc_cpu, 1e-9):.1f} %, {100 * sc_rss / kc_rss:.1f} % |"
        )
    print()
    shown = ", ".join(f"{1000 * s:.0f} ms" for s in latencies)
    print(
        f"real fatal line -> /livez 503 ({len(latencies)} boots, 5 ms polls): {shown}; "
        f"median {1000 * statistics.median(latencies):.0f} ms"
    )
    print(f"logs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
