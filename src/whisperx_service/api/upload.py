"""Streaming multipart upload: the request body goes straight to `jobs/<id>/source`, never whole in RAM.

The body is parsed incrementally as it arrives from `request.stream()` by python-multipart's
low-level `MultipartParser` (callbacks, no spooling). The `file` part's bytes are counted against
`MAX_UPLOAD_BYTES` and go to a temp file in the job's directory; the first `SNIFF_BYTES` are held
back until libmagic has looked at them. At the end the file is fsynced and renamed to `source`.
The other form fields are the job options, each capped at `MAX_FORM_FIELD_BYTES`.

The file is written by `writer.SourceWriter`; the parser's callbacks are `multipart_form.FormReader`.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import anyio
import anyio.to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from whisperx_service.api.multipart_form import FormReader, parse_options
from whisperx_service.config import LimitsSettings
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.errors import (
    EmptyUpload,
    InsufficientStorage,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from whisperx_service.storage.local import TMP_PREFIX, Storage

#: Allowance (bytes) for multipart boundaries, part headers and option fields in the early
#: Content-Length check: a body longer than MAX_UPLOAD_BYTES plus this is refused unread.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: errno values that mean the storage is full (no space, or the user's quota is used up).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True, slots=True)
class Upload:
    """A finished upload; the file is at `Storage.source(job_id)`."""

    job_id: str
    options: JobOptions
    filename: str | None  # the client's name, cleaned (metadata only)
    size_bytes: int
    media_type: str  # libmagic's verdict on the first bytes


def check_content_length(request: Request, limits: LimitsSettings) -> None:
    """Refuse a body that announces itself as too large, before reading any of it.

    Raises:
        PayloadTooLarge: Content-Length exceeds MAX_UPLOAD_BYTES + `MULTIPART_OVERHEAD_BYTES`.
        InvalidRequest: Content-Length is not a number.
    """
    raw = request.headers.get("content-length")
    if raw is None:
        return
    try:
        length = int(raw)
    except ValueError:
        raise InvalidRequest("Content-Length is not a number") from None
    if length > limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
        raise PayloadTooLarge(
            f"request body of {length} bytes exceeds the upload limit of {limits.max_upload_bytes} bytes"
        )


def _boundary(request: Request) -> bytes:
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType("the request body must be multipart/form-data with a `file` part")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("multipart/form-data without a boundary")
    return boundary


async def receive_upload(request: Request, storage: Storage, job_id: str, limits: LimitsSettings) -> Upload:
    """Stream the multipart body into `jobs/<job_id>/source` and validate the option fields.

    Creates the job directory; on any failure it is removed again before the error propagates.

    Args:
        request: the POST whose body is `multipart/form-data` with a `file` part and option fields.
        storage: where the job directory goes.
        job_id: the new job's id (server-made hex).
        limits: MAX_UPLOAD_BYTES (bytes of the file part) and MAX_FORM_FIELD_BYTES (each field).
    Returns:
        What was received: options, cleaned file name, size in bytes, detected media type.
    Raises:
        PayloadTooLarge: (413) the file part, or the announced Content-Length, is too large.
        UnsupportedMediaType: (415) the body is not multipart, or the file is not audio/video.
        EmptyUpload: (422) the file part has no bytes.
        InvalidRequest: (422) no file part, unknown/duplicate/oversized fields, bad option values,
            a malformed or truncated body, or the client disconnected.
        InsufficientStorage: (507) the disk is full.
        OSError: any other storage failure.
    """
    check_content_length(request, limits)
    boundary = _boundary(request)
    job_dir = storage.job_dir(job_id)
    reader = FormReader(
        tmp_path=job_dir / f"{TMP_PREFIX}source",
        max_file_bytes=limits.max_upload_bytes,
        max_field_bytes=limits.max_form_field_bytes,
    )
    try:
        try:
            job_dir.mkdir(parents=True)
            parser = MultipartParser(boundary, reader.callbacks())
            async for chunk in request.stream():
                if chunk:
                    # Views of the chunk outlive this step (batched writes): it must be immutable.
                    parser.write(chunk if type(chunk) is bytes else bytes(chunk))
                    if reader.writer is not None:
                        await reader.writer.pump()
                if reader.done:
                    break
            if not reader.done:
                raise InvalidRequest("the multipart body ended before its closing boundary")
            if not reader.file_seen:
                raise InvalidRequest("missing `file` part")
            if reader.size == 0:
                raise EmptyUpload("the uploaded file is empty")
            options = parse_options(reader.fields)
            assert reader.writer is not None
            await reader.writer.commit(storage.source(job_id))
        except MultipartParseError as e:
            raise InvalidRequest(f"malformed multipart body: {e}") from None
        except ClientDisconnect:
            raise InvalidRequest("the client disconnected before the upload finished") from None
        except OSError as e:
            if e.errno in NO_SPACE_ERRNOS:
                raise InsufficientStorage("not enough storage space for the upload") from None
            raise
        finally:
            if reader.writer is not None:
                await reader.writer.close()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(storage.remove_job, job_id)
        raise
    return Upload(
        job_id=job_id,
        options=options,
        filename=reader.filename,
        size_bytes=reader.size,
        media_type=reader.media_type,
    )
