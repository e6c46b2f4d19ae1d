"""Creating a job from an upload: the one path of POST /v1/jobs and the OpenAI-compatible routes.

In order: quotas, stream the upload to `jobs/<id>/source`, then under the key's quota lock the
last quota check, the manifest `job.json` (atomic) and the Redis job (`queued` + its event, held on
its owner's pending list: one Lua step); then the dispatcher is woken. If any step fails,
everything before it is undone: no files, no job.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import structlog
from starlette.requests import Request

from whisperx_service.access.quotas import check_quotas, quota_lock
from whisperx_service.api.auth import Principal
from whisperx_service.api.multipart_form import FormSpec
from whisperx_service.api.upload import NO_SPACE_ERRNOS, Upload, receive_upload
from whisperx_service.api.webhook_options import with_webhook
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobRecord, new_job_id
from whisperx_service.domain.script import Script
from whisperx_service.errors import InsufficientStorage, JobNotSucceeded
from whisperx_service.logs import get_logger
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.records import final_record
from whisperx_service.store.webhooks import job_event_async

log = get_logger(__name__)
audit = get_logger("whisperx_service.audit")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Created(Generic[T]):
    """A job just created: its Redis record and the upload it was made from."""

    record: JobRecord
    upload: Upload[T]

    @property
    def job_id(self) -> str:
        """The new job's id."""
        return self.record.id


async def create_job(
    request: Request,
    principal: Principal,
    settings: Settings,
    jobs: AsyncJobStore,
    storage: Storage,
    spec: FormSpec[T],
    options_of: Callable[[T], JobOptions],
    script_of: Callable[[T], Script | None] | None = None,
) -> Created[T]:
    """Stream the upload to storage and record the job, held for the dispatcher.

    Args:
        spec: the route's form (`JOB_FORM`, or an OpenAI form).
        options_of: the job's options from the parsed form.
        script_of: an `align` job's transcript from the parsed form (written as `transcript.json`).
    Raises:
        PayloadTooLarge, AudioTooLong, MalformedMultipart, UploadTimeout, UnsupportedMediaType,
        UnsupportedMedia, EmptyUpload, InvalidRequest, InsufficientStorage: see `receive_upload`;
            InsufficientStorage also when the manifest does not fit. And what `spec.parse` raises.
        ServiceUnavailable (redis errors): Redis does not answer (nothing is kept).
        QuotaExceeded: one of the key's quotas is used up (checked before and after the body).
    """
    job_id = new_job_id()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    created = False
    try:
        await check_quotas(jobs, principal.key)  # also fails before a long upload if Redis is down
        upload = await receive_upload(
            request, storage, job_id, settings.limits, spec, min_free_bytes=settings.storage.min_free_bytes
        )
        options = with_webhook(options_of(upload.form), principal, settings)
        script = script_of(upload.form) if script_of is not None else None
        # Quota check and creation in one step per key (on every gateway): two submissions of one
        # key never both take its last free place.
        async with quota_lock(jobs, principal.key):
            await check_quotas(
                jobs, principal.key, add_bytes=upload.size_bytes, add_audio_s=upload.media.duration_s or 0.0
            )
            if script is not None:
                await _write(storage.script(job_id), script.model_dump(mode="json"))
            created = True  # from here on the job may exist in Redis, whatever `create` answers
            record = await _record(
                jobs, storage, job_id, principal, options, upload.filename, upload.size_bytes, upload.media_type,
                upload.media.duration_s,
            )  # fmt: skip
    except BaseException:
        await _undo(jobs, storage, job_id, created)
        raise
    request.app.state.dispatch_wake.set()
    audit.info("job_created", size_bytes=upload.size_bytes, media_type=upload.media_type)
    return Created(record, upload)


async def announce_end(jobs: AsyncJobStore, job_id: str) -> None:
    """Record the `ended` webhook event of a job the gateway ended (cancelled while queued) when it
    wants one (`store.webhooks.job_event_async`); a failure is logged, never raised."""
    try:
        await job_event_async(jobs.r, jobs.keys, job_id, "ended", int(time.time() * 1000))
    except Exception as e:
        log.error("webhook_hook_failed", job_id=job_id, error=repr(e))


