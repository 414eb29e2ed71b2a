"""The sidecar's CPU per log line when Keycloak writes its lines one at a time.

Keycloak writes and flushes every log record by itself, so a busy node hands the sidecar one
line per wake-up (an inotify event, a read, a scan), not the block reads of the throughput
benchmark.  This runs the real daemon (``python -m sidecar`` with the manifest's log
arguments, ``--no-kubernetes``, no probe) on a file that already holds a real Keycloak 26.5.6
boot (tests/data/realkc, plain or JSON), then appends ONE line per ``write`` at a fixed rate
for a bounded time: nine of ten are ``org.keycloak.events`` DEBUG lines as Keycloak's
jboss-logging event listener writes them (``type="CLIENT_LOGIN"``/``LOGIN``), one is a harmless
INFO line of the same real log.  The daemon's CPU (utime + stime of ``/proc/PID/stat``) over
the window, minus nothing (an idle window of the same length is shown next to it), divided by
the lines written, is the CPU per line.

``--ref REF`` runs the code of a git ref (``git archive REF sidecar``) next to the working
tree's, alternating the runs, so both see the same machine; the table shows the ratio.

    .venv/bin/python benchmarks/trickle.py --ref main [--rates 250,1000] [--seconds 8] [--rounds 3]
    .venv/bin/python benchmarks/trickle.py --profile OUT.prof --rates 250   # cProfile of the daemon
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from suite.procs import cpu_seconds, free_port, http_get, wait_http  # noqa: E402

DATA = REPO / "tests" / "data" / "realkc"
BOOT = {"plain": DATA / "26.5.6-story-kc0.log", "json": DATA / "26.5.6-story-kc1.log"}
#: lines of the real logs that would change a verdict or a boot: not reused as load
_NOT_LOAD = ("started", "stop", "Stop", "view", "ISPN", "JGroups", "shutdown", "Shutdown")
#: the manifest's log settings (k8s/base/keycloak.yaml), minus the Kubernetes side
MANIFEST_ARGS = [
    "--log-source=file",
    "--startup-deadline=20m",
    "--progress-timeout=5m",
    "--membership-grace=2m",
    "--worker-stall-timeout=45s",
]


def _event_message(rng: random.Random) -> str:
    realm = "c0ffee00-0000-4000-8000-000000000001"
    if rng.random() < 0.5:
        return (
            f'type="CLIENT_LOGIN", realmId="{realm}", realmName="bench", clientId="bench-client", '
            f'userId="{uuid.UUID(int=rng.getrandbits(128))}", sessionId="null", '
            'ipAddress="127.0.0.1", grant_type="client_credentials", '
            'client_auth_method="client-secret"'
        )
    return (
        f'type="LOGIN", realmId="{realm}", realmName="bench", clientId="account-console", '
        f'userId="{uuid.UUID(int=rng.getrandbits(128))}", '
        f'sessionId="{uuid.UUID(int=rng.getrandbits(128))}", ipAddress="127.0.0.1", '
        'auth_method="openid-connect", auth_type="code", response_type="code", '
        'redirect_uri="http://127.0.0.1:8080/realms/bench/account/", '
        'consent="no_consent_required", '
        'code_id="x", username="user1", response_mode="query"'
    )


def _info_lines(fmt: str) -> list[str]:
    lines = BOOT[fmt].read_text().splitlines()
    level = " INFO  [" if fmt == "plain" else '"level":"INFO"'
    picked = [ln for ln in lines if level in ln and not any(w in ln for w in _NOT_LOAD)]
    if not picked:
        raise SystemExit(f"no INFO load line in {BOOT[fmt]}")
    return picked


def make_line(fmt: str, rng: random.Random, info: list[str], n: int) -> bytes:
    """One line as Keycloak writes it now (current time in the timestamp)."""
    now = time.time()
    thread = f"executor-thread-{rng.randrange(1, 9)}"
    if n % 10 == 9:
        # a real INFO line with its timestamp renewed
        line = info[n // 10 % len(info)]
        if fmt == "plain":
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            return f"{stamp},{int(now * 1000) % 1000:03d}{line[23:]}\n".encode()
        record = json.loads(line)
        record["timestamp"] = _iso(now)
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()
    message = _event_message(rng)
    if fmt == "plain":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        ms = int(now * 1000) % 1000
        return f"{stamp},{ms:03d} DEBUG [org.keycloak.events] ({thread}) {message}\n".encode()
    record = {
        "timestamp": _iso(now),
        "sequence": n,
        "loggerClassName": "org.jboss.logging.Logger",
        "loggerName": "org.keycloak.events",
        "level": "DEBUG",
        "message": message,
        "threadName": thread,
        "threadId": 40,
        "mdc": {},
        "ndc": "",
        "hostName": "keycloak-0",
        "processName": "/usr/lib/jvm/java-21-openjdk/bin/java",
        "processId": 1,
    }
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e9) % 10**9:09d}Z"


def export_ref(ref: str, into: Path) -> Path:
    """``git archive REF sidecar`` unpacked under ``into``; returns the folder for PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "sidecar"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start(
    code: Path, log_file: Path, port: int, stderr: Path, profile: str | None
) -> subprocess.Popen[bytes]:
    runner = ["-m", "cProfile", "-o", profile] if profile else []
    argv = [
        sys.executable,
        *runner,
        "-m",
        "sidecar",
        *MANIFEST_ARGS,
        f"--log-file={log_file}",
        f"--listen=127.0.0.1:{port}",
        "--no-kubernetes",
        "--keycloak-url=",
    ]
    env = {**os.environ, "PYTHONPATH": str(code)}
    with stderr.open("ab") as err:
        return subprocess.Popen(
            argv,
            cwd=code,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
            env=env,
        )


