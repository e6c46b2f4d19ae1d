"""One error root for the whole service.

    ServiceError (code, http_status, retryable)
     ├── NotFound                  404 job_not_found
     ├── JobNotFinished            409 job_not_finished
     ├── JobFinished               409 job_finished (cancel of an ended job)
     ├── JobRunning                409 job_running (purge of a running job)
     ├── PayloadTooLarge           413 payload_too_large
     ├── UnsupportedMediaType      415 unsupported_media_type
     ├── InvalidRequest            422 invalid_request
     ├── EmptyUpload               422 empty_upload
     ├── InvalidCursor             422 invalid_cursor
     ├── InsufficientStorage       507 insufficient_storage
     ├── ServiceUnavailable        503 service_unavailable
     └── PipelineError             (worker side; becomes a `failed` job, never an HTTP answer)
          ├── AudioDecodeFailed         audio_decode_failed
          ├── AudioTooLong              audio_too_long
          ├── ModelLoadFailed           model_load_failed
          └── (base)                    pipeline_failed

Routes never build HTTPException by hand: they raise one of these, and one exception handler
turns it into `{"error": {"code": ..., "message": ...}}` with `http_status`.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports with a stable code."""

    code: str = "internal_error"
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        """The error body: `{"code": ..., "message": ...}`."""
        return {"code": self.code, "message": self.message}


class NotFound(ServiceError):
    """The job does not exist (or is not visible to the caller)."""

    code = "job_not_found"
    http_status = 404


class JobNotFinished(ServiceError):
    """The result was asked for before the job succeeded."""

    code = "job_not_finished"
    http_status = 409


class JobFinished(ServiceError):
    """The job cannot be cancelled: it already ended (succeeded, failed or cancelled)."""

    code = "job_finished"
    http_status = 409


class JobRunning(ServiceError):
    """The job's data cannot be purged while a worker runs it (cancel it first)."""

    code = "job_running"
    http_status = 409


class PayloadTooLarge(ServiceError):
    """The upload is larger than MAX_UPLOAD_BYTES."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(ServiceError):
    """The upload is not audio or video."""

    code = "unsupported_media_type"
    http_status = 415


class InvalidRequest(ServiceError):
    """A malformed request: bad form fields, missing file, bad query."""

    code = "invalid_request"
    http_status = 422


class EmptyUpload(InvalidRequest):
    """The uploaded file has zero bytes."""

    code = "empty_upload"


class InvalidCursor(InvalidRequest):
    """The list cursor is not one this service returned."""

    code = "invalid_cursor"


class InsufficientStorage(ServiceError):
    """Storage ran out of space while writing the upload."""

    code = "insufficient_storage"
    http_status = 507
    retryable = True


class ServiceUnavailable(ServiceError):
    """A dependency (Redis, the broker) does not answer."""

    code = "service_unavailable"
    http_status = 503
    retryable = True


class PipelineError(ServiceError):
    """A job failed inside the worker; the job ends `failed` with this code and message."""

    code = "pipeline_failed"


class AudioDecodeFailed(PipelineError):
    """ffmpeg could not decode the source (not audio, corrupt, no audio stream)."""

    code = "audio_decode_failed"


class AudioTooLong(PipelineError):
    """The decoded audio is longer than MAX_DURATION_S."""

    code = "audio_too_long"


class ModelLoadFailed(PipelineError):
    """A model could not be loaded (missing directory, no network for a hub name, bad token)."""

    code = "model_load_failed"
