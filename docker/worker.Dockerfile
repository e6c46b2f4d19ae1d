# The worker: Python 3.11 on Debian bookworm (the same base as the gateway) with the project and
# its `worker` extra from uv.lock (WhisperX and the torch build it pins), ffmpeg for decoding,
# libmagic. One container per GPU, concurrency 1 (docs/ARCHITECTURE.md).
#
#   DOCKER_BUILDKIT=1 docker build -f docker/worker.Dockerfile -t whisperx-service-worker .
#
# No CUDA base image: PyPI's Linux torch wheels are CUDA 12.8 builds that carry the CUDA runtime,
# cuDNN, cuBLAS and NCCL as nvidia-* wheels; the NVIDIA Container Toolkit on the host provides the
# driver (compose reserves the GPU). Without a GPU the same image runs on CPU (ASR_DEVICE=cpu).
# Build arguments and the optional `ca` secret: as in docker/api.Dockerfile.
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
# ffmpeg: decoding (and its libraries for torchcodec, which pyannote.audio 4 uses).
# libmagic1: python-magic is a base dependency. ca-certificates: model hubs over https.
# This step and the next are the api image's first two, word for word (shared layers).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ffmpeg libmagic1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The same uid/gid as the api image, so both can write the shared storage volume. /data and
# /models exist and belong to the app user, so fresh named volumes mounted there do too.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /data \
    && chown app:app /data
RUN mkdir -p /models/bundle /models/hf /models/torch \
    && chown -R app:app /models

# The venv /opt/venv, exactly as uv.lock says (base + worker extra), on the base image's python3.
# Dependencies first (~7 GB, the torch stack), so a source edit does not reinstall them; uv's
# download cache is a BuildKit cache mount, so a rebuild after a lock change fetches only what changed.
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=bind,from=uv,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 /opt/uv/bin/uv sync --locked --extra worker --no-install-project
# README.md is the package's long description: copied here, so editing it rebuilds only this step.
COPY README.md ./
COPY src ./src
RUN --mount=type=bind,from=uv,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 /opt/uv/bin/uv sync --locked --extra worker --no-editable \
    && rm -rf /src/src /src/README.md

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_ROOT=/data \
    MODELS_DIR=/models/bundle \
    HF_HOME=/models/hf \
    TORCH_HOME=/models/torch
USER app
WORKDIR /home/app

# Celery answers control messages from its main process while a pool child runs a job, so a ping
# also works mid-transcription. The node name is Celery's default, celery@<hostname>; the check
# pings only this container's node (a ping to all would pass on any healthy peer).
HEALTHCHECK --interval=30s --timeout=25s --start-period=15m --retries=3 \
    CMD celery -A whisperx_service.worker.main inspect ping --destination "celery@${HOSTNAME}" --timeout 10 \
        > /dev/null || exit 1

# At start (not at build), into MODELS_DIR: build the offline bundle (idempotent: complete parts
# are skipped), then pre-fetch the standard models (Whisper ASR_MODEL, aligners, the pyannote
# pipeline with HF_TOKEN), since the worker loads every model a job needs at its start, from the
# caches only (HF_HUB_OFFLINE=1 unless .env says 0). A failed pre-fetch does not stop this command:
# the worker starts anyway, and if a model it needs is still missing it logs `worker_start_failed`
# (the model and what to do; /readyz gives the same reason) and exits 1; compose's restart policy
# then starts the container again, which retries the download. `exec` replaces the shell, so the
# worker is PID 1 and gets SIGTERM itself (Celery's soft shutdown).
CMD ["sh", "-c", "whisperx-service models prepare --no-test-models && { whisperx-service models download || echo 'models download failed: the worker loads its models from the cache at start and exits 1 if one is missing' >&2; } && exec whisperx-service worker"]
