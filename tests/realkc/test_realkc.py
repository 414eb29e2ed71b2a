"""Scenarios against a real two-node Keycloak 26 cluster on a real PostgreSQL (issue 16).

The tests run in file order on one shared cluster (``conftest.cluster``): the story is its
boot; each later scenario leaves the pair as it found it (database back, node restarted) or
uses an extra node of its own.  Each saves the real Keycloak log it produced under the run's
folder (``fixtures/``), and into ``tests/data/realkc/`` with ``REALKC_SAVE_FIXTURES=1``;
``test_replay.py`` replays those saved logs without Java.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Scenario, tail
from realkc_cluster import (
    FIXTURES,
    OOM_HEAP_OPTIONS,
    USER_JAVA_OPTS,
    KeycloakNode,
    KubeApiThread,
    Partition,
    Postgres,
    RealCluster,
    Sidecar,
    alive,
    analyze_json,
    exhaust_heap,
    free_port,
    kill_group,
    unavailable,
    wait_until,
)
from realkc_pod import POD, SCALE, RealKeycloakPod, restarted_by_the_emulator

pytestmark = [pytest.mark.realkc, pytest.mark.timeout(1200)]

#: the kubelet would restart after failureThreshold (3) failures periodSeconds (10) apart
KUBELET_KILL_SECONDS = 20.0
READY_TIMEOUT_SECONDS = 240.0
FATAL_TIMEOUT_SECONDS = 240.0


def save_fixture(cluster: RealCluster, scenario: str, node: KeycloakNode, text: str = "") -> Path:
    """Keep what Keycloak really printed: ``<version>-<scenario>-<node>.log``."""
    name = f"{cluster.version}-{scenario}-{node.name}.log"
    body = text or node.log_text()
    kept = cluster.root / "fixtures" / name
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(body, encoding="utf-8")
    if os.environ.get("REALKC_SAVE_FIXTURES") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kept, FIXTURES / name)
    return kept


def view_size(sidecar: Sidecar) -> int:
    view = sidecar.get("/status")[1].get("cluster", {}).get("view") or {}
    size: int = view.get("size", 0)
    return size


def check_detail(body: dict[str, Any], reason: str) -> str:
    """The ``detail`` of the check failing with ``reason`` (the cause of a startup_fatal)."""
    for check in body.get("checks", []):
        if check.get("reason") == reason:
            detail: str = check.get("detail", "")
            return detail
    return ""


def events_of(log: Path, kind: str) -> list[dict[str, Any]]:
    events, _ = analyze_json(log)
    return [e for e in events if e["event"] == kind]


def assert_pair_untouched(cluster: RealCluster, since: float) -> None:
    """The pair's Keycloak processes run and their sidecars never failed /livez since then."""
    for node in cluster.nodes:
        assert alive(node.proc), f"{node.name} exited"
        assert cluster.watch.failures(node.name, since) == [], f"{node.name} /livez failed"


# --------------------------------------------------------------------------- 1. the story