async def create_rediarization(
    request: Request,
    principal: Principal,
    jobs: AsyncJobStore,
    storage: Storage,
    earlier: JobRecord,
    options: JobOptions,
) -> JobRecord:
    """A new job, owned by `principal`, that diarizes `earlier`'s audio again and keeps its words.

    It gets the earlier job's source, chunk plan and chunk results (`Storage.seed_rediarization`),
    a manifest and a Redis job like any upload, under the same quotas (its audio counts again).

    Args:
        earlier: a succeeded job the principal sees.
        options: the new job's options (`rediarize_of` = the earlier job's id).
    Raises:
        JobNotSucceeded: the earlier job's audio or chunk results are gone.
        QuotaExceeded, InsufficientStorage, ServiceUnavailable (redis errors): as `create_job`.
    """
    job_id = new_job_id()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    created = False
    try:
        await check_quotas(jobs, principal.key)
        size, duration = earlier.size_bytes or 0, earlier.duration_s or 0.0
        async with quota_lock(jobs, principal.key):
            await check_quotas(jobs, principal.key, add_bytes=size, add_audio_s=duration)
            try:
                seeded = await anyio.to_thread.run_sync(storage.seed_rediarization, earlier.id, job_id)
            except OSError as e:
                if e.errno in NO_SPACE_ERRNOS:
                    raise InsufficientStorage("not enough storage space for the job") from None
                raise
            if not seeded:
                raise JobNotSucceeded(f"job {earlier.id} has no audio or transcript left to reuse")
            created = True
            record = await _record(
                jobs, storage, job_id, principal, options, earlier.filename, size, "", earlier.duration_s
            )
    except BaseException:
        await _undo(jobs, storage, job_id, created)
        raise
    request.app.state.dispatch_wake.set()
    audit.info("job_created", rediarize_of=earlier.id, size_bytes=size)
    return record


async def _write(path: Path, doc: dict[str, Any]) -> None:
    """`atomic_write_json` in a thread; a full disk is `InsufficientStorage`."""
    try:
        await anyio.to_thread.run_sync(atomic_write_json, path, doc)
    except OSError as e:
        if e.errno in NO_SPACE_ERRNOS:
            raise InsufficientStorage("not enough storage space for the job") from None
        raise


async def _record(
    jobs: AsyncJobStore,
    storage: Storage,
    job_id: str,
    principal: Principal,
    options: JobOptions,
    filename: str | None,
    size_bytes: int,
    media_type: str,
    duration_s: float | None,
) -> JobRecord:
    """Write the manifest `job.json` (atomic), then create the Redis job, held for the dispatcher."""
    owner = principal.owner
    manifest = {
        "id": job_id,
        "owner": owner.model_dump() if owner else None,
        "options": options.model_dump(mode="json"),
        "filename": filename,
        "size_bytes": size_bytes,
        "media_type": media_type,
        "created_at": datetime.now(UTC).isoformat(),
    }
    await _write(storage.manifest(job_id), manifest)
    return await jobs.create(
        job_id, options, filename=filename, size_bytes=size_bytes, owner=owner, duration_s=duration_s
    )


async def _undo(jobs: AsyncJobStore, storage: Storage, job_id: str, created: bool) -> None:
    """Remove what a failed creation left: the Redis job (when it may exist) and the job's files."""
    with anyio.CancelScope(shield=True):
        if created:
            try:
                await jobs.delete(job_id)
            except Exception as e:  # Redis gone too: the held job fails in the worker (no source)
                log.error("job_delete_failed", error=repr(e))
        await anyio.to_thread.run_sync(storage.remove_job, job_id)


async def cancel_quietly(jobs: AsyncJobStore, storage: Storage, job_id: str, reason: str) -> str:
    """Cancel a job as DELETE /v1/jobs/{id} does (a queued one at once, its final record written;
    a running one by request), for the gateway's own reasons (`reason` goes to the audit line).

    Returns:
        The store's outcome: `cancelled`, `cancelling`, `terminal` or `missing`.
    Raises:
        redis.RedisError: Redis does not answer.
    """
    outcome = await jobs.cancel(job_id)
    if outcome.outcome == "cancelled":
        record = await jobs.get(job_id)
        if record is not None:
            await anyio.to_thread.run_sync(functools.partial(storage.write_final, job_id, **final_record(record)))
        await announce_end(jobs, job_id)
    if outcome.outcome in ("cancelled", "cancelling"):
        was = "queued" if outcome.outcome == "cancelled" else "running"
        audit.info("job_cancelled", job_id=job_id, was=was, by=reason)
    return outcome.outcome
