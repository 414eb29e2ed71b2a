#!/usr/bin/env bash
# Fetch one Keycloak server distribution from Maven Central with Maven only, verify it against
# the SHA-1 that Maven Central publishes, and unpack it into the git-ignored cache
#   .cache/keycloak/<version>/keycloak-<version>/
# Prints that directory on stdout.  Idempotent: a complete unpacked cache is reused.
#
#   bash .ci/fetch-keycloak.sh            # the pinned version (tests/realkc/versions.txt)
#   bash .ci/fetch-keycloak.sh 26.7.3     # another one (or KEYCLOAK_VERSION=26.7.3)
#   bash .ci/fetch-keycloak.sh newest     # the highest version listed there (oldest: lowest)
#
# Exit codes: 3 no mvn, 4 no published checksum, 5 checksum mismatch, 6 the version is not
# served by Maven Central (or is no version), 7 Maven could not fetch it (repository unreachable, ...).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
listed="$(grep -v '^#' "$repo/tests/realkc/versions.txt" | grep .)"
pinned="$(head -n1 <<<"$listed")"
version="${1:-${KEYCLOAK_VERSION:-$pinned}}"
case "$version" in
    newest) version="$(sort -V <<<"$listed" | tail -n1)" ;;  # the highest version listed
    oldest) version="$(sort -V <<<"$listed" | head -n1)" ;;
esac
cache="$repo/.cache/keycloak/$version"
home="$cache/keycloak-$version"
log() { printf '[fetch-keycloak] %s\n' "$*" >&2; }

if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    log "not a Keycloak version: '$version' (want e.g. 26.7.3, or newest / oldest)"
    exit 6
fi

if [[ -f "$home/.complete" ]]; then
    echo "$home"
    exit 0
fi
command -v mvn >/dev/null || { log "mvn not found (apt-get install maven)"; exit 3; }
mkdir -p "$cache"
artifact="org.keycloak:keycloak-quarkus-dist:$version:zip"
log "mvn dependency:copy $artifact (strict checksums)"
# --strict-checksums: Maven fails the download when the published .sha1/.md5 does not match.
mvn_log="$cache/mvn.log"
if ! mvn -q -B -Dstyle.color=never --strict-checksums dependency:copy -Dartifact="$artifact" \
    -DoutputDirectory="$cache" -Dmdep.overWriteReleases=true >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    # Maven's words for an artifact the repository does not have (reachable, but no such
    # version) differ from those for an unreachable repository: tell the two apart
    if grep -q -E 'was not found in|Could not find artifact' "$mvn_log"; then
        log "Keycloak $version is not served by Maven Central ($artifact not found);" \
            "served versions: https://repo.maven.apache.org/maven2/org/keycloak/keycloak-quarkus-dist/"
        rm -rf "$cache"
        exit 6
    fi
    log "mvn could not fetch $artifact (Maven Central unreachable?)"
    exit 7
fi
zip="$cache/keycloak-quarkus-dist-$version.zip"
# Verify once more ourselves against the .sha1 that Maven fetched from Central beside the zip.
local_repo="$(mvn -q -B help:evaluate -Dexpression=settings.localRepository -DforceStdout 2>/dev/null || true)"
[[ -d "$local_repo" ]] || local_repo="$HOME/.m2/repository"
published="$local_repo/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip.sha1"
[[ -s "$published" ]] || { log "no published checksum at $published"; exit 4; }
want="$(awk '{print $1}' "$published")"
got="$(sha1sum "$zip" | awk '{print $1}')"
if [[ "$want" != "$got" ]]; then
    log "checksum mismatch for $zip: published $want, got $got"
    rm -f "$zip"
    exit 5
fi
log "sha1 $got matches the published checksum"
rm -rf "$home"
(cd "$cache" && python3 -m zipfile -e "$zip" . )
chmod +x "$home"/bin/*.sh
rm -f "$zip"
touch "$home/.complete"
echo "$home"