def test_story_both_start_at_once_and_form_one_cluster(cluster: RealCluster) -> None:
    """Both nodes on one empty database at the same moment: no kill, both ready, one view of 2."""
    print(f"\n[realkc] Keycloak {cluster.version}: both started in {cluster.boot_seconds:.0f} s")
    by_name = {node.name: node for node in cluster.nodes}
    for exit_ in cluster.exits:
        # the loser of the race on the empty schema exits by itself; its sidecar said why
        print(f"[realkc] {exit_.node} exited {exit_.returncode}: {exit_.livez.get('reasons')}")
        assert "startup_fatal" in exit_.livez.get("reasons", []), exit_.livez
        save_fixture(cluster, "story-race-lost", by_name[exit_.node], text=exit_.log_text)
    for node in cluster.nodes:
        assert alive(node.proc), f"{node.name} exited: {node.console_path.read_text()[-800:]}"
    wait_until(
        "both ready with a view of two members",
        lambda: all(s.status("/readyz") == 200 and view_size(s) == 2 for s in cluster.sidecars),
        READY_TIMEOUT_SECONDS,
    )
    migrated = [n.name for n in cluster.nodes if "Initializing database schema" in n.log_text()]
    print(f"[realkc] the schema was created by {migrated}; the other waited for the lock")
    for node in cluster.nodes:
        # reported, not asserted: a short 503 right after 'started' depends on probe timing
        print(f"[realkc] {node.name} /livez failures: {cluster.watch.failures(node.name)[:3]}")
        longest = cluster.watch.longest_failure_seconds(node.name)
        if node.name not in {e.node for e in cluster.exits}:  # an exited one failed for real
            assert longest < KUBELET_KILL_SECONDS, f"{node.name}: /livez failed {longest:.1f} s"
        log = save_fixture(cluster, "story", node)
        events, verdict = analyze_json(log)
        kinds = {e["event"] for e in events}
        assert "startup_complete" in kinds
        if node.name not in {e.node for e in cluster.exits}:
            assert "startup_fatal" not in kinds
        assert max(e.get("size", 0) for e in events if e["event"] == "cluster_view") == 2
        assert verdict["started"] and verdict["live"], verdict


# --------------------------------------------------------------------------- 2. fatal schema


def test_fatal_schema_migration(cluster: RealCluster) -> None:
    """A table in the way of the first migration: Keycloak's real Liquibase failure -> 503."""
    cluster.postgres.create_database("broken")
    # the first changeset creates REALM; an object of that name makes the migration fail
    cluster.postgres.psql("CREATE TABLE public.realm (id integer)", database="broken")
    cluster.postgres.psql("ALTER TABLE public.realm OWNER TO keycloak", database="broken")
    mark = time.monotonic()
    node, sidecar = cluster.extra_node("kc-broken-schema", "127.0.0.4", "broken")
    node.start()
    try:
        latency_seconds = wait_fatal(node, sidecar)
        body = sidecar.get("/livez")[1]
        print(f"[realkc] fatal line -> /livez 503 in {latency_seconds:.3f} s (20 ms polls)")
        assert "startup_fatal" in body["reasons"], body
        assert check_detail(body, "startup_fatal") == "liquibase", body
        assert sidecar.status("/startupz") == 200  # the startup phase is over: it failed
        assert_pair_untouched(cluster, mark)
    finally:
        kill_group_of(node)
    log = save_fixture(cluster, "schema-conflict", node)
    assert [e.get("reason") for e in events_of(log, "startup_fatal")][:1] == ["liquibase"]


def wait_fatal(node: KeycloakNode, sidecar: Sidecar, kind: str = "startup_fatal") -> float:
    """Wait for /livez 503; returns the seconds from the first fatal line's arrival to it.

    Each line's arrival in the file is timed by polling it every 20 ms; the fatal line is the
    first ``kind`` event of ``analyze --json`` on the same log.
    """
    arrivals: list[float] = []  # arrivals[i]: when line i+1 was first seen
    failed_seen = 0.0
    deadline = time.monotonic() + FATAL_TIMEOUT_SECONDS
    while not failed_seen:
        assert time.monotonic() < deadline, f"{node.name}: no /livez 503"
        now = time.monotonic()
        lines = node.log_text().count("\n")
        arrivals.extend([now] * (lines - len(arrivals)))
        if sidecar.status("/livez") == 503:
            failed_seen = now
        time.sleep(0.02)
    fatal = events_of(node.log_path, kind)
    assert fatal, f"{node.name}: /livez 503 without a {kind} line"
    return failed_seen - arrivals[fatal[0]["line"] - 1]


def kill_group_of(node: KeycloakNode) -> None:
    if node.proc is not None:
        kill_group(node.proc, signal.SIGKILL)
        node.proc.wait(timeout=30)


# --------------------------------------------------------------------------- 8. stalled boot

STALL_DEADLINE_SECONDS = 60
STALL_PROGRESS_SECONDS = 20


