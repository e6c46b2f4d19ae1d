"""One error root for the whole service: every code a client can see is a class here.

HTTP answers (`{"error": {"code": ..., "message": ...}}` with the status):

    ServiceError                        500 internal_error       base; also an unexpected failure
     ├── InternalError                  500 internal_error       something failed that should not have
     ├── InvalidEventId                 400 invalid_event_id     a Last-Event-ID that is not a stream id in range
     ├── Unauthorized                   401 unauthorized         no key, a malformed, unknown or revoked key
     ├── AdminOnly                      403 admin_only           the route or filter needs an admin key
     ├── MalformedMultipart             400 malformed_multipart  the body is not valid multipart (boundary, framing)
     ├── InvalidParameter               400 invalid_parameter    a bad parameter of an OpenAI-compatible route
     ├── InvalidSpeakerNames            400 invalid_speaker_names  a malformed `speaker_names` of a result request
     ├── Unsupported                    400 unsupported          an OpenAI parameter this service does not offer
     ├── RouteNotFound                  404 not_found            no such route
     ├── ModelNotFound                  404 model_not_found      GET /v1/models/{id} of a model no worker serves
     ├── JobNotFound                    404 job_not_found        no such job (or the id cannot be one)
     ├── UploadNotFound                 404 upload_not_found     no such resumable upload (or another key's)
     ├── MethodNotAllowed               405 method_not_allowed   the route exists, the method does not
     ├── UploadTimeout                  408 upload_timeout       the client sent nothing for UPLOAD_IDLE_TIMEOUT_S
     ├── JobNotFinished                 409 job_not_finished     result asked for before the job succeeded
     ├── JobNotSucceeded                409 job_not_succeeded    a stage asked of an earlier job that did not succeed
     ├── JobFinished                    409 job_finished         cancel of a job that already ended
     ├── JobRunning                     409 job_running          purge of a job a worker runs
     ├── JobCancelled                   409 job_cancelled        an OpenAI request's job was cancelled before it ended
     ├── IdempotencyConflict            409 idempotency_conflict the Idempotency-Key was used with other content
     ├── IdempotencyInProgress          409 idempotency_in_progress  the first request with the key still uploads
     ├── UploadOffsetMismatch           409 upload_offset_mismatch  a tus PATCH at another offset than the upload's
     ├── UploadIncomplete               409 upload_incomplete    a job asked of an upload that has not all its bytes
     ├── UploadExpired                  410 upload_expired       the upload passed its Upload-Expires (UPLOAD_EXPIRY_S)
     ├── TusVersionUnsupported          412 tus_version_unsupported  a tus request without Tus-Resumable: 1.0.0
     ├── PayloadTooLarge                413 payload_too_large    upload over MAX_UPLOAD_BYTES
     ├── TranscriptTooLong              413 transcript_too_long  an align job's transcript over MAX_TRANSCRIPT_BYTES
     ├── UnsupportedMediaType           415 unsupported_media_type  the body is not multipart/form-data (a tus PATCH:
     │                                                      not application/offset+octet-stream)
     ├── UnsupportedMedia               415 unsupported_media    the file is not audio/video of an allowed format
     ├── UploadLocked                   423 upload_locked        another request still writes to this upload
     ├── InvalidRequest                 422 invalid_request      bad form field, query or header
     │    ├── EmptyUpload               422 empty_upload         the file part has no bytes
     │    ├── TranscriptRequired        422 transcript_required  task=align without a transcript
     │    ├── InvalidTranscript         422 invalid_transcript   a transcript that is neither words nor timed JSON
     │    └── InvalidCursor             422 invalid_cursor       a list cursor this service did not make
     ├── QuotaExceeded                  429 quota_exceeded       a per-key quota is used up (the message names it)
     ├── RateLimited                    429 rate_limited         too many requests (or failed keys) per key or address
     ├── TooManyStreams                 429 too_many_streams     SSE_MAX_STREAMS_PER_KEY or SSE_MAX_STREAMS open streams
     ├── ResultMissing                  500 result_missing       the job succeeded but result.json is gone
     ├── AudioMissing                   500 audio_missing        the job's uploaded audio is gone from storage
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
          ├── JobCrashed                    job_crashed          an unexpected error in the worker (see its log)
          ├── UrlUnreachable                url_unreachable      the source URL could not be fetched (`url` input)
          │    └── UrlRefused               url_refused          the source URL leads to a private or reserved address
          └── UrlTooLarge                   url_too_large        the file at the source URL is over MAX_UPLOAD_BYTES

A job submitted with `url` that fails at its fetch ends `failed` with one of the `url_*` codes, or
with `unsupported_media`, `audio_too_long` or `insufficient_storage` (the upload's checks).

Routes never build HTTPException by hand: they raise one of these, and one exception handler
(`api/errors.py`) turns it into the error body with `http_status`. The pipeline raises only
`JobFailure` subclasses; the store raises none of these (plain `ValueError` for a bad cursor).
A message never carries a server path or an exception's text. A job failure's message is fixed
per code (`public_message`); the detailed message goes to the worker's log with the job id.
"""

