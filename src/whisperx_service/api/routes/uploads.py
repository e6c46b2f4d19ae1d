"""Resumable uploads: `/v1/uploads` speaks tus 1.0 (core, creation, termination, expiration).

    POST   /v1/uploads         create (Upload-Length, Upload-Metadata): 201, Location, Upload-Expires
    HEAD   /v1/uploads/{id}    where to go on: Upload-Offset, Upload-Length, Upload-Expires (Job-Id)
    PATCH  /v1/uploads/{id}    append at Upload-Offset (application/offset+octet-stream): 204
    DELETE /v1/uploads/{id}    terminate: the upload's bytes are deleted; 204
    OPTIONS /v1/uploads        Tus-Version, Tus-Extension, Tus-Max-Size

Same keys as every route (an upload belongs to the key that created it; admin keys see all), the
key's storage quota counts the full length of its unfinished uploads from creation on, and
MAX_UPLOAD_BYTES caps Upload-Length. A finished upload becomes a job with `POST /v1/jobs` and
`upload_id` (`api/upload_jobs.py`), or at its last PATCH when its metadata carries job options
(or the key `job`); that PATCH answers with `Job-Id` and `Job-Status-Url`. Protocol pieces and
why no library: `api/tus.py`. Storage: `storage/uploads.py`.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from typing import Annotated, Any

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect

from whisperx_service.access.quotas import check_quotas, quota_lock
from whisperx_service.api.auth import PrincipalDep
from whisperx_service.api.deps import JobsDep, SettingsDep, StorageDep
from whisperx_service.api.tus import (
    TUS_EXTENSIONS,
    header_int,
    job_options,
    parse_metadata,
    receive_patch,
    require_tus,
    upload_headers,
    upload_lock,
)
from whisperx_service.api.upload import _check_free
from whisperx_service.api.upload_jobs import job_from_upload, refuse_upload_job, visible_upload
from whisperx_service.config import Settings
from whisperx_service.errors import (
    TUS_VERSION,
    InvalidRequest,
    PayloadTooLarge,
    ServiceError,
    UploadExpired,
    UploadOffsetMismatch,
)
from whisperx_service.logs import get_logger
from whisperx_service.storage.uploads import UploadStore

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
log = get_logger(__name__)
audit = get_logger("whisperx_service.audit")


def get_uploads(settings: SettingsDep) -> UploadStore:
    """Resumable uploads under the storage root."""
    return UploadStore(settings.storage.root)


UploadsDep = Annotated[UploadStore, Depends(get_uploads)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "unauthorized"},
    404: {"description": "upload_not_found"},
    410: {"description": "upload_expired"},
    412: {"description": "tus_version_unsupported (no `Tus-Resumable: 1.0.0`)"},
    423: {"description": "upload_locked (another request still writes to it)"},
}


@contextlib.contextmanager
def _tus_answer() -> Iterator[None]:
    """Error answers of tus routes carry `Tus-Resumable` too (tus core: every answer but OPTIONS')."""
    try:
        yield
    except ServiceError as e:
        e.headers["Tus-Resumable"] = TUS_VERSION
        raise


def _location(settings: Settings, upload_id: str) -> str:
    """The upload's URL (under API_PUBLIC_URL; relative when it is empty). Its last segment is the id."""
    return f"{settings.api.public_url.rstrip('/')}/v1/uploads/{upload_id}"


@router.options("", status_code=204, summary="tus discovery: version, extensions, largest upload")
async def tus_options(principal: PrincipalDep, settings: SettingsDep) -> Response:
    """The tus versions and extensions this server speaks, and the largest `Upload-Length` (bytes)."""
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(settings.limits.max_upload_bytes),
        },
    )


@router.post(
    "",
    status_code=201,
    summary="Create a resumable upload (tus creation)",
    responses={**_ERRORS, 413: {"description": "payload_too_large"}, 429: {"description": "quota_exceeded"}},
)
async def create_upload(
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    uploads: UploadsDep,
) -> Response:
    """Create an upload of `Upload-Length` bytes; its URL is in `Location` (the id is its last segment).

    `Upload-Metadata` may carry `filename` and the job options (`language`, `num_speakers`, ...,
    or just `job`): then the last PATCH makes the job. The body must be empty (no
    creation-with-upload).

    Raises:
        TusVersionUnsupported (412), InvalidRequest (422: no or a bad Upload-Length, bad metadata
        or options, a body), PayloadTooLarge (413: over MAX_UPLOAD_BYTES), QuotaExceeded (429:
        the key's storage quota, counting its unfinished uploads), InsufficientStorage (507).
    """
    with _tus_answer():
        require_tus(request)
        length = header_int(request, "upload-length")
        if length is None:
            raise InvalidRequest("Upload-Length is required (deferred length is not supported)")
        if length == 0:
            raise InvalidRequest("an upload must have at least one byte")
        if length > settings.limits.max_upload_bytes:
            limit = settings.limits.max_upload_bytes
            raise PayloadTooLarge(f"Upload-Length {length} exceeds the limit of {limit} bytes")
        if header_int(request, "content-length"):
            raise InvalidRequest("creation-with-upload is not supported: create, then PATCH the bytes")
        metadata = parse_metadata(request.headers.get("upload-metadata"))
        wanted = job_options(metadata)  # a job's options are refused now, not after the upload
        if wanted is not None:
            refuse_upload_job(wanted, principal, settings)
        owner = principal.key.id if principal.key is not None else None
        await _check_free(storage, settings.storage.min_free_bytes, length)
        async with quota_lock(jobs, principal.key):
            pending = await anyio.to_thread.run_sync(uploads.pending_bytes, owner)
            await check_quotas(jobs, principal.key, add_bytes=pending + length)
            info = await anyio.to_thread.run_sync(
                uploads.create, owner, length, metadata, time.time(), settings.limits.upload_expiry_s
            )
    structlog.contextvars.bind_contextvars(upload_id=info.id)
    audit.info("upload_created", length=length)
    headers = upload_headers(uploads, info, 0)
    del headers["Upload-Length"], headers["Upload-Offset"]
    return Response(status_code=201, headers={**headers, "Location": _location(settings, info.id)})


