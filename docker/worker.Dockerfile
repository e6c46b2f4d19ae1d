# syntax=docker/dockerfile:1.7
# The GPU worker: CUDA 12.8 + cuDNN 9 runtime, a uv-managed Python 3.11, the project with the
# `worker` extra (WhisperX and the torch build it pins; PyPI's Linux torch wheels are CUDA 12.8
# builds), ffmpeg for decoding, libmagic. One container per GPU, concurrency 1 (docs/ARCHITECTURE.md).
#
#   docker build -f docker/worker.Dockerfile -t whisperx-service-worker .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${CUDA_IMAGE}
# ffmpeg: decoding (and its libraries for torchcodec, which pyannote.audio 4 uses).
# libmagic1: python-magic is a base dependency. ca-certificates: model hubs over https.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ffmpeg libmagic1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /usr/local/bin/uv
# Python 3.11 from uv's managed builds (Ubuntu 24.04 ships 3.12), installed where every user can read it.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv python install 3.11 \
    && uv venv --python 3.11 /opt/venv

WORKDIR /src
# Dependencies first (base + worker extra), so source edits do not reinstall the ~7 GB torch stack.
# Only Resemblyzer's pretrained.pt is used, so it comes without its dependencies (webrtcvad, librosa).
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install -r pyproject.toml --extra worker \
    && uv pip install --no-deps resemblyzer==0.1.4
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --no-deps .

# The same uid/gid as the api image, so both can write the shared storage volume. /data and
# /models exist and belong to the app user, so fresh named volumes mounted there do too.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /data /models/bundle /models/hf /models/torch \
    && chown -R app:app /data /models

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_ROOT=/data \
    MODELS_DIR=/models/bundle \
    HF_HOME=/models/hf \
    TORCH_HOME=/models/torch \
    ASR_DEVICE=cuda
USER app
WORKDIR /home/app

# Celery answers control messages from its main process while a pool child runs a job, so a ping
# also works mid-transcription. The node name is Celery's default, celery@<hostname>; the check
# pings only this container's node (a ping to all would pass on any healthy peer).
HEALTHCHECK --interval=30s --timeout=25s --start-period=15m --retries=3 \
    CMD celery -A whisperx_service.worker.main inspect ping --destination "celery@${HOSTNAME}" --timeout 10 \
        > /dev/null || exit 1

# At start (not at build), into the /models volume: build the offline bundle (idempotent: complete
# parts are skipped), then pre-fetch the standard models (Whisper ASR_MODEL, aligners, the pyannote
# pipeline with HF_TOKEN) so the first job does not wait for downloads; a failed pre-fetch is not
# fatal, the models then load on first use. `exec` replaces the shell, so the worker is PID 1 and
# gets SIGTERM itself (Celery's soft shutdown).
CMD ["sh", "-c", "whisperx-service models prepare --no-test-models && { whisperx-service models download || echo 'models download failed: models load on first use' >&2; } && exec whisperx-service worker"]
