#!/usr/bin/env bash
# Build the Dockerfile without a registry or a docker daemon, then run the sidecar inside
# the image and check that /livez answers.  A separate command (about 1-2 min with a
# cached base), not part of .ci/run:
#
#   bash .ci/install-tools.sh --image && bash .ci/build-image.sh
#
# 1. A Debian bookworm root filesystem made by debootstrap (python3, python3-venv) is
#    imported as localhost/debian-py:bookworm (once; reused while it exists) and passed
#    as the BASE_IMAGE build argument, standing in for the official python image.
#    The host's CA bundle and pip settings are copied in, so pip inside the build reaches
#    PyPI the way the host does.
# 2. podman build --isolation=chroot (the default OCI runtime needs cgroup features this
#    kind of machine lacks).
# 3. buildah from + buildah run --isolation=chroot (podman run cannot set rlimits here):
#    the daemon, as the image's user, follows a log file in /tmp with the Kubernetes side
#    and HTTP probing off, listens on 127.0.0.1:9095, and the image's own Python fetches
#    /livez.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_image="${BASE_IMAGE_TAG:-localhost/debian-py:bookworm}"
image="${IMAGE_TAG:-localhost/keycloak-sidecar:dev}"
log() { printf '[build-image] %s\n' "$*" >&2; }

for cmd in podman buildah debootstrap; do
    command -v "$cmd" >/dev/null || { log "$cmd missing: bash .ci/install-tools.sh --image"; exit 2; }
done
context="${BUILD_CONTEXT:-$root}"
[[ -f "$context/README.md" ]] || { log "README.md missing (pyproject.toml's readme)"; exit 2; }

work="$(mktemp -d)"
container=""
cleanup() {
    [[ -n "$container" ]] && buildah rm "$container" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! podman image exists "$base_image"; then
    log "debootstrap bookworm -> $base_image"
    start=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/rootfs" http://deb.debian.org/debian >/dev/null
    cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$work/rootfs/etc/pip.conf"
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | podman import - "$base_image" >/dev/null
    rm -rf "$work/rootfs"
    log "base image ready in $((SECONDS - start)) s"
fi

log "podman build ($image, BASE_IMAGE=$base_image)"
start=$SECONDS
podman build --isolation=chroot --format=docker --build-arg "BASE_IMAGE=$base_image" \
    --build-arg "REVISION=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$image" "$context"
log "built in $((SECONDS - start)) s"

container="$(buildah from "$image")"
log "smoke run in $container"
# The image's entrypoint is keycloak-sidecar; run the daemon in the background and poll
# /livez with the image's Python, all inside one chroot run.
buildah run --isolation=chroot "$container" -- /bin/sh -c '
    echo "2026-01-01 00:00:00,000 INFO  [io.quarkus] (main) Keycloak 26.4.10 on JVM started in 9.1s." > /tmp/keycloak.log
    keycloak-sidecar --no-kubernetes --keycloak-url= --log-file=/tmp/keycloak.log \
        --listen=127.0.0.1:9095 >/tmp/sidecar.log 2>&1 &
    pid=$!
    python3 - <<PY
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:9095/livez", timeout=2) as answer:
            print("livez", answer.status, answer.read().decode()[:200])
            sys.exit(0)
    except OSError as error:
        if time.monotonic() > deadline:
            print("livez never answered:", error)
            sys.exit(1)
        time.sleep(0.5)
PY
    status=$?
    kill $pid 2>/dev/null
    [ $status -eq 0 ] || tail -n 20 /tmp/sidecar.log
    exit $status
'
echo "user: $(podman image inspect --format '{{.Config.User}}' "$image")"
echo "entrypoint: $(podman image inspect --format '{{json .Config.Entrypoint}}' "$image")"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image"
