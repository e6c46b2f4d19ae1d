"""The worker's webhook hook: record a job's event for the outbound worker; never raises, never waits on it."""

from __future__ import annotations

import time

from structlog.typing import FilteringBoundLogger

from whisperx_service.store.jobs import JobStore
from whisperx_service.store.webhooks import job_event


def announce(store: JobStore, job_id: str, event: str, log: FilteringBoundLogger) -> None:
    """Record `event` (`ended`, `stage.<name>`) of the job as a webhook delivery when the job asked
    for one (`store.webhooks.job_event`: one Redis step, no HTTP). A failure is logged, never
    raised: nothing about a webhook can fail or delay the job."""
    try:
        job_event(store.r, store.keys, job_id, event, int(time.time() * 1000))
    except Exception as e:
        log.error("webhook_hook_failed", job_id=job_id, webhook_event=event, error=repr(e))
