"""One error root for the whole service: every code a client can see is a class here.

HTTP answers (`{"error": {"code": ..., "message": ...}}` with the status):

    ServiceError                        500 internal_error       base; also an unexpected failure
     ├── InternalError                  500 internal_error       something failed that should not have
     ├── InvalidEventId                 400 invalid_event_id     a Last-Event-ID that is not a stream id in range
     ├── Unauthorized                   401 unauthorized         no key, a malformed, unknown or revoked key
     ├── AdminOnly                      403 admin_only           the route or filter needs an admin key
     ├── RouteNotFound                  404 not_found            no such route
     ├── JobNotFound                    404 job_not_found        no such job (or the id cannot be one)
     ├── MethodNotAllowed               405 method_not_allowed   the route exists, the method does not
     ├── JobNotFinished                 409 job_not_finished     result asked for before the job succeeded
     ├── JobFinished                    409 job_finished         cancel of a job that already ended
     ├── JobRunning                     409 job_running          purge of a job a worker runs
     ├── PayloadTooLarge                413 payload_too_large    upload over MAX_UPLOAD_BYTES
     ├── UnsupportedMediaType           415 unsupported_media_type  not multipart, or not audio/video
     ├── InvalidRequest                 422 invalid_request      bad form field, query or header
     │    ├── EmptyUpload               422 empty_upload         the file part has no bytes
     │    └── InvalidCursor             422 invalid_cursor       a list cursor this service did not make
     ├── QuotaExceeded                  429 quota_exceeded       a per-key quota is used up (the message names it)
     ├── RateLimited                    429 rate_limited         too many requests (or failed keys) per key or address
     ├── TooManyStreams                 429 too_many_streams     SSE_MAX_STREAMS_PER_KEY or SSE_MAX_STREAMS open streams
     ├── ResultMissing                  500 result_missing       the job succeeded but result.json is gone
     ├── ServiceUnavailable             503 service_unavailable  Redis or the broker does not answer
     ├── InsufficientStorage            507 insufficient_storage the disk is full
     └── JobFailure                         pipeline_failed      a job failed (its `error.code`; never an HTTP answer)
          ├── AudioDecodeFailed             audio_decode_failed  ffmpeg cannot decode the file
          │    └── FfmpegMissing            ffmpeg_missing       no ffmpeg on the worker
          ├── AudioTooLong                  audio_too_long       longer than MAX_DURATION_S
          ├── ModelLoadFailed               model_load_failed    a model cannot be loaded
          ├── LanguageNotSupported          language_not_supported  English-only model, another language asked
          ├── TimeLimit                     time_limit           ran past WORKER_TASK_SOFT_TIME_LIMIT_S
          ├── WorkerLost                    worker_lost          its workers died WORKER_MAX_ATTEMPTS times
          └── JobCrashed                    job_crashed          an unexpected error in the worker (see its log)

Routes never build HTTPException by hand: they raise one of these, and one exception handler
(`api/errors.py`) turns it into the error body with `http_status`. The pipeline raises only
`JobFailure` subclasses; the store raises none of these (plain `ValueError` for a bad cursor).
A message never carries a server path or an exception's text.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports with a stable code (500 `internal_error`)."""

    code: str = "internal_error"
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: HTTP headers the answer carries (e.g. `WWW-Authenticate`, `Retry-After`).
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, str]:
        """The error body: `{"code": ..., "message": ...}`."""
        return {"code": self.code, "message": self.message}


class InternalError(ServiceError):
    """Something failed that should not have; the details are in the gateway's log."""


class InvalidEventId(ServiceError):
    """A `Last-Event-ID` (or `?last_event_id=`) that is not a whole stream id `<ms>-<seq>` in range."""

    code = "invalid_event_id"
    http_status = 400


class Unauthorized(ServiceError):
    """No API key, or a malformed, unknown or revoked one; the answer asks for a Bearer key."""

    code = "unauthorized"
    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["WWW-Authenticate"] = "Bearer"


