"""One error root for the whole service: every code a client can see is a class here.

HTTP answers (`{"error": {"code": ..., "message": ...}}` with the status):

    ServiceError                        500 internal_error       base; also an unexpected failure
     ├── InternalError                  500 internal_error       something failed that should not have
     ├── InvalidEventId                 400 invalid_event_id     a Last-Event-ID that is not a stream id in range
     ├── Unauthorized                   401 unauthorized         no key, a malformed, unknown or revoked key
     ├── AdminOnly                      403 admin_only           the route or filter needs an admin key
     ├── MalformedMultipart             400 malformed_multipart  the body is not valid multipart (boundary, framing)
     ├── InvalidParameter               400 invalid_parameter    a bad parameter of an OpenAI-compatible route
     ├── Unsupported                    400 unsupported          an OpenAI parameter this service does not offer
     ├── RouteNotFound                  404 not_found            no such route
     ├── ModelNotFound                  404 model_not_found      GET /v1/models/{id} of a model no worker serves
     ├── JobNotFound                    404 job_not_found        no such job (or the id cannot be one)
     ├── MethodNotAllowed               405 method_not_allowed   the route exists, the method does not
     ├── UploadTimeout                  408 upload_timeout       the client sent nothing for UPLOAD_IDLE_TIMEOUT_S
     ├── JobNotFinished                 409 job_not_finished     result asked for before the job succeeded
     ├── JobFinished                    409 job_finished         cancel of a job that already ended
     ├── JobRunning                     409 job_running          purge of a job a worker runs
     ├── JobCancelled                   409 job_cancelled        an OpenAI request's job was cancelled before it ended
     ├── IdempotencyConflict            409 idempotency_conflict the Idempotency-Key was used with other content
     ├── IdempotencyInProgress          409 idempotency_in_progress  the first request with the key still uploads
     ├── PayloadTooLarge                413 payload_too_large    upload over MAX_UPLOAD_BYTES
     ├── UnsupportedMediaType           415 unsupported_media_type  the request body is not multipart/form-data
     ├── UnsupportedMedia               415 unsupported_media    the file is not audio/video of an allowed format
     ├── InvalidRequest                 422 invalid_request      bad form field, query or header
     │    ├── EmptyUpload               422 empty_upload         the file part has no bytes
     │    └── InvalidCursor             422 invalid_cursor       a list cursor this service did not make
     ├── QuotaExceeded                  429 quota_exceeded       a per-key quota is used up (the message names it)
     ├── RateLimited                    429 rate_limited         too many requests (or failed keys) per key or address
     ├── TooManyStreams                 429 too_many_streams     SSE_MAX_STREAMS_PER_KEY or SSE_MAX_STREAMS open streams
     ├── ResultMissing                  500 result_missing       the job succeeded but result.json is gone
     ├── ServiceUnavailable             503 service_unavailable  Redis does not answer
     ├── InsufficientStorage            507 insufficient_storage the disk is full
     └── JobFailure                         pipeline_failed      a job failed (its `error.code`; never an HTTP answer)
          ├── AudioDecodeFailed             audio_decode_failed  ffmpeg cannot decode the file
          │    └── FfmpegMissing            ffmpeg_missing       no ffmpeg on the worker
          ├── AudioTooLong              413 audio_too_long       longer than MAX_DURATION_S (at upload: 413; in the
          │                                                      worker: the failed job's code)
          ├── ModelLoadFailed               model_load_failed    a model cannot be loaded
          ├── LanguageNotSupported          language_not_supported  English-only model, another language asked
          ├── TranslationNotSupported   400 translation_not_supported  English-only model, translation asked (at
          │                                                      the gateway: 400; in the worker: the job's code)
          ├── TimeLimit                     time_limit           ran past WORKER_TASK_SOFT_TIME_LIMIT_S
          ├── WorkerLost                    worker_lost          its workers died WORKER_MAX_ATTEMPTS times
          └── JobCrashed                    job_crashed          an unexpected error in the worker (see its log)

Routes never build HTTPException by hand: they raise one of these, and one exception handler
(`api/errors.py`) turns it into the error body with `http_status`. The pipeline raises only
`JobFailure` subclasses; the store raises none of these (plain `ValueError` for a bad cursor).
A message never carries a server path or an exception's text. A job failure's message is fixed
per code (`public_message`); the detailed message goes to the worker's log with the job id.
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


class MalformedMultipart(ServiceError):
    """The body is not valid multipart/form-data: no boundary, a boundary that breaks RFC 2046
    (1-70 characters of its `bchars`), broken framing, or a body that ends before its closing
    boundary."""

    code = "malformed_multipart"
    http_status = 400


class InvalidParameter(ServiceError):
    """A parameter of an OpenAI-compatible route (`/v1/audio/*`) is malformed: an unknown
    `response_format`, a bad `timestamp_granularities[]`, a non-number `temperature`. OpenAI's
    clients expect 400 here, not 422; `param` names the parameter."""

    code = "invalid_parameter"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unsupported(ServiceError):
    """An OpenAI parameter this service accepts by name but does not offer (`known_speaker_names[]`,
    `known_speaker_references[]`); `param` names it."""

    code = "unsupported"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class RouteNotFound(ServiceError):
    """No route matches the path."""

    code = "not_found"
    http_status = 404


class JobNotFound(ServiceError):
    """The job does not exist (or is not visible to the caller)."""

    code = "job_not_found"
    http_status = 404


class ModelNotFound(ServiceError):
    """`GET /v1/models/{id}` of a model the service does not serve."""

    code = "model_not_found"
    http_status = 404


class MethodNotAllowed(ServiceError):
    """The route exists but not with this HTTP method."""

    code = "method_not_allowed"
    http_status = 405


class UploadTimeout(ServiceError):
    """The client sent no bytes of its upload for UPLOAD_IDLE_TIMEOUT_S seconds."""

    code = "upload_timeout"
    http_status = 408


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


class JobCancelled(ServiceError):
    """The job an OpenAI-compatible request waited on was cancelled (`DELETE /v1/jobs/{id}`, or
    every request waiting on it disconnected) before it ended."""

    code = "job_cancelled"
    http_status = 409


class IdempotencyConflict(ServiceError):
    """The `Idempotency-Key` was used before by the same API key with other content (another
    file, other fields, or another route); the answer says not to retry (`x-should-retry: false`)."""

    code = "idempotency_conflict"
    http_status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["x-should-retry"] = "false"


class IdempotencyInProgress(ServiceError):
    """A request with the same `Idempotency-Key` is still uploading; retry after `Retry-After` (s),
    when the first request's job exists and the retry gets its answer."""

    code = "idempotency_in_progress"
    http_status = 409
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(max(1, retry_after_s))


