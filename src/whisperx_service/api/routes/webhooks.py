"""`GET /v1/jobs/{id}/webhooks`: a job's webhook deliveries and every attempt at each."""

from __future__ import annotations

import structlog
from fastapi import APIRouter

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep
from whisperx_service.domain.webhooks import WebhookLog
from whisperx_service.store.webhooks import job_deliveries

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get(
    "/{job_id}/webhooks",
    response_model=WebhookLog,
    summary="Webhook deliveries of a job",
    responses={404: {"description": "job_not_found"}},
)
async def get_webhooks(job_id: JobIdDep, principal: PrincipalDep, jobs: JobsDep) -> WebhookLog:
    """The job's webhook deliveries in the order their events happened, each with its `webhook-id`,
    state (pending, delivered, gone, exhausted) and attempts (time, status code, latency, error).

    Raises:
        JobNotFound: no such job (or another key owns it).
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    await visible_job(jobs, job_id, principal)
    return WebhookLog(deliveries=await job_deliveries(jobs.r, jobs.keys, job_id))