class AdminOnly(ServiceError):
    """The route (`/metrics`) or filter (`?owner=`) needs an admin key."""

    code = "admin_only"
    http_status = 403


class RouteNotFound(ServiceError):
    """No route matches the path."""

    code = "not_found"
    http_status = 404


class JobNotFound(ServiceError):
    """The job does not exist (or is not visible to the caller)."""

    code = "job_not_found"
    http_status = 404


class MethodNotAllowed(ServiceError):
    """The route exists but not with this HTTP method."""

    code = "method_not_allowed"
    http_status = 405


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
    """The body is not multipart/form-data, or the upload is not audio or video."""

    code = "unsupported_media_type"
    http_status = 415


class InvalidRequest(ServiceError):
    """A malformed request: bad form fields, missing file, bad query or header."""

    code = "invalid_request"
    http_status = 422


class EmptyUpload(InvalidRequest):
    """The uploaded file has zero bytes."""

    code = "empty_upload"


class InvalidCursor(InvalidRequest):
    """The list cursor is not one this service returned."""

    code = "invalid_cursor"


class QuotaExceeded(ServiceError):
    """A per-key quota is used up; `quota` names it, `retry_after_s` says when to try again."""

    code = "quota_exceeded"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, quota: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.quota = quota
        self.headers["Retry-After"] = str(max(1, retry_after_s))


class RateLimited(ServiceError):
    """Too many requests, or failed authentications, from one key or address."""

    code = "rate_limited"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(max(1, retry_after_s))


class TooManyStreams(ServiceError):
    """This gateway process holds as many event streams as allowed, for the key or in total.

    `Retry-After` (s) says when to try again; streams end when their job ends or their client leaves.
    """

    code = "too_many_streams"
    http_status = 429
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(max(1, retry_after_s))


class ResultMissing(ServiceError):
    """The job succeeded but its `result.json` is gone from storage."""

    code = "result_missing"


class ServiceUnavailable(ServiceError):
    """A dependency (Redis, the broker) does not answer."""

    code = "service_unavailable"
    http_status = 503
    retryable = True


class InsufficientStorage(ServiceError):
    """Storage ran out of space while writing the upload."""

    code = "insufficient_storage"
    http_status = 507
    retryable = True


class JobFailure(ServiceError):
    """A job failed in the worker: it ends `failed` with this code and message (never an HTTP answer)."""

    code = "pipeline_failed"


class AudioDecodeFailed(JobFailure):
    """ffmpeg could not decode the source (not audio, corrupt, no audio stream)."""

    code = "audio_decode_failed"


class FfmpegMissing(AudioDecodeFailed):
    """ffmpeg is not installed on the worker."""

    code = "ffmpeg_missing"


class AudioTooLong(JobFailure):
    """The decoded audio is longer than MAX_DURATION_S."""

    code = "audio_too_long"


class ModelLoadFailed(JobFailure):
    """A model could not be loaded (missing directory, no network for a hub name, bad token)."""

    code = "model_load_failed"


class LanguageNotSupported(JobFailure):
    """The ASR model is English-only and another language was asked for."""

    code = "language_not_supported"


class TimeLimit(JobFailure):
    """The job ran longer than WORKER_TASK_SOFT_TIME_LIMIT_S."""

    code = "time_limit"


class WorkerLost(JobFailure):
    """The job's workers died WORKER_MAX_ATTEMPTS times (the store's Lua scripts write this code)."""

    code = "worker_lost"


class JobCrashed(JobFailure):
    """An unexpected error in the worker; the exception is in the worker's log, never in the job."""

    code = "job_crashed"


def all_codes() -> dict[str, type[ServiceError]]:
    """Every code of the tree -> its class (the most specific class for a shared code).

    Returns:
        A dict, ordered as the classes are defined.
    """
    out: dict[str, type[ServiceError]] = {}
    stack: list[type[ServiceError]] = [ServiceError]
    while stack:
        cls = stack.pop(0)
        out[cls.code] = cls
        stack += cls.__subclasses__()
    return out
