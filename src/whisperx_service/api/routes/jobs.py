"""Jobs: `POST /v1/jobs` (submit), `GET /v1/jobs/{id}` (status), `DELETE /v1/jobs/{id}` (cancel,
purge) and `GET /v1/jobs` (list).

Submitting (`api/submit.create_job`), in order: stream the upload to `jobs/<id>/source`, write
the manifest `job.json` (atomic), create the Redis job (`queued` + its event, held on its owner's
pending list: one Lua step), wake the dispatcher (maintenance/dispatcher.py), which sends the
Celery task (task id = job id) when a worker slot is free and it is the owner's turn. If any step
fails, everything before it is undone: no files, no job. An `Idempotency-Key` makes a repeat
answer the first request's job (`api/idempotency.py`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Annotated, Any

import anyio
import anyio.to_thread
import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import IdempotencyDep, JobIdDep, JobsDep, KeysDep, SettingsDep, StorageDep
from whisperx_service.api.field_body import is_field_body, read_fields
from whisperx_service.api.idempotency import Idempotent
from whisperx_service.api.multipart_form import FILE_FIELD, JOB_FORM, OPTION_FIELDS, TRANSCRIPT_FIELD
from whisperx_service.api.routes.uploads import UploadsDep
from whisperx_service.api.submit import announce_end, create_job
from whisperx_service.api.upload import digest_upload
from whisperx_service.api.upload_jobs import UPLOAD_ID_FIELD, job_from_upload, upload_job_request
from whisperx_service.api.url_jobs import URL_FIELD, create_url_job, fingerprint, url_job_request
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobRecord, JobStatus
from whisperx_service.errors import AdminOnly, InvalidCursor, InvalidRequest, JobFinished, JobNotFound, JobRunning
from whisperx_service.logs import get_logger
from whisperx_service.maintenance.restore import restore_job
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.idempotency import Completed
from whisperx_service.store.records import final_record

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = get_logger(__name__)
audit = get_logger("whisperx_service.audit")


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
        if name in OPTION_FIELDS:
            props[name] = {k: v for k, v in prop.items() if k != "title"}
    props[TRANSCRIPT_FIELD] = {
        "type": "string",
        "description": "task=align: the words to place, as plain text or a job's JSON result (timed segments)",
    }
    from_elsewhere = {k: v for k, v in props.items() if k not in (FILE_FIELD, TRANSCRIPT_FIELD)}
    from_elsewhere[UPLOAD_ID_FIELD] = {"type": "string", "description": "A finished upload of /v1/uploads (tus)"}
    from_elsewhere[URL_FIELD] = {
        "type": "string",
        "format": "uri",
        "description": "http(s) URL the service fetches the file from (instead of `upload_id`)",
    }
    fields_schema = {
        "type": "object",
        "properties": from_elsewhere,
        "oneOf": [{"required": [UPLOAD_ID_FIELD]}, {"required": [URL_FIELD]}],
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": [FILE_FIELD], "properties": props}},
                "application/json": {"schema": fields_schema},
                "application/x-www-form-urlencoded": {"schema": fields_schema},
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
        400: {"description": "malformed_multipart"},
        401: {"description": "unauthorized"},
        404: {"description": "upload_not_found (`upload_id`)"},
        410: {"description": "upload_expired (`upload_id`)"},
        423: {"description": "upload_locked (`upload_id`: a PATCH still writes to it)"},
        408: {"description": "upload_timeout"},
        415: {"description": "unsupported_media_type (not multipart) / unsupported_media (not allowed audio/video)"},
        409: {
            "description": "idempotency_conflict / idempotency_in_progress (Idempotency-Key) / "
            "upload_incomplete (`upload_id`)"
        },
        413: {"description": "payload_too_large / audio_too_long / transcript_too_long"},
        422: {"description": "invalid_request / empty_upload / transcript_required / invalid_transcript"},
        429: {"description": "quota_exceeded (the message names the quota) / rate_limited"},
        503: {"description": "service_unavailable (Redis)"},
        507: {"description": "insufficient_storage"},
    },
)
async def submit_job(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    idempotency: IdempotencyDep,
    uploads: UploadsDep,
) -> JobAccepted | Response:
    """Stream the upload to storage, record the job (held for the dispatcher); answer 202 at once.

    The body is `multipart/form-data`: a `file` part (at most MAX_UPLOAD_BYTES bytes) and
    optional job option fields (see `JobOptions`) and, for `task=align`, `transcript` (plain
    text or a job's JSON result, at most MAX_TRANSCRIPT_BYTES). With an `Idempotency-Key` header, a repeat
    within IDEMPOTENCY_TTL_S gets the first answer again (see `api/idempotency.py`). Or it is
    JSON or a urlencoded form (`api/field_body.py`) with the options and either `upload_id` (a
    finished resumable upload, `/v1/uploads`): its file is moved into the job
    (`api/upload_jobs.py`); asking again for the same upload answers the same job; or `url`: the
    outbound worker fetches the file (`api/url_jobs.py`); the job shows a `fetch` stage while it
    is fetched, and ends `failed` with a `url_*` code (or the upload's codes) when the fetch fails.

    Raises:
        PayloadTooLarge, AudioTooLong, MalformedMultipart, UploadTimeout, UnsupportedMediaType,
        UnsupportedMedia, EmptyUpload, InvalidRequest, InsufficientStorage: see `receive_upload`;
            InsufficientStorage also when the manifest does not fit.
        TranscriptRequired, InvalidTranscript, TranscriptTooLong: `task=align` without a
            transcript, one that cannot be read, one over MAX_TRANSCRIPT_BYTES.
        ServiceUnavailable: Redis does not answer (nothing is kept). A broker that does not answer
            only delays the job: it stays held until the dispatcher can send it.
        QuotaExceeded: one of the key's quotas is used up (checked before and after the body).
        IdempotencyConflict: the Idempotency-Key was used with other content.
        IdempotencyInProgress: the first request with the key still uploads.
    """
    if is_field_body(request):
        fields = await read_fields(request)
        if UPLOAD_ID_FIELD in fields and URL_FIELD in fields:
            raise InvalidRequest("give `upload_id` or `url`, not both")
        if UPLOAD_ID_FIELD in fields:
            upload_id, options = upload_job_request(fields)
            made = await job_from_upload(request, principal, settings, jobs, storage, uploads, upload_id, options)
            accepted = accepted_answer(settings, made.record.id, made.record.status)
            response.headers["Location"] = accepted.status_url
            return accepted
        url, options = url_job_request(fields)
        idem = await Idempotent.start(request, principal, idempotency, "jobs", settings.limits.idempotency_ttl_s)
        if idem is not None and idem.replay is not None:
            return _replayed(idem.check_replay(fingerprint(fields)))
        async with idem.held() if idem is not None else contextlib.nullcontext():
            record = await create_url_job(request, principal, settings, jobs, storage, url, options)
            accepted = accepted_answer(settings, record.id, record.status)
            if idem is not None:
                await idem.complete(record.id, fingerprint(fields), 202, accepted.model_dump(mode="json"))
        response.headers["Location"] = accepted.status_url
        return accepted
    idem = await Idempotent.start(request, principal, idempotency, "jobs", settings.limits.idempotency_ttl_s)
    if idem is not None and idem.replay is not None:
        upload_fingerprint, _ = await digest_upload(request, settings.limits, JOB_FORM)
        return _replayed(idem.check_replay(upload_fingerprint))
    async with idem.held() if idem is not None else contextlib.nullcontext():
        created = await create_job(
            request, principal, settings, jobs, storage, JOB_FORM,
            lambda form: form.complete().options, lambda form: form.script,
        )  # fmt: skip
        job_id = created.job_id
        accepted = accepted_answer(settings, job_id, created.record.status)
        if idem is not None:
            await idem.complete(job_id, created.upload.fingerprint, 202, accepted.model_dump(mode="json"))
    response.headers["Location"] = accepted.status_url
    return accepted


def _replayed(first: Completed) -> JSONResponse:
    """The answer to a repeat of an idempotent submission: the first request's, marked replayed."""
    return JSONResponse(
        first.body,
        status_code=first.status,
        headers={"Location": first.body.get("status_url", ""), "Idempotent-Replayed": "true"},
    )


def accepted_answer(settings: Settings, job_id: str, status: JobStatus) -> JobAccepted:
    """The 202 body of a new job: its links under API_PUBLIC_URL."""
    base = f"{settings.api.public_url.rstrip('/')}/v1/jobs/{job_id}"
    return JobAccepted(
        id=job_id,
        status=status,
        status_url=base,
        events_url=f"{base}/events",
        result_url=f"{base}/result",
    )


@router.get("/{job_id}", response_model=JobRecord, summary="Job status")
async def get_job(
    job_id: JobIdDep,
    principal: PrincipalDep,
    jobs: JobsDep,
    storage: StorageDep,
) -> JobRecord:
    """The job's status, stage, percent (0-100), timestamps, audio duration (s), attempt and error.

    A job Redis lost (it restarted empty) but storage still holds is restored from its files on
    the spot, and held for the dispatcher if unfinished (see `maintenance/restore.py`): a known job is never
    unknown.

    Raises:
        JobNotFound: no such job (or the id cannot be one, or another key owns it).
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    record = await jobs.get(job_id)
    # No job can be asked for before its submission answered (ids are random): a manifest without
    # a Redis job here is one Redis lost, never an upload still creating its job.
    if record is None and await restore_job(jobs, storage, job_id):
        record = await jobs.get(job_id)
    if record is None or not principal.sees(record):
        raise JobNotFound(f"job {job_id} not found")
    return record


@router.delete(
    "/{job_id}",
    response_model=JobRecord,
    summary="Cancel a job, or purge an ended job's data",
    responses={
        200: {"description": "the queued job is cancelled; it will never start"},
        202: {"description": "the running job was asked to stop: it ends `cancelled` at its next progress point"},
        204: {"description": "purged (`?purge=true`): the job's files and state are gone; GET answers 404"},
        404: {"description": "job_not_found"},
        409: {"description": "job_finished (cancelling an ended job) / job_running (purging a running job)"},
    },
)
async def cancel_job(
    job_id: JobIdDep,
    response: Response,
    principal: PrincipalDep,
    jobs: JobsDep,
    storage: StorageDep,
    purge: Annotated[bool, Query(description="Delete an ended (or queued) job's files and state now")] = False,
) -> JobRecord | Response:
    """Cancel the job: a queued one at once (200), a running one by request (202, `cancel_requested`).

    The running job's worker sees the request within WORKER_CANCEL_POLL_S and stops at its next
    chunk or stage boundary; its SSE stream then ends with a `cancelled` event. With
    `?purge=true` an ended job's directory and Redis keys are deleted at once (204); a queued job
    is cancelled first.

    Raises:
        JobNotFound: no such job (or another key owns it).
        JobFinished: (cancel) the job already ended.
        JobRunning: (purge) a worker runs the job; cancel it and purge once it ended.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    await visible_job(jobs, job_id, principal)
    if purge:
        await _purge(job_id, jobs, storage)
        return Response(status_code=204)
    outcome = await jobs.cancel(job_id)
    if outcome.outcome == "missing":
        raise JobNotFound(f"job {job_id} not found")
    if outcome.outcome == "terminal":
        raise JobFinished(f"job {job_id} already ended: {outcome.status}")
    record = await jobs.get(job_id)
    if record is None:  # purged meanwhile
        raise JobNotFound(f"job {job_id} not found")
    if outcome.outcome == "cancelled":
        await anyio.to_thread.run_sync(functools.partial(storage.write_final, job_id, **final_record(record)))
        await announce_end(jobs, job_id)
        audit.info("job_cancelled", was="queued")
        return record
    audit.info("job_cancelled", was="running")
    response.status_code = 202
    return record


async def _purge(job_id: str, jobs: AsyncJobStore, storage: Storage) -> None:
    """Delete a job's files, then its Redis keys (cancelling it first when queued).

    Files go first: a job Redis still knows is never rebuilt from files that are half gone.

    Raises:
        JobNotFound, JobRunning: see `cancel_job`.
    """
    record = await jobs.get(job_id)
    if record is None:
        raise JobNotFound(f"job {job_id} not found")
    if record.status == JobStatus.queued:
        outcome = await jobs.cancel(job_id)
        if outcome.outcome == "missing":
            raise JobNotFound(f"job {job_id} not found")
        record = await jobs.get(job_id) or record
    if record.status == JobStatus.running:
        raise JobRunning(f"job {job_id} is running; cancel it (DELETE without purge) and purge it once it ended")
    await anyio.to_thread.run_sync(storage.remove_job, job_id)
    await jobs.purge(job_id)
    audit.info("job_purged", status=record.status.value)


class JobList(BaseModel):
    """One page of the job list, newest first."""

    jobs: list[JobRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page")


@router.get(
    "",
    response_model=JobList,
    summary="List jobs, newest first",
    responses={
        403: {"description": "admin_only (`owner` filter without an admin key)"},
        422: {"description": "invalid_request (status, limit) / invalid_cursor"},
    },
)
async def list_jobs(
    principal: PrincipalDep,
    jobs: JobsDep,
    keys: KeysDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Jobs per page")] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    owner: Annotated[str | None, Query(description="Admin keys: only the jobs of this key (id or name)")] = None,
) -> JobList:
    """Jobs newest first, paged by an opaque cursor that stays valid while jobs come and go.

    A key sees its own jobs; an admin key sees every job, or one key's with `owner`. A page with a
    status filter may be short (see `AsyncJobStore.list_jobs`); continue until `next_cursor` is null.

    Raises:
        InvalidCursor: the cursor is not one this service returned.
        AdminOnly: `owner` without an admin key.
    """
    owner_id: str | None = None
    if owner is not None:
        if not principal.admin:
            raise AdminOnly("the owner filter needs an admin API key")
        found = await keys.find(owner)
        owner_id = found.id if found is not None else owner
    elif not principal.admin and principal.key is not None:
        owner_id = principal.key.id
    try:
        page, next_cursor = await jobs.list_jobs(status, limit, cursor, owner_id=owner_id)
    except ValueError:
        raise InvalidCursor(f"cursor {(cursor or '')[:64]!r} is not one this service returned") from None
    return JobList(jobs=page, next_cursor=next_cursor)