@router.head("/{upload_id}", summary="Where a resumable upload stands (tus core)", responses=_ERRORS)
async def head_upload(upload_id: str, request: Request, principal: PrincipalDep, uploads: UploadsDep) -> Response:
    """`Upload-Offset` (bytes received), `Upload-Length`, `Upload-Expires`, `Upload-Metadata`, and
    `Job-Id` once a job was made of it.

    Raises:
        TusVersionUnsupported (412), UploadNotFound (404), UploadExpired (410).
    """
    with _tus_answer():
        require_tus(request)
        info = visible_upload(uploads, upload_id, principal)
        if info.job_id is None and info.expires_s <= time.time():
            raise UploadExpired(f"upload {upload_id} expired unfinished")
        headers = upload_headers(uploads, info)
        if info.metadata:
            headers["Upload-Metadata"] = ",".join(
                f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in info.metadata.items()
            )
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    summary="Append bytes to a resumable upload (tus core)",
    responses={
        **_ERRORS,
        408: {"description": "upload_timeout"},
        409: {"description": "upload_offset_mismatch"},
        413: {"description": "payload_too_large (past Upload-Length)"},
        415: {"description": "unsupported_media_type (not application/offset+octet-stream) / unsupported_media"},
        507: {"description": "insufficient_storage"},
    },
)
async def patch_upload(
    upload_id: str,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    uploads: UploadsDep,
) -> Response:
    """Append the body at `Upload-Offset`; answers the new `Upload-Offset`.

    The bytes received are kept even when the connection drops, so a client resumes at the
    offset HEAD reports. The last PATCH of an upload whose metadata asks for a job makes it
    (`Job-Id`, `Job-Status-Url`); its media checks answer as `POST /v1/jobs` does.

    Raises:
        TusVersionUnsupported (412), UploadNotFound (404), UploadExpired (410), UploadLocked (423),
        and what `receive_patch` and `job_from_upload` raise.
    """
    structlog.contextvars.bind_contextvars(upload_id=upload_id[:64])
    with _tus_answer():
        require_tus(request)
        info = visible_upload(uploads, upload_id, principal)
        async with upload_lock(uploads, upload_id):
            info = uploads.read(upload_id) or info
            if info.job_id is not None:
                # Already a job (a client resending its last PATCH): nothing more is written.
                if header_int(request, "upload-offset") != info.length:
                    raise UploadOffsetMismatch(f"upload {upload_id} is complete at {info.length} bytes")
                headers = upload_headers(uploads, info, info.length)
                headers["Job-Id"] = info.job_id
                headers["Job-Status-Url"] = f"{settings.api.public_url.rstrip('/')}/v1/jobs/{info.job_id}"
                return Response(status_code=204, headers=headers)
            if info.expires_s <= time.time():
                raise UploadExpired(f"upload {upload_id} expired unfinished")
            try:
                offset = await receive_patch(
                    request, uploads, info, storage, settings.limits, min_free_bytes=settings.storage.min_free_bytes
                )
            except ClientDisconnect:
                raise InvalidRequest("the client disconnected before the body ended") from None
        headers = upload_headers(uploads, info, offset)
        options = job_options(info.metadata)
        if offset == info.length and options is not None and info.job_id is None:
            made = await job_from_upload(request, principal, settings, jobs, storage, uploads, upload_id, options)
            headers["Job-Id"] = made.record.id
            headers["Job-Status-Url"] = f"{settings.api.public_url.rstrip('/')}/v1/jobs/{made.record.id}"
        if offset == info.length:
            audit.info("upload_finished", length=info.length)
    return Response(status_code=204, headers=headers)


@router.delete(
    "/{upload_id}", status_code=204, summary="Delete a resumable upload (tus termination)", responses=_ERRORS
)
async def delete_upload(upload_id: str, request: Request, principal: PrincipalDep, uploads: UploadsDep) -> Response:
    """Delete the upload and the bytes received; its URL answers 404 from then on. A job already
    made of it is not touched (cancel or purge it at `/v1/jobs/{id}`).

    Raises:
        TusVersionUnsupported (412), UploadNotFound (404), UploadLocked (423).
    """
    with _tus_answer():
        require_tus(request)
        visible_upload(uploads, upload_id, principal)
        async with upload_lock(uploads, upload_id):
            await anyio.to_thread.run_sync(uploads.remove, upload_id)
    audit.info("upload_terminated", upload_id=upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})
