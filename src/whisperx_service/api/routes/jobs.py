"""`POST /v1/jobs` (submit) and `GET /v1/jobs/{id}` (status).

Submitting, in order: stream the upload to `jobs/<id>/source`, write the manifest `job.json`
(atomic), create the Redis job (`queued` + its event), enqueue the Celery task (task id = job id).
If any step fails, everything before it is undone: no files, no job.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from whisperx_service.api.deps import CeleryDep, JobIdDep, JobsDep, SettingsDep, StorageDep
from whisperx_service.api.upload import FILE_FIELD, receive_upload
from whisperx_service.domain.jobs import JobOptions, JobRecord, JobStatus
from whisperx_service.errors import NotFound, ServiceUnavailable
from whisperx_service.logs import get_logger
from whisperx_service.storage.local import atomic_write_json
from whisperx_service.worker.celery_app import enqueue

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = get_logger(__name__)


class JobAccepted(BaseModel):
    """The answer to a submitted job: where to poll, watch and fetch it."""

    id: str = Field(description="Job id (32 lowercase hex characters)")
    status: JobStatus
    status_url: str
    events_url: str
    result_url: str


def _upload_schema() -> dict[str, Any]:
    """OpenAPI request body of POST /v1/jobs (the body is parsed by hand, as a stream)."""
    props: dict[str, Any] = {FILE_FIELD: {"type": "string", "format": "binary", "description": "Audio or video"}}
    for name, prop in JobOptions.model_json_schema()["properties"].items():
        props[name] = {k: v for k, v in prop.items() if k != "title"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": [FILE_FIELD], "properties": props}}
            },
        }
    }


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=_upload_schema(),
    summary="Submit audio for transcription",
    responses={
        413: {"description": "payload_too_large"},
        415: {"description": "unsupported_media_type"},
        422: {"description": "invalid_request / empty_upload"},
        503: {"description": "service_unavailable (Redis or the broker)"},
        507: {"description": "insufficient_storage"},
    },
)
async def submit_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    celery: CeleryDep,
) -> JobAccepted:
    """Stream the upload to storage, record the job and enqueue it; answer 202 at once.

    The body is `multipart/form-data`: a `file` part (at most MAX_UPLOAD_BYTES bytes) and
    optional job option fields (see `JobOptions`).

    Raises:
        PayloadTooLarge, UnsupportedMediaType, EmptyUpload, InvalidRequest, InsufficientStorage:
            see `receive_upload`.
        ServiceUnavailable: Redis or the broker does not answer (nothing is kept).
    """
    job_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(job_id=job_id)
    created = False
    try:
        await jobs.r.ping()  # fail before a long upload, not after it
        upload = await receive_upload(request, storage, job_id, settings.limits)
        manifest = {
            "id": job_id,
            "options": upload.options.model_dump(mode="json"),
            "filename": upload.filename,
            "size_bytes": upload.size_bytes,
            "media_type": upload.media_type,
            "created_at": datetime.now(UTC).isoformat(),
        }
        await anyio.to_thread.run_sync(atomic_write_json, storage.manifest(job_id), manifest)
        record = await jobs.create(job_id, upload.options, filename=upload.filename, size_bytes=upload.size_bytes)
        created = True
        try:
            await anyio.to_thread.run_sync(functools.partial(enqueue, celery, job_id, settings.worker.queue))
        except Exception as e:
            log.error("enqueue_failed", error=repr(e))
            raise ServiceUnavailable("the job queue does not answer; try again shortly") from e
    except BaseException:
        with anyio.CancelScope(shield=True):
            if created:
                try:
                    await jobs.delete(job_id)
                except Exception as e:  # Redis gone too: the reconciler finds a queued job without files
                    log.error("job_delete_failed", error=repr(e))
            await anyio.to_thread.run_sync(storage.remove_job, job_id)
        raise
    log.info("job_submitted", size_bytes=upload.size_bytes, media_type=upload.media_type)
    base = f"{settings.api.public_url.rstrip('/')}/v1/jobs/{job_id}"
    response.headers["Location"] = base
    return JobAccepted(
        id=job_id,
        status=record.status,
        status_url=base,
        events_url=f"{base}/events",
        result_url=f"{base}/result",
    )


@router.get("/{job_id}", response_model=JobRecord, summary="Job status")
async def get_job(job_id: JobIdDep, jobs: JobsDep) -> JobRecord:
    """The job's status, stage, percent (0-100), timestamps, audio duration (s), attempt and error.

    Raises:
        NotFound: no such job (or the id cannot be one).
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    record = await jobs.get(job_id)
    if record is None:
        raise NotFound(f"job {job_id} not found")
    return record
