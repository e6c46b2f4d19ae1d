"""Streaming multipart upload: the request body goes straight to `jobs/<id>/source`, never whole in RAM.

The body is parsed incrementally as it arrives from `request.stream()` by python-multipart's
low-level `MultipartParser` (callbacks, no spooling). The `file` part's bytes are counted against
`MAX_UPLOAD_BYTES` and go to a temp file in the job's directory; the first `SNIFF_BYTES` are held
back until libmagic has looked at them. At the end the file is fsynced and renamed to `source`,
and ffprobe checks it (`media.probe`: an allowed container with audio, at most `MAX_DURATION_S`).
The other form fields are the job options, each capped at `MAX_FORM_FIELD_BYTES`.

Hostile bodies: the raw body is counted against `body_limit` (whatever its bytes are spent on),
the boundary must follow RFC 2046, a client that sends nothing for `UPLOAD_IDLE_TIMEOUT_S` is
dropped (408), and free space on storage is checked before and while the body streams.

The file is written by `writer.SourceWriter`; the parser's callbacks are `multipart_form.FormReader`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from whisperx_service.api.multipart_form import JOB_FORM, FormReader, FormSpec
from whisperx_service.api.writer import WRITE_BATCH_BYTES
from whisperx_service.config import LimitsSettings
from whisperx_service.errors import (
    EmptyUpload,
    InsufficientStorage,
    InvalidRequest,
    MalformedMultipart,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    UploadTimeout,
)
from whisperx_service.logs import get_logger
from whisperx_service.media import MediaInfo
from whisperx_service.storage import intake
from whisperx_service.storage.local import TMP_PREFIX, Storage

log = get_logger(__name__)

#: Allowance (bytes) for multipart boundaries and part headers on top of the file and the option
#: fields: the raw body may be at most `body_limit` bytes, however its bytes are spent.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: errno values that mean the storage is full (no space, or the user's quota is used up).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Longest multipart boundary (RFC 2046, section 5.1.1: 1 to 70 characters).
MAX_BOUNDARY_CHARS = 70
#: A boundary's characters (RFC 2046 `bchars`; a space may not be the last one).
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
#: Free space on storage is checked again after every this many bytes of body (one write batch).
FREE_CHECK_BYTES = WRITE_BATCH_BYTES


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Upload(Generic[T]):
    """A finished upload; the file is at `Storage.source(job_id)`."""

    job_id: str
    form: T  # what the route's `FormSpec.parse` made of the fields (JobOptions for POST /v1/jobs)
    filename: str | None  # the client's name, cleaned (metadata only)
    size_bytes: int
    media_type: str  # libmagic's verdict on the first bytes
    media: MediaInfo  # ffprobe's: demuxer, duration, audio streams
    fingerprint: str  # `FormReader.fingerprint`: SHA-256 hex of the file, its name and the fields


def body_limit(limits: LimitsSettings, spec: FormSpec[Any] = JOB_FORM) -> int:
    """Most bytes a body of the form `spec` may have: the file, every field at its limit, and
    `MULTIPART_OVERHEAD_BYTES` for boundaries and part headers."""
    large = len(spec.large_fields) * limits.max_transcript_bytes
    return limits.max_upload_bytes + spec.field_limit * limits.max_form_field_bytes + large + MULTIPART_OVERHEAD_BYTES


def check_content_length(request: Request, limits: LimitsSettings, spec: FormSpec[Any] = JOB_FORM) -> int | None:
    """Refuse a body that announces itself as too large, before reading any of it.

    Returns:
        The announced length in bytes, or None for a chunked body.
    Raises:
        PayloadTooLarge: Content-Length exceeds `body_limit`.
        InvalidRequest: Content-Length is not a number.
    """
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        length = int(raw)
    except ValueError:
        raise InvalidRequest("Content-Length is not a number") from None
    if length > body_limit(limits, spec):
        raise PayloadTooLarge(
            f"request body of {length} bytes exceeds the upload limit of {limits.max_upload_bytes} bytes"
        )
    return length


def _boundary(request: Request) -> bytes:
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType(
            "the request body must be multipart/form-data with a `file` part, "
            "or JSON / a urlencoded form with `url` or `upload_id`"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedMultipart("multipart/form-data without a boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS or not _BOUNDARY.fullmatch(boundary):
        raise MalformedMultipart(f"the multipart boundary must be 1 to {MAX_BOUNDARY_CHARS} characters (RFC 2046)")
    return boundary


async def _check_free(storage: Storage, min_free: int, need: int = 0) -> None:
    """`storage.intake.check_free` on the storage root, in a thread.

    Raises:
        InsufficientStorage: storage would keep less than `min_free` bytes free after `need` more.
    """
    await anyio.to_thread.run_sync(intake.check_free, storage.root, min_free, need)


async def _probe(path: Path, limits: LimitsSettings) -> MediaInfo:
    """`storage.intake.check_source` of the stored upload under MAX_DURATION_S, in a thread.

    Raises:
        UnsupportedMedia, AudioTooLong, InternalError: see `check_source`.
    """
    return await anyio.to_thread.run_sync(intake.check_source, path, limits.max_duration_s)


async def receive_upload(
    request: Request,
    storage: Storage,
    job_id: str,
    limits: LimitsSettings,
    spec: FormSpec[T],
    *,
    min_free_bytes: int = 0,
) -> Upload[T]:
    """`_receive_upload`; a refused upload's answer closes the connection (`Connection: close`), so
    the HTTP server stops reading a body nobody wants instead of draining it without limit.

    Raises:
        See `_receive_upload`.
    """
    try:
        return await _receive_upload(request, storage, job_id, limits, spec, min_free_bytes=min_free_bytes)
    except ServiceError as e:
        e.headers["Connection"] = "close"
        raise


async def digest_upload(request: Request, limits: LimitsSettings, spec: FormSpec[T]) -> tuple[str, T]:
    """Read the multipart body without keeping the file: its fingerprint and parsed fields.

    For the repeat of an idempotent submission: the body is hashed as it streams (constant
    memory, nothing written) under the same limits as an upload.

    Returns:
        `(fingerprint, form)` as `Upload.fingerprint` and `Upload.form` would be.
    Raises:
        PayloadTooLarge, MalformedMultipart, UploadTimeout, UnsupportedMediaType, EmptyUpload,
        InvalidRequest: as `_receive_upload` (the answer closes the connection).
    """
    try:
        check_content_length(request, limits, spec)
        reader = FormReader(
            tmp_path=None,
            max_file_bytes=limits.max_upload_bytes,
            max_field_bytes=limits.max_form_field_bytes,
            max_large_field_bytes=limits.max_transcript_bytes,
            spec=spec,
        )
        try:
            await _read_body(request, reader, _boundary(request), body_limit(limits, spec), limits, None)
        except MultipartParseError as e:
            log.info("malformed_multipart", reason=str(e))
            raise MalformedMultipart("malformed multipart body") from None
        except ClientDisconnect:
            raise InvalidRequest("the client disconnected before the upload finished") from None
        return reader.fingerprint(), spec.parse(reader.fields, reader.multi)
    except ServiceError as e:
        e.headers["Connection"] = "close"
        raise


async def _read_body(
    request: Request,
    reader: FormReader,
    boundary: bytes,
    limit: int,
    limits: LimitsSettings,
    every_batch: Callable[[], Awaitable[None]] | None,
) -> None:
    """Feed the request body to `reader` until its closing boundary.

    Args:
        limit: most raw body bytes (`body_limit`).
        every_batch: awaited after each FREE_CHECK_BYTES of body (the free-space check).
    Raises:
        UploadTimeout: nothing arrived for UPLOAD_IDLE_TIMEOUT_S.
        PayloadTooLarge: the body is over `limit`.
        MalformedMultipart: the body ended before its closing boundary.
        InvalidRequest: no file part. EmptyUpload: the file part is empty.
        MultipartParseError, ClientDisconnect: as the parser and Starlette raise them.
        And whatever the reader's callbacks raise (see `FormReader`).
    """
    stream = request.stream()
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        received, checked = 0, 0
        while not reader.done:
            with anyio.move_on_after(limits.upload_idle_timeout_s) as idle:
                chunk = await anext(stream, None)
            if idle.cancelled_caught:
                raise UploadTimeout(f"no upload bytes for {limits.upload_idle_timeout_s:g} s; the upload was dropped")
            if chunk is None:
                break
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body exceeds the upload limit of {limits.max_upload_bytes} bytes")
            if chunk:
                # Views of the chunk outlive this step (batched writes): it must be immutable.
                parser.write(chunk if type(chunk) is bytes else bytes(chunk))
                if reader.writer is not None:
                    await reader.writer.pump()
            if every_batch is not None and received - checked >= FREE_CHECK_BYTES:
                checked = received
                await every_batch()
        if not reader.done:
            raise MalformedMultipart("the multipart body ended before its closing boundary")
        if not reader.file_seen:
            raise InvalidRequest("missing `file` part")
        if reader.size == 0:
            raise EmptyUpload("the uploaded file is empty")
    finally:
        await stream.aclose()


async def _receive_upload(
    request: Request,
    storage: Storage,
    job_id: str,
    limits: LimitsSettings,
    spec: FormSpec[T],
    *,
    min_free_bytes: int,
) -> Upload[T]:
    """Stream the multipart body into `jobs/<job_id>/source`, validate the fields, probe the file.

    Creates the job directory; on any failure it is removed again before the error propagates.

    Args:
        request: the POST whose body is `multipart/form-data` with a `file` part and option fields.
        storage: where the job directory goes.
        job_id: the new job's id (server-made hex).
        limits: MAX_UPLOAD_BYTES (bytes of the file part), MAX_FORM_FIELD_BYTES (each field),
            MAX_DURATION_S (seconds of audio), UPLOAD_IDLE_TIMEOUT_S (seconds without a byte).
        spec: the fields the route accepts and how they are parsed (`JOB_FORM` for POST /v1/jobs).
        min_free_bytes: free space (bytes) the upload must leave on storage (STORAGE_MIN_FREE_BYTES).
    Returns:
        What was received: the parsed form, cleaned file name, size in bytes, detected media type,
        probe, fingerprint.
    Raises:
        PayloadTooLarge: (413) the file part or the raw body (announced or counted) is too large.
        AudioTooLong: (413) ffprobe says the audio is longer than MAX_DURATION_S.
        MalformedMultipart: (400) a bad boundary, broken framing, or a body that ends early.
        UploadTimeout: (408) the client sent nothing for UPLOAD_IDLE_TIMEOUT_S.
        UnsupportedMediaType: (415) the body is not multipart.
        UnsupportedMedia: (415) the file is not audio/video of an allowed format, or has no audio.
        EmptyUpload: (422) the file part has no bytes.
        InvalidRequest: (422) no file part, unknown/duplicate/oversized fields, bad option values,
            or the client disconnected.
        InsufficientStorage: (507) the disk is full, or would keep less than `min_free_bytes`.
        OSError: any other storage failure.
    """
    announced = check_content_length(request, limits, spec)
    boundary = _boundary(request)
    await _check_free(storage, min_free_bytes, announced or 0)
    job_dir = storage.job_dir(job_id)
    reader = FormReader(
        tmp_path=job_dir / f"{TMP_PREFIX}source",
        max_file_bytes=limits.max_upload_bytes,
        max_field_bytes=limits.max_form_field_bytes,
        max_large_field_bytes=limits.max_transcript_bytes,
        spec=spec,
    )

    async def free_check() -> None:
        await _check_free(storage, min_free_bytes)

    try:
        try:
            job_dir.mkdir(parents=True)
            await _read_body(request, reader, boundary, body_limit(limits, spec), limits, free_check)
            form = spec.parse(reader.fields, reader.multi)
            assert reader.writer is not None
            await reader.writer.commit(storage.source(job_id))
            # The last check ran up to one write batch ago: an upload that ended below the floor is refused too.
            await _check_free(storage, min_free_bytes)
        except MultipartParseError as e:
            log.info("malformed_multipart", reason=str(e))
            raise MalformedMultipart("malformed multipart body") from None
        except ClientDisconnect:
            raise InvalidRequest("the client disconnected before the upload finished") from None
        except OSError as e:
            if e.errno in NO_SPACE_ERRNOS:
                raise InsufficientStorage("not enough storage space for the upload") from None
            raise
        finally:
            if reader.writer is not None:
                await reader.writer.close()
        info = await _probe(storage.source(job_id), limits)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(storage.remove_job, job_id)
        raise
    return Upload(
        job_id=job_id,
        form=form,
        filename=reader.filename,
        size_bytes=reader.size,
        media_type=reader.media_type,
        media=info,
        fingerprint=reader.fingerprint(),
    )
