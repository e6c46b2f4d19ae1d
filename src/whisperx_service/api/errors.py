"""Exception handlers: every error leaves the gateway as `{"error": {"code", "message"}}`.

The code and status come from the error tree (`whisperx_service.errors`); a message never carries
a server path or an exception's text (unexpected errors are logged, and answered with a fixed
message).
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


def error_response(
    error: type[ServiceError] | ServiceError,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error body: `{"error": {"code": error.code, "message": message}}`.

    Args:
        error: the error class (or instance) that gives the code and, unless `status`, the status.
        status: an HTTP status to answer with instead of `error.http_status`.
    """
    return JSONResponse(
        {"error": {"code": error.code, "message": message}},
        status_code=status if status is not None else error.http_status,
        headers=headers,
    )


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.code, message=exc.message)
    return error_response(exc, exc.message, headers=exc.headers or None)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(InvalidRequest, "; ".join(parts) or "invalid request")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = _HTTP_ERRORS.get(exc.status_code, InternalError if exc.status_code >= 500 else InvalidRequest)
    return error_response(error, str(exc.detail), status=exc.status_code, headers=exc.headers)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_unavailable", error=str(exc))
    return error_response(ServiceUnavailable, "Redis does not answer; try again shortly")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return error_response(InternalError, "internal server error")


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
