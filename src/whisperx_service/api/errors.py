"""Exception handlers: every error leaves the gateway as `{"error": {"code", "message"}}`.

The code and status come from the error tree (`whisperx_service.errors`); a message never carries
a server path or an exception's text (unexpected errors are logged, and answered with a fixed
message).

On the OpenAI-compatible routes (`OPENAI_PATHS`) the body is OpenAI's shape instead,
`{"error": {"message", "type", "param", "code"}}` (`code` is this service's code, `type` OpenAI's
class of error: `OPENAI_TYPES`), and a 422 is answered as 400: OpenAI's clients expect 400 for
every bad parameter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from whisperx_service.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ServiceError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from whisperx_service.logs import get_logger

log = get_logger(__name__)

#: Starlette's own HTTP errors (routing, body limits) -> the error class whose code they answer with.
_HTTP_ERRORS: dict[int, type[ServiceError]] = {
    404: RouteNotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}
#: Path prefixes whose errors take OpenAI's shape.
OPENAI_PATHS = ("/v1/audio/", "/v1/models")
#: HTTP status -> OpenAI's error `type` (from its API's error answers); anything else 4xx is
#: `invalid_request_error`, 5xx `server_error`.
OPENAI_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    """True for the OpenAI-compatible routes (`/v1/audio/*`, `/v1/models`)."""
    return path.startswith(OPENAI_PATHS)


def openai_error_response(
    code: str, message: str, status: int, *, param: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """OpenAI's error body `{"error": {"message", "type", "param", "code"}}`; 422 becomes 400."""
    status = 400 if status == 422 else status
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
        headers=headers,
    )


def error_response(
    error: type[ServiceError] | ServiceError,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
) -> JSONResponse:
    """The one error body: `{"error": {"code": error.code, "message": message}}`.

    Args:
        error: the error class (or instance) that gives the code and, unless `status`, the status.
        status: an HTTP status to answer with instead of `error.http_status`.
        request: the request answered; on an OpenAI-compatible route the body takes OpenAI's shape.
    """
    if request is not None and is_openai_path(request.url.path):
        return openai_error_response(
            error.code,
            message,
            status if status is not None else error.http_status,
            param=getattr(error, "param", None) if isinstance(error, ServiceError) else None,
            headers=headers,
        )
    return JSONResponse(
        {"error": {"code": error.code, "message": message}},
        status_code=status if status is not None else error.http_status,
        headers=headers,
    )


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.code, message=exc.message)
    return error_response(exc, exc.message, headers=exc.headers or None, request=request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(InvalidRequest, "; ".join(parts) or "invalid request", request=request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = _HTTP_ERRORS.get(exc.status_code, InternalError if exc.status_code >= 500 else InvalidRequest)
    return error_response(error, str(exc.detail), status=exc.status_code, headers=exc.headers, request=request)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_unavailable", error=str(exc))
    return error_response(ServiceUnavailable, "Redis does not answer; try again shortly", request=request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return error_response(InternalError, "internal server error", request=request)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: the error tree, validation, Starlette's HTTP errors, Redis down, anything else."""
    handlers: list[tuple[Any, Callable[[Request, Exception], Awaitable[JSONResponse]]]] = [
        (ServiceError, _service_error),
        (RequestValidationError, _validation_error),
        (StarletteHTTPException, _http_error),
        (redis.exceptions.ConnectionError, _redis_down),
        (redis.exceptions.TimeoutError, _redis_down),
        (redis.exceptions.ReadOnlyError, _redis_down),  # a replica during a failover
        (Exception, _unexpected),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)