def test_bootstrap_stalled_by_a_frozen_database(cluster: RealCluster) -> None:
    """A database of its own frozen (SIGSTOP) during the first migration: the boot hangs.

    The sidecar (deadline and progress timeout shortened from the manifest's 20m/5m) fails
    /livez with ``startup_hung`` only after the deadline and only once the progress lines have
    stopped for the progress timeout.
    """
    frozen = Postgres(cluster.processes)
    node = KeycloakNode(
        "kc-stalled",
        cluster.home,
        "127.0.0.8",
        frozen.jdbc_url("keycloak"),
        cluster.root / "kc-stalled",
        cluster.processes,
    )
    sidecar = Sidecar(
        node,
        cluster.processes,
        overrides={
            "--startup-deadline": f"{STALL_DEADLINE_SECONDS}s",
            "--progress-timeout": f"{STALL_PROGRESS_SECONDS}s",
        },
    )
    try:
        frozen.init()
        frozen.start()
        frozen.create_database("keycloak")
        started = time.monotonic()
        sidecar.start()
        node.start()
        wait_until(
            "the first migration begins",
            lambda: (
                node.has_logged("Initializing database schema")
                or node.has_logged("Updating database")
            ),
            FATAL_TIMEOUT_SECONDS,
        )
        frozen.freeze()
        frozen_at = time.monotonic()
        lines_at_freeze = node.log_text().count("\n")
        wait_until(
            "/livez 503, or database errors logged",
            lambda: (
                sidecar.status("/livez") == 503 or "db_unavailable" in sidecar.reasons("/readyz")
            ),
            240,
        )
        if sidecar.status("/livez") == 503:
            judge_silent_stall(sidecar, started, frozen_at)
        else:
            # Keycloak needed a new connection: it logs "connection attempt failed" every
            # 5 s; the database is down, so no restart may follow, deadline or not
            hold_until = started + STALL_DEADLINE_SECONDS + STALL_PROGRESS_SECONDS + 10
            while time.monotonic() < hold_until:
                assert sidecar.status("/livez") == 200, sidecar.get("/livez")[1]
                time.sleep(0.5)
        print(
            f"[realkc] stalled: frozen {frozen_at - started:.0f} s after start, "
            f"{time.monotonic() - started:.0f} s watched; "
            f"{node.log_text().count(chr(10)) - lines_at_freeze} lines after the freeze"
        )
    finally:
        for proc in (node.proc, sidecar.proc):
            if proc is not None:
                kill_group(proc, signal.SIGKILL)
        if frozen.proc is not None:
            frozen.kill()  # a fast shutdown of a just-thawed server can hang past 60 s
        frozen.remove()
    log = save_fixture(cluster, "stalled-db-frozen", node)
    _, verdict = analyze_json(log)
    # 26.4/26.5 never print 'started' here; 26.6+ (async bootstrap, the health endpoints on)
    # prints it before the migration that then stalls: 'started' follows Keycloak's own line
    assert verdict["started"] is node.has_logged(") started in"), verdict
    assert verdict["live"], verdict  # a hang is a matter of time, which the log cannot show


def judge_silent_stall(sidecar: Sidecar, started: float, frozen_at: float) -> None:
    """Nothing more logged after the freeze: startup_hung, not before the deadline."""
    failed_at = time.monotonic()
    body = sidecar.get("/livez")[1]
    assert body["reasons"] == ["startup_hung"], body
    # never before the deadline, never while progress lines came
    assert failed_at - started >= STALL_DEADLINE_SECONDS
    assert failed_at - frozen_at >= STALL_PROGRESS_SECONDS


# --------------------------------------------------------------------------- 5. bad start


