"""Errors that end a job `failed` in the worker (`JobFailure`), each with a fixed public message."""

from __future__ import annotations

from whisperx_service.errors.base import ServiceError


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


class UrlUnreachable(JobFailure):
    """The job's source URL could not be fetched: no answer, a refused connection, a timeout, an
    error status, too many redirects, or the fetch failed on every try (`url` on POST /v1/jobs)."""

    code = "url_unreachable"
    public_message = "the source URL could not be fetched (no answer, an error status, a timeout or a redirect loop)"


class UrlRefused(UrlUnreachable):
    """The source URL (or a redirect) leads to an address the service does not connect to:
    loopback, private, link-local, multicast, reserved (OUTBOUND_ALLOW_PRIVATE is off)."""

    code = "url_refused"
    public_message = "the source URL leads to an address the service does not fetch from (private or reserved)"


class UrlTooLarge(JobFailure):
    """The file at the source URL is over MAX_UPLOAD_BYTES (announced, or counted while streaming)."""

    code = "url_too_large"
    public_message = "the file at the source URL is larger than the upload limit (MAX_UPLOAD_BYTES)"
