# keycloak-sidecar image.
#
#   podman build -t registry.example.com/keycloak-sidecar:0.1.0 .    (the name k8s/ expects; see README)
#   podman build --build-arg BASE_IMAGE=localhost/debian-py:bookworm .   (offline, see .ci/build-image.sh)
#
# Two stages: "build" turns the source tree and every dependency into wheels; the final
# stage installs those wheels, offline, into a virtual environment and keeps nothing else:
# no compiler, no build tools, no pip.  Every dependency (aiohttp, multidict, yarl, ...)
# ships binary wheels for CPython 3.11 on x86_64/aarch64, so no stage needs a compiler.
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module: the official slim image
# does; a Debian rootfs needs the python3 and python3-venv packages.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# checkov:skip=CKV_DOCKER_7: the tag lives in the BASE_IMAGE default above (3.11-slim-bookworm, not latest); checkov cannot resolve build args
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
# The build venv isolates pip from the base image's own Python packages.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check \
        --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="keycloak-sidecar" \
      org.opencontainers.image.description="Health-monitoring sidecar for clustered Keycloak on Kubernetes: log-aware liveness, readiness and startup verdicts, cluster membership checks, Prometheus metrics." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Install from the build stage's wheels only (--no-index: no network, no surprise
# versions), through a bind mount so the wheels never become a layer of this image;
# then drop pip and setuptools, which the running sidecar does not need.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/keycloak-sidecar \
    && /opt/keycloak-sidecar/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-index --find-links /wheels keycloak-sidecar \
    && /opt/keycloak-sidecar/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/keycloak-sidecar/bin/keycloak-sidecar --help > /dev/null

ENV PATH="/opt/keycloak-sidecar/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001
EXPOSE 9095

# Kubernetes ignores HEALTHCHECK (it has its own probes); it serves plain docker/podman
# users and asks the sidecar's OWN health, /healthz (its workers keep beating), never
# /livez, which is Keycloak's verdict and 503 whenever Keycloak is broken.  It assumes the
# default --listen port 9095.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9095/healthz', timeout=2)"]

ENTRYPOINT ["keycloak-sidecar"]
