"""A job made of a finished resumable upload: `POST /v1/jobs` with `upload_id`, or the last
PATCH of an upload whose metadata asks for a job.

The same checks as a streamed upload (`api/upload.py`): libmagic on the first bytes, ffprobe's
allow-list and MAX_DURATION_S, the key's quotas (before and, under its quota lock, at creation).
The file is then renamed into the job's place (`jobs/<id>/source`; same filesystem, no copy), the
manifest written and the Redis job created as `api/submit.create_job` does; if a step fails the
file goes back to the upload, so the client can ask again. The upload keeps a note of its job,
so asking again for a job of it answers the same job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import magic
import structlog
from starlette.requests import Request

from whisperx_service.access.quotas import check_quotas, quota_lock
from whisperx_service.api.auth import Principal
from whisperx_service.api.multipart_form import (
    OPTION_FIELDS,
    SNIFF_BYTES,
    clean_filename,
    media_type_allowed,
    parse_options,
)
from whisperx_service.api.tus import upload_lock
from whisperx_service.api.upload import NO_SPACE_ERRNOS, _probe
from whisperx_service.api.webhook_options import with_webhook
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobRecord, new_job_id
from whisperx_service.errors import (
    AudioTooLong,
    InsufficientStorage,
    InvalidRequest,
    TranscriptRequired,
    UnsupportedMedia,
    UploadExpired,
    UploadIncomplete,
    UploadNotFound,
)
from whisperx_service.logs import get_logger
from whisperx_service.media import MediaInfo
from whisperx_service.storage.intake import UNSUPPORTED_MEDIA
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.storage.uploads import UploadInfo, UploadStore
from whisperx_service.store.async_jobs import AsyncJobStore

log = get_logger(__name__)
audit = get_logger("whisperx_service.audit")


#: The field naming the upload.
UPLOAD_ID_FIELD = "upload_id"


def upload_job_request(fields: dict[str, str]) -> tuple[str, JobOptions]:
    """The `upload_id` and job options of a field body (`api/field_body.read_fields`).

    Raises:
        InvalidRequest: no `upload_id`, an unknown field, or a bad option value.
    """
    rest = dict(fields)
    upload_id = rest.pop(UPLOAD_ID_FIELD, "").strip()
    if not upload_id:
        raise InvalidRequest("`upload_id` is required (or send a file as multipart/form-data)")
    unknown = sorted(set(rest) - OPTION_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(u[:64] for u in unknown[:5])}")
    return upload_id, parse_options(rest)


@dataclass(frozen=True, slots=True)
class UploadJob:
    """The job of an upload; `created` is False when an earlier request already made it."""

    record: JobRecord
    created: bool


def visible_upload(uploads: UploadStore, upload_id: str, principal: Principal) -> UploadInfo:
    """The upload, when the caller may use it (its own, or any for an admin key).

    Raises:
        UploadNotFound: no such upload, or another key's (its existence is not told).
    """
    info = uploads.read(upload_id)
    if info is None or not (principal.admin or (principal.key is not None and info.owner == principal.key.id)):
        raise UploadNotFound(f"upload {upload_id[:64]!r} not found")
    return info


def _sniff(path: Path) -> str:
    """libmagic's media type of the file's first SNIFF_BYTES."""
    with path.open("rb") as f:
        return str(magic.from_buffer(f.read(SNIFF_BYTES), mime=True))


def refuse_upload_job(options: JobOptions, principal: Principal, settings: Settings) -> JobOptions:
    """The options of a job to be made of an upload, with the key's default webhook; checked at the
    upload's creation (when its metadata asks for a job) and again when the job is made.

    Raises:
        TranscriptRequired: `task=align` (its transcript travels only in a multipart form).
        InvalidRequest: a webhook with nothing to sign it (`webhook_options.with_webhook`).
    """
    if options.task == "align":
        raise TranscriptRequired("task=align needs a `transcript` field: send the file as multipart/form-data with it")
    return with_webhook(options, principal, settings)


async def job_from_upload(
    request: Request,
    principal: Principal,
    settings: Settings,
    jobs: AsyncJobStore,
    storage: Storage,
    uploads: UploadStore,
    upload_id: str,
    options: JobOptions,
) -> UploadJob:
    """Make a job of the finished upload `upload_id` (see the module docstring).

    Raises:
        UploadNotFound: no such upload (or another key's), or its job was purged since.
        UploadExpired: its Upload-Expires passed (410).
        UploadIncomplete: not all of its bytes arrived yet (409).
        UnsupportedMedia, AudioTooLong: the file is not allowed audio/video, or too long (the
            upload is removed: no request can make a job of it).
        QuotaExceeded: one of the key's quotas is used up (the upload is kept).
        UploadLocked: a PATCH still writes to it.
        InsufficientStorage: the manifest does not fit. ServiceUnavailable (redis errors): Redis is down.
    """
    options = refuse_upload_job(options, principal, settings)
    info = visible_upload(uploads, upload_id, principal)
    async with upload_lock(uploads, upload_id):
        info = uploads.read(upload_id) or info
        if info.job_id is not None:
            record = await jobs.get(info.job_id)
            if record is None:
                raise UploadNotFound(f"upload {upload_id} not found (its job {info.job_id} was purged)")
            return UploadJob(record, created=False)
        if info.expires_s <= time.time():
            raise UploadExpired(f"upload {upload_id} expired unfinished")
        if uploads.offset(info) < info.length:
            raise UploadIncomplete(f"upload {upload_id} has {uploads.offset(info)} of its {info.length} bytes")
        await check_quotas(jobs, principal.key)
        data = uploads.data(upload_id)
        media_type = await anyio.to_thread.run_sync(_sniff, data)
        try:
            if not media_type_allowed(media_type):
                log.info("upload_refused", media_type=media_type)
                raise UnsupportedMedia(UNSUPPORTED_MEDIA)
            media = await _probe(data, settings.limits)
        except (UnsupportedMedia, AudioTooLong):
            await anyio.to_thread.run_sync(uploads.remove, upload_id)
            raise
        record = await _create(request, principal, settings, jobs, storage, uploads, info, options, media_type, media)
    return UploadJob(record, created=True)


async def _create(
    request: Request,
    principal: Principal,
    settings: Settings,
    jobs: AsyncJobStore,
    storage: Storage,
    uploads: UploadStore,
    info: UploadInfo,
    options: JobOptions,
    media_type: str,
    media: MediaInfo,
) -> JobRecord:
    """Move the upload's file into a new job and record the job (held for the dispatcher).

    Every step is undone if a later one fails: the file goes back to the upload.
    """
    duration_s = media.duration_s
    job_id = new_job_id()
    structlog.contextvars.bind_contextvars(job_id=job_id, upload_id=info.id)
    source = storage.source(job_id)
    moved = created = False
    filename = clean_filename(info.metadata.get("filename"))  # as a multipart upload's
    try:
        storage.job_dir(job_id).mkdir(parents=True)
        await anyio.to_thread.run_sync(uploads.move_to, info.id, source)
        moved = True
        async with quota_lock(jobs, principal.key):
            await check_quotas(jobs, principal.key, add_bytes=info.length, add_audio_s=duration_s or 0.0)
            owner = principal.owner
            manifest = {
                "id": job_id,
                "owner": owner.model_dump() if owner else None,
                "options": options.model_dump(mode="json"),
                "filename": filename,
                "size_bytes": info.length,
                "media_type": media_type,
                "created_at": datetime.now(UTC).isoformat(),
                "upload_id": info.id,
            }
            try:
                await anyio.to_thread.run_sync(atomic_write_json, storage.manifest(job_id), manifest)
            except OSError as e:
                if e.errno in NO_SPACE_ERRNOS:
                    raise InsufficientStorage("not enough storage space for the job") from None
                raise
            created = True
            record = await jobs.create(
                job_id, options, filename=filename, size_bytes=info.length, owner=owner, duration_s=duration_s
            )
        await anyio.to_thread.run_sync(uploads.mark_job, info, job_id)
    except BaseException:
        with anyio.CancelScope(shield=True):
            if created:
                try:
                    await jobs.delete(job_id)
                except Exception as e:  # Redis gone too: the held job fails in the worker (no source)
                    log.error("job_delete_failed", error=repr(e))
            if moved:
                try:
                    await anyio.to_thread.run_sync(uploads.take_back, info.id, source)
                except OSError as e:
                    log.error("upload_restore_failed", error=repr(e))
            await anyio.to_thread.run_sync(storage.remove_job, job_id)
        raise
    request.app.state.dispatch_wake.set()
    audit.info("job_created", size_bytes=info.length, media_type=media_type, upload_id=info.id)
    return record