def stop(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=5)


def trickle(path: Path, fmt: str, rate: float, seconds: float, seed: int) -> int:
    """Append one line per write, on a fixed schedule, for ``seconds``; the lines written."""
    rng = random.Random(seed)
    info = _info_lines(fmt)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start_at = time.monotonic()
        n = 0
        while True:
            due = start_at + n / rate
            if due - start_at >= seconds:
                return n
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            os.write(fd, make_line(fmt, rng, info, n))
            n += 1
    finally:
        os.close(fd)


def one_run(
    code: Path,
    fmt: str,
    rate: float,
    seconds: float,
    *,
    work: Path,
    seed: int,
    profile: str | None,
) -> dict[str, float]:
    log_file = work / f"kc-{fmt}.log"
    log_file.write_bytes(BOOT[fmt].read_bytes())
    port = free_port()
    child = start(code, log_file, port, work / "daemon.stderr", profile)
    try:
        wait_http(port, "/livez", 20.0, child=child)
        time.sleep(1.0)  # start-up and replay done
        c0 = cpu_seconds(child.pid)
        time.sleep(min(seconds, 3.0))
        idle = (cpu_seconds(child.pid) - c0) / min(seconds, 3.0)
        c1 = cpu_seconds(child.pid)
        t1 = time.monotonic()
        lines = trickle(log_file, fmt, rate, seconds, seed)
        time.sleep(0.2)  # the last line's flush
        busy = time.monotonic() - t1
        cpu = cpu_seconds(child.pid) - c1
        status = http_get(port, "/livez")[0]
        if status != 200:
            raise SystemExit(f"/livez answered {status} after the load: the load changed a verdict")
    finally:
        stop(child)
    return {
        "lines": lines,
        "cpu_s": cpu,
        "us_per_line": cpu / lines * 1e6,
        "core_pct": cpu / busy * 100,
        "idle_core_pct": idle * 100,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="also run this git ref's sidecar (e.g. main), alternating")
    parser.add_argument("--rates", default="250,1000", help="lines/s, comma-separated")
    parser.add_argument("--formats", default="plain,json")
    parser.add_argument("--seconds", type=float, default=8.0, help="load window per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant (median shown)")
    parser.add_argument("--profile", help="cProfile the working tree's daemon into this file")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    formats = args.formats.split(",")
    with tempfile.TemporaryDirectory(prefix="trickle-") as tmp:
        work = Path(tmp)
        variants: list[tuple[str, Path]] = [("tree", REPO)]
        if args.ref:
            variants.insert(0, (args.ref, export_ref(args.ref, work / "ref")))
        rows = []
        for fmt in formats:
            for rate in rates:
                results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
                for r in range(args.rounds):
                    for name, code in variants if r % 2 == 0 else reversed(variants):
                        profile = args.profile if args.profile and name == "tree" else None
                        res = one_run(
                            code, fmt, rate, args.seconds, work=work, seed=r, profile=profile
                        )
                        results[name].append(res)
                        print(f"{fmt} {rate:g}/s {name}: {res}", file=sys.stderr, flush=True)
                rows.append((fmt, rate, results))
    names = [name for name, _ in variants]
    print(f"\nOne line per write, {args.seconds:g} s per run, median of {args.rounds} runs")
    head = " | ".join(f"{n}: us CPU/line (% core)" for n in names)
    ratio = " | tree/ref" if args.ref else ""
    print(f"| format | lines/s | {head}{ratio} |")
    print("|---" * (2 + len(names) + (1 if args.ref else 0)) + "|")
    for fmt, rate, results in rows:
        cells = []
        med = {}
        for n in names:
            med[n] = statistics.median(x["us_per_line"] for x in results[n])
            pct = statistics.median(x["core_pct"] for x in results[n])
            cells.append(f"{med[n]:.0f} ({pct:.1f} %)")
        extra = f" | {med['tree'] / med[names[0]]:.2f}" if args.ref else ""
        print(f"| {fmt} | {rate:g} | {' | '.join(cells)}{extra} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
