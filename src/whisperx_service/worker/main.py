"""Module the `celery` command and `whisperx-service worker` load: `celery -A whisperx_service.worker.main`."""

from __future__ import annotations

from whisperx_service.broker.celery_app import make_celery
from whisperx_service.config import get_settings
from whisperx_service.pipeline.models.loaders import ensure_runtime_env

ensure_runtime_env()  # HF_HUB_OFFLINE / PYANNOTE_METRICS_ENABLED defaults before the ML stack loads
app = make_celery(get_settings())