class PayloadTooLarge(ServiceError):
    """The upload is larger than MAX_UPLOAD_BYTES."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(ServiceError):
    """The request body is not multipart/form-data."""

    code = "unsupported_media_type"
    http_status = 415


class UnsupportedMedia(ServiceError):
    """The uploaded file is not audio or video in an allowed container format, or has no audio
    stream (libmagic on its first bytes, then ffprobe on the whole file)."""

    code = "unsupported_media"
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
    """Redis does not answer (a broker that does not answer only delays a held job)."""

    code = "service_unavailable"
    http_status = 503
    retryable = True


class InsufficientStorage(ServiceError):
    """Storage ran out of space while writing the upload."""

    code = "insufficient_storage"
    http_status = 507
    retryable = True


class JobFailure(ServiceError):
    """A job failed in the worker: it ends `failed` with this code and `public_message`.

    Never an HTTP answer, except a subclass that sets its own `http_status` (`AudioTooLong`). The
    message given at the raise site may name paths or carry an exception's text: it goes to the
    worker's log only; the job's error carries `public_message`, fixed per code.
    """

    code = "pipeline_failed"
    public_message = "the job failed in the worker"


class AudioDecodeFailed(JobFailure):
    """ffmpeg could not decode the source (not audio, corrupt, no audio stream)."""

    code = "audio_decode_failed"
    public_message = "the file cannot be decoded as audio (not audio, corrupt, or no audio stream)"


class FfmpegMissing(AudioDecodeFailed):
    """ffmpeg is not installed on the worker."""

    code = "ffmpeg_missing"
    public_message = "ffmpeg is not installed on the worker"


class AudioTooLong(JobFailure):
    """The audio is longer than MAX_DURATION_S: 413 at upload (ffprobe's duration), or the failed
    job's code when the decoded audio turns out longer."""

    code = "audio_too_long"
    http_status = 413
    public_message = "the audio is longer than the service's limit (MAX_DURATION_S)"


class ModelLoadFailed(JobFailure):
    """A model could not be loaded (missing directory, no network for a hub name, bad token)."""

    code = "model_load_failed"
    public_message = "a model cannot be loaded on the worker (see the worker's log)"


class LanguageNotSupported(JobFailure):
    """The ASR model is English-only and another language was asked for."""

    code = "language_not_supported"
    public_message = "the ASR model is English-only; another language was asked for"


class TranslationNotSupported(JobFailure):
    """A translation was asked of an English-only ASR model: 400 at the gateway when it knows the
    model (ASR_MODEL, or ASR_DEVICE=cpu with the packaged `tiny.en`), else the failed job's code."""

    code = "translation_not_supported"
    http_status = 400
    public_message = "the ASR model is English-only; translation needs a multilingual model"


class TimeLimit(JobFailure):
    """The job ran longer than WORKER_TASK_SOFT_TIME_LIMIT_S."""

    code = "time_limit"
    public_message = "the job ran longer than the worker's time limit"


class WorkerLost(JobFailure):
    """The job's workers died WORKER_MAX_ATTEMPTS times (the store's Lua scripts write this code)."""

    code = "worker_lost"
    public_message = "the job's workers died too many times"


class JobCrashed(JobFailure):
    """An unexpected error in the worker; the exception is in the worker's log, never in the job."""

    code = "job_crashed"
    public_message = "an unexpected error in the worker (see the worker's log)"


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