def test_port_already_taken(cluster: RealCluster) -> None:
    """Another process holds the HTTP port: Keycloak's real bind failure -> port_in_use."""
    holder = socket.socket()
    holder.bind(("127.0.0.5", 0))
    holder.listen()
    mark = time.monotonic()
    try:
        node, sidecar = cluster.extra_node(
            "kc-port-taken", "127.0.0.5", "keycloak", http_port=holder.getsockname()[1]
        )
        node.start()
        try:
            wait_fatal(node, sidecar)
            body = sidecar.get("/livez")[1]
            assert "startup_fatal" in body["reasons"], body
            assert check_detail(body, "startup_fatal") == "port_in_use", body
            assert_pair_untouched(cluster, mark)
        finally:
            kill_group_of(node)
    finally:
        holder.close()
    log = save_fixture(cluster, "port-taken", node)
    # Keycloak prints the generic "Failed to start server" first, then the bind failure
    assert "port_in_use" in {e.get("reason") for e in events_of(log, "startup_fatal")}


def test_invalid_option(cluster: RealCluster) -> None:
    """An unknown option: kc.sh says so on its console only (no log file is ever written).

    The sidecar follows the console here (``--log-file=-``: standard input, as the
    container's log stream would be), which is the only place the real text appears.
    """
    directory = cluster.root / "kc-invalid-option"
    node = KeycloakNode(
        "kc-invalid-option",
        cluster.home,
        "127.0.0.6",
        cluster.postgres.jdbc_url("keycloak"),
        directory,
        cluster.processes,
        extra_args=("--no-such-option=1",),
    )
    keycloak = cluster.processes.spawn(
        node.argv(), env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    node.proc = keycloak
    sidecar = Sidecar(node, cluster.processes, overrides={"--log-file": "-"})
    assert keycloak.stdout is not None
    console = directory / "console.log"
    tee = cluster.processes.spawn(
        ["tee", str(console)], stdin=keycloak.stdout, stdout=subprocess.PIPE
    )
    keycloak.stdout.close()
    sidecar_out = sidecar.log_path.open("ab")
    sidecar.proc = cluster.processes.spawn(
        sidecar.argv(), stdin=tee.stdout, stdout=sidecar_out, stderr=subprocess.STDOUT
    )
    assert tee.stdout is not None
    tee.stdout.close()
    wait_until("the sidecar serves", sidecar.serves, 30)
    wait_until("/livez 503", lambda: sidecar.status("/livez") == 503, FATAL_TIMEOUT_SECONDS)
    body = sidecar.get("/livez")[1]
    assert check_detail(body, "startup_fatal") == "config", body
    assert not node.log_path.exists()  # the file-following sidecar would see nothing
    kill_group(sidecar.proc, signal.SIGKILL)
    log = save_fixture(cluster, "invalid-option", node, text=console.read_text())
    assert [e.get("reason") for e in events_of(log, "startup_fatal")] == ["config"]


# --------------------------------------------------------------------------- 9. HTTPS


def self_signed(directory: Path, address: str) -> tuple[Path, Path]:
    """A real self-signed certificate for ``address`` (openssl), and its key."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={address}",
            "-addext",
            f"subjectAltName=IP:{address}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_health_bodies_over_https(cluster: RealCluster) -> None:
    """Keycloak's real health bodies over HTTPS with a self-signed certificate.

    With ``--probe-ca-file`` the sidecar parses started/live/ready (with the database check);
    without it, the probe fails as ``tls`` and that alone is no reason to fail /livez.
    """
    address = "127.0.0.7"
    directory = cluster.root / "kc-https"
    cert, key = self_signed(directory, address)
    node = KeycloakNode(
        "kc-https",
        cluster.home,
        address,
        cluster.postgres.jdbc_url("keycloak"),
        directory,
        cluster.processes,
        extra_args=(
            f"--https-certificate-file={cert}",
            f"--https-certificate-key-file={key}",
            f"--https-port={free_port(address)}",
        ),
    )
    url = f"https://{address}:{node.management_port}"
    trusting = Sidecar(
        node, cluster.processes, overrides={"--keycloak-url": url, "--probe-ca-file": str(cert)}
    )
    untrusting = Sidecar(
        node, cluster.processes, overrides={"--keycloak-url": url}, name="sidecar-no-ca"
    )
    trusting.start()
    untrusting.start()
    node.start()
    try:
        wait_until("ready over HTTPS", lambda: trusting.status("/readyz") == 200, 300)
        probes = trusting.get("/status")[1]["probes"]
        for target in ("started", "live", "ready"):
            assert probes[target]["ok"], probes[target]
            assert probes[target]["keycloak_status"] == "UP", probes[target]
        names = [check["name"] for check in probes["ready"]["checks"]]
        assert any("database" in name for name in names), names
        wait_until(
            "the untrusting probe fails as tls",
            lambda: untrusting.get("/status")[1]["probes"]["live"]["error"] == "tls",
            60,
        )
        assert untrusting.status("/livez") == 200, untrusting.get("/livez")[1]
    finally:
        node.stop()
        for car in (trusting, untrusting):
            if car.proc is not None:
                kill_group(car.proc, signal.SIGKILL)


# --------------------------------------------------------------------------- 3. database down


def test_database_stopped_while_both_run(cluster: RealCluster) -> None:
    """PostgreSQL stopped: both not ready (db_unavailable), never a kill; ready again after."""
    wait_until(
        "both ready",
        lambda: all(s.status("/readyz") == 200 for s in cluster.sidecars),
        READY_TIMEOUT_SECONDS,
    )
    mark = time.monotonic()
    cluster.postgres.stop()
    try:
        wait_until(
            "both /readyz 503 with db_unavailable",
            lambda: all("db_unavailable" in s.reasons("/readyz") for s in cluster.sidecars),
            120,
        )
        time.sleep(KUBELET_KILL_SECONDS)  # long enough for a kubelet to have killed
        assert_pair_untouched(cluster, mark)
    finally:
        cluster.postgres.start()
    wait_until(
        "both ready again",
        lambda: all(s.status("/readyz") == 200 for s in cluster.sidecars),
        READY_TIMEOUT_SECONDS,
    )
    assert_pair_untouched(cluster, mark)
    for node in cluster.nodes:
        log = save_fixture(cluster, "db-stopped", node)
        events, verdict = analyze_json(log)
        assert "startup_fatal" not in {e["event"] for e in events}
        assert verdict["live"], verdict


# --------------------------------------------------------------------------- 6. partition

LABELS = {"app.kubernetes.io/name": "keycloak", "app.kubernetes.io/component": "server"}


def test_partition_between_the_two_nodes(cluster: RealCluster) -> None:
    """kc0 <-> kc1 dropped by iptables while both run: both views split; with the API double
    saying both pods are ready, membership loss is reported and at most one /livez fails."""
    why = Partition.available()
    if why:
        unavailable(why)
    wait_until(
        "both ready in a view of two",
        lambda: all(s.status("/readyz") == 200 and view_size(s) == 2 for s in cluster.sidecars),
        READY_TIMEOUT_SECONDS,
    )
    double = KubeApiThread("keycloak")
    partition = Partition(cluster.nodes[0].address, cluster.nodes[1].address)
    kube_cars: list[Sidecar] = []
    try:
        kubeconfig = double.start(cluster.root)
        for node in cluster.nodes:
            double.call(double.api.add_pod, node.name, LABELS, ready=True, ip=node.address)
        for node in cluster.nodes:
            car = Sidecar(
                node,
                cluster.processes,
                overrides={
                    "--no-kubernetes": "false",
                    "--kubeconfig": str(kubeconfig),
                    "--membership-grace": "20s",
                },
                env={"POD_NAME": node.name, "POD_NAMESPACE": "keycloak"},
                name="sidecar-kube",
            )
            car.start()
            kube_cars.append(car)
            cluster.watch.sidecars[f"{node.name}-kube"] = car
        wait_until("the Kubernetes-side sidecars ready", lambda: all_ready(kube_cars), 120)
        mark = time.monotonic()
        partition.cut()
        wait_until("both views split", lambda: all(view_size(s) == 1 for s in kube_cars), 240)
        wait_until(
            "one /livez 503 for the lost peer",
            lambda: any("cluster_peers_missing" in s.reasons("/livez") for s in kube_cars),
            180,
        )
        time.sleep(15)  # the other one would have failed by now without the kill budget
        failing = [s for s in kube_cars if s.status("/livez") == 503]
        assert len(failing) == 1, [s.get("/livez")[1] for s in kube_cars]
        other = next(s for s in kube_cars if s is not failing[0])
        assert "kill_deferred" in other.reasons("/readyz"), other.get("/readyz")[1]
        assert never_both_failing(cluster, ["kc0-kube", "kc1-kube"], mark)
    finally:
        partition.heal()
    try:
        wait_until("one view of two again", lambda: all(view_size(s) == 2 for s in kube_cars), 300)
        wait_until(
            "both /livez 200", lambda: all(s.status("/livez") == 200 for s in kube_cars), 120
        )
    finally:
        for car in kube_cars:
            cluster.watch.sidecars.pop(f"{car.node.name}-kube", None)
            if car.proc is not None:
                kill_group(car.proc, signal.SIGKILL)
        double.stop()
    for node in cluster.nodes:
        log = save_fixture(cluster, "partition", node)
        events, verdict = analyze_json(log)
        sizes = [e["size"] for e in events if e["event"] == "cluster_view"]
        assert 1 in sizes, sizes
        assert sizes[-1] == 2, sizes
        assert verdict["live"], verdict


def all_ready(sidecars: list[Sidecar]) -> bool:
    return all(s.status("/readyz") == 200 and view_size(s) == 2 for s in sidecars)


def never_both_failing(cluster: RealCluster, names: list[str], since: float) -> bool:
    """In the watch's time-ordered samples, the named sidecars never failed /livez together."""
    last = dict.fromkeys(names, 200)
    for t, name, status, _ in cluster.watch.samples:
        if name in last and t >= since:
            last[name] = status
            if all(s != 200 for s in last.values()):
                return False
    return True


# --------------------------------------------------------------------------- 7. out of memory

OOM_TIMEOUT_SECONDS = 120.0


def oom_node(cluster: RealCluster, name: str, address: str, **kwargs: Any) -> KeycloakNode:
    """A node with a small heap on a copy of the pair's database (no migration, no cluster
    with the pair)."""
    database = name.replace("-", "_")
    cluster.postgres.copy_database("keycloak", database)
    return KeycloakNode(
        name,
        cluster.home,
        address,
        cluster.postgres.jdbc_url(database),
        cluster.root / name,
        cluster.processes,
        heap_options=OOM_HEAP_OPTIONS,
        **kwargs,
    )


def test_out_of_memory_with_the_jvm_surviving(cluster: RealCluster) -> None:
    """JAVA_OPTS overridden (no -XX:+ExitOnOutOfMemoryError): the heap runs out under large
    admin requests, Keycloak logs the OutOfMemoryError and keeps running: /livez 503
    ``runtime_fatal``/``out_of_memory`` within a second of the line."""
    mark = time.monotonic()
    node = oom_node(cluster, "kc-oom", "127.0.0.9", java_opts=USER_JAVA_OPTS)
    sidecar = Sidecar(node, cluster.processes)
    sidecar.start()
    cluster.watch.sidecars[node.name] = sidecar
    node.start()
    try:
        wait_until(
            "kc-oom started", lambda: sidecar.status("/readyz") == 200, READY_TIMEOUT_SECONDS
        )
        assert sidecar.status("/livez") == 200
        loads = exhaust_heap(node.http_url)
        latency_seconds = wait_fatal(node, sidecar, kind="runtime_fatal")
        body = sidecar.get("/livez")[1]
        print(f"[realkc] OutOfMemoryError line -> /livez 503 in {latency_seconds:.3f} s")
        assert "runtime_fatal" in body["reasons"], body
        assert check_detail(body, "runtime_fatal") == "out_of_memory", body
        assert latency_seconds < 1.5, latency_seconds
        assert alive(node.proc), "the JVM was expected to survive its OutOfMemoryError"
        assert_pair_untouched(cluster, mark)
    finally:
        kill_group_of(node)
        cluster.watch.sidecars.pop(node.name, None)
    for thread in loads:
        thread.join(timeout=60)
    console = node.console_path.read_text(encoding="utf-8", errors="replace")
    print(f"[realkc] console: {[x for x in console.splitlines() if 'OutOfMemory' in x][:3]}")
    # the console is kept with the run's logs only: whether a thread without a handler
    # prints an OutOfMemoryError there varies from run to run
    (cluster.root / "fixtures").mkdir(parents=True, exist_ok=True)
    (cluster.root / "fixtures" / "oom-survive-console.log").write_text(console, encoding="utf-8")
    log = save_fixture(cluster, "oom-survive", node)
    assert "out_of_memory" in {e.get("reason") for e in events_of(log, "runtime_fatal")}


def console_twin(node: KeycloakNode) -> KeycloakNode:
    """The same node under the name of its console's fixture (``<node>-console``)."""
    return dataclasses.replace(node, name=f"{node.name}-console")


def test_out_of_memory_with_kc_sh_defaults(cluster: RealCluster) -> None:
    """kc.sh's default JAVA_OPTS (-XX:+ExitOnOutOfMemoryError): the JVM prints "Terminating
    due to java.lang.OutOfMemoryError" on its console and exits (code 3); the log file just
    ends.  A sidecar reading the console (``--log-file=-``, the container's log stream)
    says ``runtime_fatal``; the exit itself is the kubelet's to restart."""
    mark = time.monotonic()
    node = oom_node(cluster, "kc-oom-exit", "127.0.0.10")
    file_car = Sidecar(node, cluster.processes)
    file_car.start()
    console = node.console_path
    keycloak = cluster.processes.spawn(
        node.argv(), env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    node.proc = keycloak
    assert keycloak.stdout is not None
    tee = cluster.processes.spawn(
        ["tee", str(console)], stdin=keycloak.stdout, stdout=subprocess.PIPE
    )
    keycloak.stdout.close()
    console_car = Sidecar(
        node, cluster.processes, overrides={"--log-file": "-"}, name="sidecar-console"
    )
    console_out = console_car.log_path.open("ab")
    console_car.proc = cluster.processes.spawn(
        console_car.argv(), stdin=tee.stdout, stdout=console_out, stderr=subprocess.STDOUT
    )
    assert tee.stdout is not None
    tee.stdout.close()
    try:
        wait_until("the console sidecar serves", console_car.serves, 30)
        wait_until(
            "kc-oom-exit started", lambda: file_car.status("/readyz") == 200, READY_TIMEOUT_SECONDS
        )
        loads = exhaust_heap(node.http_url)
        code = keycloak.wait(timeout=OOM_TIMEOUT_SECONDS)
        assert code == 3, f"exit code {code}"
        wait_until(
            "the console sidecar says runtime_fatal",
            lambda: "runtime_fatal" in console_car.reasons("/livez"),
            10,
        )
        body = console_car.get("/livez")[1]
        assert check_detail(body, "runtime_fatal") == "out_of_memory", body
        seen_by_file = file_car.get("/livez")[1]
        print(f"[realkc] JVM exited {code}; the file-following sidecar said {seen_by_file}")
        assert "runtime_fatal" not in seen_by_file.get("reasons", []), seen_by_file
        assert_pair_untouched(cluster, mark)
    finally:
        for proc in (keycloak, console_car.proc, file_car.proc):
            if proc is not None:
                kill_group(proc, signal.SIGKILL)
    for thread in loads:
        thread.join(timeout=60)
    text = console.read_text(encoding="utf-8", errors="replace")
    assert "Terminating due to java.lang.OutOfMemoryError: Java heap space" in text
    assert "OutOfMemoryError" not in node.log_text()  # the log file just ends
    save_fixture(cluster, "oom-exit", node)
    log = save_fixture(cluster, "oom-exit", console_twin(node), text=text)
    assert [e.get("reason") for e in events_of(log, "runtime_fatal")] == ["out_of_memory"]


def test_out_of_memory_restarts_through_the_kubelet_emulator(cluster: RealCluster) -> None:
    """The pod's Keycloak runs out of heap twice: first with JAVA_OPTS overridden (the JVM
    survives; the sidecar's /livez says runtime_fatal; the liveness probe restarts it), then
    with kc.sh's defaults (the JVM exits by itself; restartPolicy Always restarts it).  It
    comes back started and ready each time; the shared pair is untouched."""
    mark = cluster.watch.mark()
    database = "oom_pod"
    cluster.postgres.copy_database("keycloak", database)
    scenario = Scenario(
        name="oom-pod", scripts={}, body=restarted_by_the_emulator, replicas=1, scale=SCALE
    )
    root = cluster.root / "kubelet"
    root.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, Any] = {}

    async def run() -> None:
        pod_cluster = RealKeycloakPod(scenario, root, cluster, database)
        try:
            async with pod_cluster:
                await restarted_by_the_emulator(pod_cluster)
        except Exception as error:  # reported with the timeline below
            outcome["error"] = error
        outcome["report"] = pod_cluster.report()

    asyncio.run(run())
    print(f"\n[realkc] {outcome['report']}")
    if "error" in outcome:
        raise AssertionError(f"{outcome['error']}\n{outcome['report']}")
    sidecar_log = root / POD / "sidecar.stderr"
    verdicts = [line for line in tail(sidecar_log, 10_000).splitlines() if "runtime_fatal" in line]
    assert verdicts, "the pod's sidecar never said runtime_fatal"
    assert_pair_untouched(cluster, mark)


# --------------------------------------------------------------------------- 4. peers leave


def test_clean_stop_then_sigkill(cluster: RealCluster) -> None:
    """kc1 stopped (SIGTERM), restarted, then SIGKILLed: kc0's view shrinks, kc0 never fails."""
    kc0, kc1 = cluster.nodes
    car0, car1 = cluster.sidecars
    mark = time.monotonic()
    assert kc1.stop() in (0, 143)
    wait_until("kc1 shutting_down", lambda: "shutting_down" in car1.reasons("/readyz"), 60)
    wait_until("kc0 sees a view of one", lambda: view_size(car0) == 1, 120)
    save_fixture(cluster, "clean-stop", kc1)

    kc1.start()  # a new boot appended to the same log file
    wait_until(
        "kc1 ready again and kc0 in a view of two",
        lambda: car1.status("/readyz") == 200 and view_size(car0) == 2,
        READY_TIMEOUT_SECONDS,
    )
    kc1.signal(signal.SIGKILL)
    assert kc1.proc is not None
    kc1.proc.wait(timeout=30)
    wait_until("kc0 sees a view of one after the SIGKILL", lambda: view_size(car0) == 1, 180)
    assert alive(kc0.proc)
    assert cluster.watch.failures("kc0", mark) == []
    seen: set[str] = set()  # the survivor's readiness reasons in the 10 s after the shrink
    until = time.monotonic() + 10
    while time.monotonic() < until:
        seen.update(car0.reasons("/readyz"))
        time.sleep(0.2)
    cluster.notes["survivor_ready_reasons_after_sigkill"] = seen
    for node in cluster.nodes:
        log = save_fixture(cluster, "stop-and-kill", node)
        events, _ = analyze_json(log)
        sizes = [e["size"] for e in events if e["event"] == "cluster_view"]
        assert 2 in sizes and sizes[-1] == (1 if node is kc0 else 2), sizes


def test_survivor_stays_ready_after_peer_sigkill(cluster: RealCluster) -> None:
    """The survivor of a crashed peer keeps serving: it is the only replica left."""
    if "survivor_ready_reasons_after_sigkill" not in cluster.notes:
        pytest.skip("test_clean_stop_then_sigkill did not get that far")
    assert cluster.notes["survivor_ready_reasons_after_sigkill"] == set()
