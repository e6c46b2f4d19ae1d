"""Errors of resumable uploads (tus 1.0 at `/v1/uploads`), answered with their HTTP status."""

from __future__ import annotations

from whisperx_service.errors.base import ServiceError

#: The tus protocol version this service speaks (tus 1.0.0, https://tus.io/protocols/resumable-upload).
TUS_VERSION = "1.0.0"


class UploadNotFound(ServiceError):
    """No such upload (or the id cannot be one, or another key owns it, or retention removed it)."""

    code = "upload_not_found"
    http_status = 404


class UploadOffsetMismatch(ServiceError):
    """A PATCH whose `Upload-Offset` is not the upload's current offset (tus: 409); HEAD tells it."""

    code = "upload_offset_mismatch"
    http_status = 409


class UploadIncomplete(ServiceError):
    """A job was asked for an upload that has not received all its bytes yet."""

    code = "upload_incomplete"
    http_status = 409


class UploadExpired(ServiceError):
    """The upload was not finished (or made a job) before its `Upload-Expires` (UPLOAD_EXPIRY_S)."""

    code = "upload_expired"
    http_status = 410


class TusVersionUnsupported(ServiceError):
    """A tus request without `Tus-Resumable: 1.0.0`; the answer names the version in `Tus-Version`."""

    code = "tus_version_unsupported"
    http_status = 412

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["Tus-Version"] = TUS_VERSION


class UploadLocked(ServiceError):
    """Another request still writes to this upload (e.g. the connection of a client that dropped
    has not closed yet on the gateway); retry after `Retry-After` (s)."""

    code = "upload_locked"
    http_status = 423
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(max(1, retry_after_s))
