# syntax=docker/dockerfile:1.7
# The HTTP gateway: slim Python 3.11, the project's base dependencies only.
# It never installs the `worker` extra (no torch, no WhisperX): the gateway stores uploads,
# checks them (libmagic, ffprobe), enqueues jobs and streams progress.
#
#   docker build -f docker/api.Dockerfile -t whisperx-service-api .
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------- build: a venv in /opt/venv
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/venv
RUN uv venv --python /usr/local/bin/python3 /opt/venv
WORKDIR /src
# Dependencies first (base set, no extras), so source edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install -r pyproject.toml
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --no-deps .

# ---------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-bookworm
# libmagic1: python-magic's upload type check. ffmpeg: ffprobe checks the upload has an audio
# stream and a duration under MAX_DURATION_S before the job is accepted.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmagic1 ffmpeg \
    && rm -rf /var/lib/apt/lists/*
# The same uid/gid as the worker image, so both can write the shared storage volume.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_ROOT=/data \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER app
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# --timeout-graceful-shutdown: open SSE streams get 20 s to end on SIGTERM (compose stop grace is 30 s).
CMD ["uvicorn", "whisperx_service.api.app:app_factory", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "20"]
