"""The tus 1.0 protocol pieces of `/v1/uploads`: headers, metadata, the per-upload lock and the
PATCH body written to disk with constant memory.

Why not a library: tuspyserver 4.4.3 (the maintained FastAPI tus server on PyPI, checked for
this feature) was measured on a 200 MB upload and read in full. Its default file backend streams
a PATCH with constant memory (+1 MB RSS), but (1) the PATCH body is appended before its `auth`
dependency runs, so a request without a valid key writes its bytes into someone's upload and only
then gets 401 (same for a wrong Content-Type: bytes appended, then 415); (2) creation-with-upload
is always advertised and reads the whole POST body into memory (+400 MB peak RSS for 200 MB, no
size check); its `LocalFileStorage` backend buffers a whole PATCH in memory too (+400 MB peak);
(3) file writes and a blocking lock wait (up to 30 s) run on the event loop; (4) its errors carry
exception text and paths (`{"detail": "Internal server error: ..."}`), not this service's codes;
(5) no per-key ownership of uploads and expiry in whole days. So core, creation, termination and
expiration are implemented here on the service's own upload writer (`api/writer.py`).

Spec: https://tus.io/protocols/resumable-upload (version 1.0.0).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import os
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate

import anyio
from starlette.requests import ClientDisconnect, Request

from whisperx_service.api.multipart_form import OPTION_FIELDS, parse_options
from whisperx_service.api.upload import FREE_CHECK_BYTES, NO_SPACE_ERRNOS, _check_free
from whisperx_service.api.writer import SourceWriter
from whisperx_service.config import LimitsSettings
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.errors import (
    TUS_VERSION,
    InsufficientStorage,
    InvalidRequest,
    PayloadTooLarge,
    TusVersionUnsupported,
    UnsupportedMediaType,
    UploadLocked,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTimeout,
)
from whisperx_service.logs import get_logger
from whisperx_service.storage.local import Storage
from whisperx_service.storage.uploads import UploadInfo, UploadStore

log = get_logger(__name__)

#: The extensions offered (`Tus-Extension`); creation-with-upload, defer-length and concatenation are not.
TUS_EXTENSIONS = "creation,termination,expiration"
#: The media type of a PATCH body (tus core).
PATCH_CONTENT_TYPE = "application/offset+octet-stream"
#: Longest `Upload-Metadata` header accepted (bytes): a file name and the job options fit many times.
MAX_METADATA_BYTES = 16 * 1024
#: Metadata key that asks for a job once the upload is complete, even with default options.
JOB_KEY = "job"
#: Request headers of tus (allowed by CORS for browser clients such as tus-js-client).
TUS_REQUEST_HEADERS = ("Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "X-HTTP-Method-Override")
#: Answer headers of tus (exposed by CORS).
TUS_ANSWER_HEADERS = (
    "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
    "Upload-Offset", "Upload-Length", "Upload-Expires", "Upload-Metadata", "Job-Id", "Job-Status-Url",
)  # fmt: skip
#: Seconds a request waits for another request's lock on the same upload before 423.
LOCK_WAIT_S = 5.0
#: Seconds between tries for a held upload lock.
LOCK_POLL_S = 0.05


def require_tus(request: Request) -> None:
    """Refuse a tus request that does not say `Tus-Resumable: 1.0.0`.

    Raises:
        TusVersionUnsupported: the header is missing or names another version (412).
    """
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise TusVersionUnsupported(f"this server speaks tus {TUS_VERSION}: send `Tus-Resumable: {TUS_VERSION}`")


def header_int(request: Request, name: str) -> int | None:
    """A non-negative integer header (None when absent).

    Raises:
        InvalidRequest: present but not a non-negative integer.
    """
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise InvalidRequest(f"{name} must be a non-negative integer")
    return int(raw)


def parse_metadata(raw: str | None) -> dict[str, str]:
    """Decode `Upload-Metadata`: comma-separated `key base64(value)` pairs (the value may be absent).

    Returns:
        key -> decoded UTF-8 value ("" for a key without a value).
    Raises:
        InvalidRequest: longer than MAX_METADATA_BYTES, a key repeated or empty or with spaces, a
            value that is not base64 of UTF-8 text.
    """
    out: dict[str, str] = {}
    if not raw or not raw.strip():
        return out
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    for pair in raw.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or key in out or not key.isascii():
            raise InvalidRequest("Upload-Metadata must be comma-separated `key base64value` pairs, keys unique")
        try:
            out[key] = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest(f"Upload-Metadata value of {key[:64]!r} is not base64 of UTF-8 text") from None
    return out


def job_options(metadata: Mapping[str, str]) -> JobOptions | None:
    """The job the metadata asks for once the upload is complete, or None when it asks for none.

    A job is asked for by the key `job` or by any job option (`language`, `num_speakers`, ...).

    Raises:
        InvalidRequest: an option value is malformed.
    """
    fields = {k: v for k, v in metadata.items() if k in OPTION_FIELDS}
    if JOB_KEY not in metadata and not fields:
        return None
    return parse_options(fields)


def http_date(seconds: float) -> str:
    """An RFC 7231 date (`Upload-Expires`) of a time in seconds since the epoch."""
    return formatdate(seconds, usegmt=True)


def upload_headers(store: UploadStore, info: UploadInfo, offset: int | None = None) -> dict[str, str]:
    """The tus headers that describe an upload: version, offset, length, expiry, and its job."""
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(store.offset(info) if offset is None else offset),
        "Upload-Length": str(info.length),
        "Upload-Expires": http_date(info.expires_s),
        "Cache-Control": "no-store",
    }
    if info.job_id is not None:
        headers["Job-Id"] = info.job_id
    return headers


@contextlib.asynccontextmanager
async def upload_lock(store: UploadStore, upload_id: str) -> AsyncIterator[None]:
    """Hold the upload's exclusive lock (`flock` on its directory: shared by every gateway on
    the storage, freed by the kernel when a gateway dies) for the block.

    Raises:
        UploadLocked: another request held it for LOCK_WAIT_S.
        UploadNotFound: the upload's directory is gone.
    """
    try:
        fd = os.open(store.dir(upload_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UploadNotFound(f"upload {upload_id} not found") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never blocks: polled
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise UploadLocked("another request is still writing to this upload; retry shortly")
            await anyio.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


async def receive_patch(
    request: Request,
    store: UploadStore,
    info: UploadInfo,
    storage: Storage,
    limits: LimitsSettings,
    *,
    min_free_bytes: int,
) -> int:
    """Append the PATCH body to the upload at its current offset; call under `upload_lock`.

    The body goes to disk in batches as it arrives (`SourceWriter`: constant memory). Whatever
    arrived before the client went away, went idle or sent too much is kept, so a resume
    continues after it (tus core).

    Returns:
        The upload's offset after the body (bytes).
    Raises:
        UnsupportedMediaType: Content-Type is not `application/offset+octet-stream` (415).
        InvalidRequest: no or a malformed `Upload-Offset` (422).
        UploadOffsetMismatch: `Upload-Offset` is not the upload's offset (409).
        PayloadTooLarge: the body would take the upload past its `Upload-Length` (413).
        UploadTimeout: nothing arrived for UPLOAD_IDLE_TIMEOUT_S (408).
        InsufficientStorage: storage is full or would keep less than `min_free_bytes` (507).
        ClientDisconnect: the client went away (the bytes it sent are kept).
    """
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != PATCH_CONTENT_TYPE:
        raise UnsupportedMediaType(f"a tus PATCH body must be {PATCH_CONTENT_TYPE}")
    claimed = header_int(request, "upload-offset")
    if claimed is None:
        raise InvalidRequest("a tus PATCH needs Upload-Offset")
    offset = store.offset(info)
    if claimed != offset:
        raise UploadOffsetMismatch(f"Upload-Offset {claimed} is not the upload's offset {offset}; ask HEAD for it")
    left = info.length - offset
    announced = header_int(request, "content-length")
    if announced is not None and announced > left:
        raise PayloadTooLarge(f"the body of {announced} bytes goes past Upload-Length ({left} bytes left)")
    writer = SourceWriter(store.data(info.id), offset=offset)
    received, checked = 0, 0
    stream = request.stream()
    try:
        while True:
            with anyio.move_on_after(limits.upload_idle_timeout_s) as idle:
                chunk = await anext(stream, None)
            if idle.cancelled_caught:
                raise UploadTimeout(f"no upload bytes for {limits.upload_idle_timeout_s:g} s; send the rest again")
            if chunk is None:
                break
            if received + len(chunk) > left:
                raise PayloadTooLarge(f"the body goes past Upload-Length ({left} bytes were left)")
            if chunk:
                # Views of the chunk outlive this step (batched writes): it must be immutable.
                writer.append(memoryview(chunk if type(chunk) is bytes else bytes(chunk)))
                received += len(chunk)
                await writer.pump()
            if received - checked >= FREE_CHECK_BYTES:
                checked = received
                await _check_free(storage, min_free_bytes)
    except OSError as e:
        if e.errno in NO_SPACE_ERRNOS:
            raise InsufficientStorage("not enough storage space for the upload") from None
        raise
    except ClientDisconnect:
        log.info("upload_patch_dropped", upload_id=info.id, offset=offset + received)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await writer.finish()  # the bytes received are kept, whatever ended the body
            except OSError as e:  # the error that ended the body (if any) is the one reported
                log.warning("upload_flush_failed", upload_id=info.id, error=repr(e))
            finally:
                await writer.close()
                await stream.aclose()
    return offset + received
