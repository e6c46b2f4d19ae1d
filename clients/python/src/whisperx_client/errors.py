"""Typed exceptions: every error the service answers carries its stable `code`.

The service answers every error as `{"error": {"code": "...", "message": "..."}}` with an HTTP
status (the codes are listed in whisperx-service's README, "API"). `ApiError` carries the code,
the message, the status and `Retry-After` (seconds) where the service sent one; its subclasses
sort errors by status so callers can catch a family (`NotFound`, `RateLimited`, ...) and still
read the exact `code`.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from whisperx_client.models import Job


class WhisperXError(Exception):
    """Base class of every error this package raises."""


class TransportError(WhisperXError):
    """The service could not be reached, or a connection broke and retrying did not help.

    `cause` is the underlying httpx exception's class name (e.g. `ConnectError`).
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class ProtocolError(WhisperXError):
    """The service answered something this client cannot read (not the documented shape)."""


class WaitTimeout(WhisperXError, TimeoutError):
    """`wait` gave up: the job had not ended within `timeout` seconds (the job goes on)."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} had not ended after {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class JobFailed(WhisperXError):
    """The job ended `failed` or `cancelled` where a succeeded job was needed.

    `job` is its final status; `code` and `message` are its error (`cancelled` for a cancelled job).
    """

    def __init__(self, job: Job) -> None:
        code = job.error.code if job.error else job.status
        message = job.error.message if job.error else f"the job ended {job.status}"
        super().__init__(f"job {job.id} {job.status}: {code}: {message}")
        self.job = job
        self.code = code
        self.message = message


class ApiError(WhisperXError):
    """An error answer of the service.

    Attributes:
        code: the stable error code (e.g. `unsupported_media`, `job_not_found`); `http_<status>`
            when the body is not the service's error shape (e.g. a proxy's 502 page).
        message: the service's human message.
        status: the HTTP status.
        retry_after: seconds to wait before retrying (`Retry-After`), when the service sent it.
    """

    def __init__(self, code: str, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400, 408, 413, 415, 422: the request or the file was refused (see `code`)."""


class AuthenticationError(ApiError):
    """401 `unauthorized`: no API key, or an unknown or revoked one."""


class PermissionDenied(ApiError):
    """403 `admin_only`: the route or filter needs an admin key."""


class NotFound(ApiError):
    """404 `job_not_found` (or `not_found`, no such route)."""


class Conflict(ApiError):
    """409: `job_not_finished` (no result yet), `job_finished` (cancel after the end), `job_running`."""


class RateLimited(ApiError):
    """429: `quota_exceeded`, `rate_limited` or `too_many_streams`; `retry_after` says when to retry."""


class ServerError(ApiError):
    """5xx: `internal_error`, `result_missing`, `service_unavailable`, `insufficient_storage`."""


def _error_class(status: int) -> type[ApiError]:
    """The `ApiError` subclass for an HTTP status."""
    exact: dict[int, type[ApiError]] = {
        401: AuthenticationError,
        403: PermissionDenied,
        404: NotFound,
        409: Conflict,
        429: RateLimited,
    }
    if status in exact:
        return exact[status]
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequest
    return ApiError


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delay-seconds or an HTTP-date (RFC 9110, section 10.2.3).

    Args:
        value: the header's value, or None.
        now: the current time (s since the epoch) for an HTTP-date; defaults to `time.time()`.
    Returns:
        Seconds (>= 0), or None when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error of an error response (status >= 400); the body must have been read.

    The body `{"error": {"code", "message"}}` gives the code and message; any other body gives
    code `http_<status>` and the status's reason phrase.
    """
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = json.loads(response.content)
        err = body["error"]
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            code = err["code"]
            message = str(err.get("message", ""))
    except (ValueError, KeyError, TypeError):
        pass
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return _error_class(response.status_code)(code, message, response.status_code, retry_after)
