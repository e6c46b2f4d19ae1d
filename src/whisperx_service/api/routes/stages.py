"""Stages as services on earlier jobs: `POST /v1/jobs/{id}/rediarize`.

The other stages are tasks of `POST /v1/jobs` (`task=diarize`, `task=align` with a `transcript`);
re-diarizing needs no upload: it runs on a succeeded job's audio and keeps its words (see
docs/STAGES.md).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep, SettingsDep, StorageDep
from whisperx_service.api.routes.jobs import JobAccepted, accepted_answer
from whisperx_service.api.submit import create_rediarization
from whisperx_service.api.webhook_options import with_webhook
from whisperx_service.domain.jobs import JobOptions, JobStatus
from whisperx_service.errors import InvalidRequest, JobNotSucceeded

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class SpeakerBounds(BaseModel):
    """The speaker counts of a re-diarization: `num_speakers`, or `min_speakers`/`max_speakers`,
    or none (the diarizer decides). Each 1-64, as for `POST /v1/jobs`."""

    model_config = ConfigDict(extra="forbid")

    num_speakers: int | None = Field(None, ge=1, le=64)
    min_speakers: int | None = Field(None, ge=1, le=64)
    max_speakers: int | None = Field(None, ge=1, le=64)


@router.post(
    "/{job_id}/rediarize",
    status_code=202,
    response_model=JobAccepted,
    summary="Diarize a succeeded job again with other speaker counts, keeping its words",
    responses={
        404: {"description": "job_not_found (no such job, or another key's)"},
        409: {"description": "job_not_succeeded (the job is queued, running, failed or cancelled)"},
        422: {"description": "invalid_request (bad speaker counts)"},
        429: {"description": "quota_exceeded"},
    },
)
async def rediarize(
    job_id: JobIdDep,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    bounds: Annotated[SpeakerBounds | None, Body()] = None,
) -> JobAccepted:
    """A new job, owned by the caller, that diarizes the job's audio again and keeps its words.

    The new job has the earlier job's options with diarization on and the given speaker counts
    (and `rediarize_of` = the earlier job), but not its webhook: the caller's key default applies;
    it runs in the queue like any job (its events show
    `decode`, `vad`, then `diarize` per chunk and `merge`: no `transcribe`, no `align`) and its
    result has the earlier words with new speakers.

    Raises:
        JobNotFound: no such job, or another key owns it.
        JobNotSucceeded: the job has not succeeded (nothing to reuse), or its files are gone.
        InvalidRequest: `num_speakers` with `min_speakers`/`max_speakers`, or min over max.
        QuotaExceeded, InsufficientStorage, ServiceUnavailable: as `POST /v1/jobs`.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    earlier = await visible_job(jobs, job_id, principal)
    if earlier.status != JobStatus.succeeded:
        raise JobNotSucceeded(f"job {job_id} is {earlier.status.value}; only a succeeded job can be re-diarized")
    given = (bounds or SpeakerBounds()).model_dump()
    try:
        # The earlier job's webhook is not inherited (it may be another key's receiver): the new
        # job gets the caller's key default, signed with the caller's secret.
        inherited = earlier.options.model_dump(exclude={"webhook_url", "webhook_events"})
        options = JobOptions.model_validate({**inherited, **given, "diarize": True, "rediarize_of": job_id})
    except ValidationError as e:
        raise InvalidRequest("; ".join(str(err["msg"]) for err in e.errors())) from None
    options = with_webhook(options, principal, settings)
    record = await create_rediarization(request, principal, jobs, storage, earlier, options)
    accepted = accepted_answer(settings, record.id, record.status)
    response.headers["Location"] = accepted.status_url
    return accepted
