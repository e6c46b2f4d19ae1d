"""Module the `celery` command and `whisperx-service outbound` load: `celery -A whisperx_service.outbound.main`."""

from __future__ import annotations

from whisperx_service.broker.celery_app import make_outbound_celery
from whisperx_service.config import get_settings
from whisperx_service.logs import configure_logging

_settings = get_settings()
configure_logging(_settings)
app = make_outbound_celery(_settings)
