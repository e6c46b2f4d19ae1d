"""The HTTP gateway: `create_app(settings)` builds the FastAPI app; `app_factory()` is for uvicorn.

    uvicorn --factory whisperx_service.api.app:app_factory

The lifespan opens the async Redis client, the job store, the storage and the Celery app (used
only to enqueue; the gateway never runs tasks and never imports torch). Every error leaves as
`{"error": {"code": ..., "message": ...}}` with a stable code (see `errors.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
import structlog
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from whisperx_service.api.routes import events, health, jobs, results
from whisperx_service.config import Settings, get_settings
from whisperx_service.errors import ServiceError
from whisperx_service.logs import configure_logging, get_logger
from whisperx_service.storage.local import Storage
from whisperx_service.store.jobs import AsyncJobStore
from whisperx_service.store.keys import Keys

log = get_logger(__name__)

#: Seconds to wait for a TCP connection to Redis before the request answers 503.
REDIS_CONNECT_TIMEOUT_S = 2.0
#: Times a Redis command is sent again after a connection error. After Redis restarts, each pooled
#: connection fails its next command once ("Connection closed by server"); the retry reconnects,
#: so no request answers 503 for a Redis that is up. (`from_url` clients get no retry otherwise.)
REDIS_RETRIES = 1

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error body: `{"error": {"code": ..., "message": ...}}` with `status`."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.http_status >= 500:
        log.warning("request_failed", code=exc.code, message=exc.message)
    return error_response(exc.http_status, exc.code, exc.message)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "invalid_request")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_unavailable", error=str(exc))
    return error_response(503, "service_unavailable", "Redis does not answer; try again shortly")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


class _RequestContext:
    """Pure ASGI middleware: fresh log context per request (method, path; routes add job_id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(method=scope["method"], path=scope["path"])
        await self.app(scope, receive, send)


def _init_sentry(settings: Settings) -> None:
    obs = settings.observability
    if obs.sentry_dsn:
        import sentry_sdk

        sentry_sdk.init(dsn=obs.sentry_dsn, environment=obs.sentry_environment)


def create_app(settings: Settings, *, celery: Celery | None = None) -> FastAPI:
    """Build the gateway.

    Args:
        settings: all settings; nothing is read from the environment here.
        celery: the Celery app to enqueue with; None = `make_celery(settings)` at startup.
    Returns:
        The FastAPI app; its lifespan connects Redis and fills `app.state`
        (settings, redis, jobs, storage, celery, sse_clients).
    """
    configure_logging(settings)
    _init_sentry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(
            settings.redis.url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            # Above the SSE route's XREAD BLOCK time, or a blocked read times out (redis-py >= 6: 5 s).
            socket_timeout=settings.api.sse_block_ms / 1000 + 10,
            socket_keepalive=True,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
        )
        app.state.redis = client
        app.state.jobs = AsyncJobStore(
            client, Keys(settings.redis.key_prefix), events_maxlen=settings.redis.events_maxlen
        )
        app.state.storage = Storage(settings.storage.root)
        if celery is None:
            from whisperx_service.worker.celery_app import make_celery

            app.state.celery = make_celery(settings)
        else:
            app.state.celery = celery
        app.state.sse_clients = 0
        log.info("gateway_started", storage=str(settings.storage.root))
        reconciler = None
        if settings.api.reconcile_interval_s > 0:
            from whisperx_service.api.reconciler import run_forever

            reconciler = asyncio.create_task(run_forever(app.state.jobs, app.state.celery, settings))
        try:
            yield
        finally:
            if reconciler is not None:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconciler
            await client.aclose()

    app = FastAPI(
        title="whisperx-service",
        summary="Speech-to-text jobs: streamed uploads, live progress over SSE, results as JSON/SRT/VTT/TXT/TSV.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(_RequestContext)

    handlers: list[tuple[Any, Callable[[Request, Exception], Awaitable[JSONResponse]]]] = [
        (ServiceError, _service_error),
        (RequestValidationError, _validation_error),
        (StarletteHTTPException, _http_error),
        (redis.exceptions.ConnectionError, _redis_down),
        (redis.exceptions.TimeoutError, _redis_down),
        (Exception, _unexpected),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)

    for module in (jobs, events, results, health):
        app.include_router(module.router)
    return app


def app_factory() -> FastAPI:
    """The app built from `get_settings()` (environment and `.env`); for `uvicorn --factory`."""
    return create_app(get_settings())