from __future__ import annotations

from whisperx_service.errors.base import InternalError, ServiceError, all_codes
from whisperx_service.errors.jobs import (
    AudioDecodeFailed,
    AudioTooLong,
    FfmpegMissing,
    JobCrashed,
    JobFailure,
    LanguageNotSupported,
    ModelLoadFailed,
    TimeLimit,
    TranslationNotSupported,
    UrlRefused,
    UrlTooLarge,
    UrlUnreachable,
    WorkerLost,
)
from whisperx_service.errors.requests import (
    AdminOnly,
    AudioMissing,
    EmptyUpload,
    IdempotencyConflict,
    IdempotencyInProgress,
    InsufficientStorage,
    InvalidCursor,
    InvalidEventId,
    InvalidParameter,
    InvalidRequest,
    InvalidSpeakerNames,
    InvalidTranscript,
    JobCancelled,
    JobFinished,
    JobNotFinished,
    JobNotFound,
    JobNotSucceeded,
    JobRunning,
    MalformedMultipart,
    MethodNotAllowed,
    ModelNotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ResultMissing,
    RouteNotFound,
    ServiceUnavailable,
    TooManyStreams,
    TranscriptRequired,
    TranscriptTooLong,
    Unauthorized,
    Unsupported,
    UnsupportedMedia,
    UnsupportedMediaType,
    UploadTimeout,
)
from whisperx_service.errors.uploads import (
    TUS_VERSION,
    TusVersionUnsupported,
    UploadExpired,
    UploadIncomplete,
    UploadLocked,
    UploadNotFound,
    UploadOffsetMismatch,
)

__all__ = [
    "TUS_VERSION",
    "AdminOnly",
    "AudioDecodeFailed",
    "AudioMissing",
    "AudioTooLong",
    "EmptyUpload",
    "FfmpegMissing",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "InsufficientStorage",
    "InternalError",
    "InvalidCursor",
    "InvalidEventId",
    "InvalidParameter",
    "InvalidRequest",
    "InvalidSpeakerNames",
    "InvalidTranscript",
    "JobCancelled",
    "JobCrashed",
    "JobFailure",
    "JobFinished",
    "JobNotFinished",
    "JobNotFound",
    "JobNotSucceeded",
    "JobRunning",
    "LanguageNotSupported",
    "MalformedMultipart",
    "MethodNotAllowed",
    "ModelLoadFailed",
    "ModelNotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RateLimited",
    "ResultMissing",
    "RouteNotFound",
    "ServiceError",
    "ServiceUnavailable",
    "TimeLimit",
    "TooManyStreams",
    "TranscriptRequired",
    "TranscriptTooLong",
    "TranslationNotSupported",
    "TusVersionUnsupported",
    "Unauthorized",
    "Unsupported",
    "UnsupportedMedia",
    "UnsupportedMediaType",
    "UploadExpired",
    "UploadIncomplete",
    "UploadLocked",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "UploadTimeout",
    "UrlRefused",
    "UrlTooLarge",
    "UrlUnreachable",
    "WorkerLost",
    "all_codes",
]
