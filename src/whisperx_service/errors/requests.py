"""Errors of a request, answered by the gateway with their HTTP status (4xx, 503, 507)."""

from __future__ import annotations

from whisperx_service.errors.base import ServiceError


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


class InvalidSpeakerNames(ServiceError):
    """The `speaker_names` of a result request is malformed: not a JSON object of label -> name, a
    label the transcript does not have, an empty or over-long name, or two speakers given one name."""

    code = "invalid_speaker_names"
    http_status = 400


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


class JobNotSucceeded(ServiceError):
    """A stage was asked of an earlier job that did not succeed (`POST /v1/jobs/{id}/rediarize` of
    a queued, running, failed or cancelled job): there are no words to reuse yet, or none at all."""

    code = "job_not_succeeded"
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


class TranscriptRequired(InvalidRequest):
    """`task=align` without a `transcript` field."""

    code = "transcript_required"


class InvalidTranscript(InvalidRequest):
    """The `transcript` field is neither words nor JSON with timed segments (`domain/script.py`)."""

    code = "invalid_transcript"


class TranscriptTooLong(ServiceError):
    """The `transcript` field is longer than MAX_TRANSCRIPT_BYTES."""

    code = "transcript_too_long"
    http_status = 413


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


class AudioMissing(ServiceError):
    """The job exists but its uploaded audio (`source`) is gone from storage."""

    code = "audio_missing"


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
