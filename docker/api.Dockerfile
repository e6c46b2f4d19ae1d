# The HTTP gateway: Python 3.11 on Debian bookworm with the project's base dependencies from
# uv.lock. It never installs the `worker` extra (no torch, no WhisperX): the gateway stores
# uploads, checks them (libmagic, ffprobe), enqueues jobs and streams progress.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/api.Dockerfile -t whisperx-service-api .
#
# Build arguments: BASE_IMAGE (any Debian bookworm image whose `python3` is 3.11; the same for
# both images), UV_VERSION. Behind a TLS-inspecting proxy pass its CA certificate as a build
# secret: `--secret id=ca,src=/path/ca.pem`; pip and uv use it only when it is given.
# Settings are read from the environment at run time (API_HOST, API_PORT, REDIS_URL, ...: .env.example).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- uv, from PyPI
# Used by the install steps below through a bind mount, so it does not end up in the image.
FROM ${BASE_IMAGE} AS uv
ARG UV_VERSION=0.13.9
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
# libmagic1: python-magic's upload type check. ffmpeg: its ffprobe checks, before a job is
# accepted, that the upload has an audio stream and lasts no longer than MAX_DURATION_S.
# ca-certificates: Sentry over https. This step and the next are the worker image's first two,
# word for word, so the two builds share their layers.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ffmpeg libmagic1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The same uid/gid as the worker image, so both can write the shared storage volume.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /data \
    && chown app:app /data

# The venv /opt/venv, exactly as uv.lock says (base dependencies only), on the base image's python3.
# Dependencies first, so a source edit does not reinstall them.
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=bind,from=uv,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 /opt/uv/bin/uv sync --locked --no-install-project
# README.md is the package's long description: copied here, so editing it rebuilds only this step.
# src/ carries the web page's tus-js-client bundle (static/vendor/, git-ignored) when
# scripts/install.sh (`make install`, which `make test-docker` runs first) fetched it with npm on
# the host: the image has no Node.js and its build fetches nothing from npm. Built without it,
# the page uploads large files in one request instead (docs/WEB.md).
COPY README.md ./
COPY src ./src
RUN --mount=type=bind,from=uv,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 /opt/uv/bin/uv sync --locked --no-editable \
    && rm -rf /src/src /src/README.md

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_ROOT=/data \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER app
WORKDIR /home/app
EXPOSE 8000
# GET /healthz on API_PORT (a wildcard API_HOST is probed on loopback).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["whisperx-service", "healthcheck"]
# Binds API_HOST:API_PORT; on its first start with AUTH_ENABLED it writes an admin key to
# STORAGE_ROOT/admin.key. SIGTERM gives open SSE streams 20 s to end (compose's stop grace is 30 s).
CMD ["whisperx-service", "api"]
