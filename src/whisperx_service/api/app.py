"""The HTTP gateway: `create_app(settings)` builds the FastAPI app; `app_factory()` is for uvicorn.

    uvicorn --factory whisperx_service.api.app:app_factory

The lifespan opens the async Redis client, the job store, the storage and the Celery app (used
only to send tasks; the gateway never runs tasks and never imports torch), starts the
reconciler and the dispatcher (`maintenance/`) and, when METRICS_ADDRESS is set, the keyless
metrics listener (`metrics.py`). Every error leaves as
`{"error": {"code": ..., "message": ...}}` with a stable code (see `errors.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import structlog
from celery import Celery
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from whisperx_service.access.keys import KeyResolver
from whisperx_service.access.limits import RequestLimiter
from whisperx_service.api.auth import is_loopback
from whisperx_service.api.errors import install_error_handlers
from whisperx_service.api.event_hub import EventHub
from whisperx_service.api.gc_tuning import tune_gc
from whisperx_service.api.metrics import MetricsListener
from whisperx_service.api.routes import (
    audio,
    events,
    health,
    jobs,
    languages,
    openai,
    results,
    stages,
    uploads,
    webhooks,
)
from whisperx_service.api.routes.web import install_web
from whisperx_service.api.tus import TUS_ANSWER_HEADERS, TUS_REQUEST_HEADERS
from whisperx_service.config import Settings, get_settings
from whisperx_service.logs import configure_logging, get_logger, init_sentry
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.idempotency import IdempotencyStore
from whisperx_service.store.keys import Keys

log = get_logger(__name__)

#: Seconds to wait for a TCP connection to Redis before the request answers 503.
REDIS_CONNECT_TIMEOUT_S = 2.0
#: Times a Redis command is sent again after a connection error. After Redis restarts, each pooled
#: connection fails its next command once ("Connection closed by server"); the retry reconnects,
#: so no request answers 503 for a Redis that is up. (`from_url` clients get no retry otherwise.)
REDIS_RETRIES = 1
#: Seconds a request's Redis command may take before it fails (answered as 503); request handling
#: sends no blocking command.
REDIS_SOCKET_TIMEOUT_S = 10.0
#: Connections of a short-command pool (requests; the event streams' backlog reads). A burst beyond
#: it waits up to REDIS_POOL_WAIT_S for a free connection instead of failing.
REDIS_POOL_MAX = 64
#: Seconds a command waits for a free pooled connection before it fails (answered as 503).
REDIS_POOL_WAIT_S = 5.0


class _RequestContext:
    """Pure ASGI middleware: fresh log context per request (method, path; routes add job_id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(method=scope["method"], path=scope["path"])
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, celery: Celery | None = None) -> FastAPI:
    """Build the gateway.

    Args:
        settings: all settings; nothing is read from the environment here.
        celery: the Celery app to enqueue with; None = `make_celery(settings)` at startup.
    Returns:
        The FastAPI app; its lifespan connects Redis and fills `app.state`
        (settings, redis, jobs, storage, celery, keys, limiter, events, dispatch_wake) and starts the
        reconciler and the dispatcher loops (maintenance/).
    Raises:
        ValueError: AUTH_ENABLED is false and API_HOST is not a loopback address.
    """
    if not settings.auth.enabled and not is_loopback(settings.api.host):
        raise ValueError(
            f"AUTH_ENABLED=false is allowed only on a loopback address, not API_HOST={settings.api.host!r}"
        )
    configure_logging(settings)
    init_sentry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = _redis_client(settings, socket_timeout_s=REDIS_SOCKET_TIMEOUT_S, max_connections=REDIS_POOL_MAX)
        # Event streams get clients (and connection pools) of their own, so they never hold a
        # request's connection: one for the readers' XREAD BLOCK (one connection per watched job,
        # a socket timeout above the block time), one for their short reads.
        blocking_client = _redis_client(
            settings,
            socket_timeout_s=settings.api.sse_block_ms / 1000 + 10,
            max_connections=settings.limits.sse_max_streams,
        )
        events_client = _redis_client(settings, socket_timeout_s=REDIS_SOCKET_TIMEOUT_S, max_connections=REDIS_POOL_MAX)
        app.state.events = EventHub(
            AsyncJobStore.from_settings(blocking_client, settings),
            AsyncJobStore.from_settings(events_client, settings),
            block_ms=settings.api.sse_block_ms,
            max_streams=settings.limits.sse_max_streams,
            max_streams_per_key=settings.limits.sse_max_streams_per_key,
        )
        app.state.redis = client
        app.state.jobs = AsyncJobStore.from_settings(client, settings)
        app.state.storage = Storage(settings.storage.root)
        app.state.keys = KeyResolver(client, settings)
        app.state.idempotency = IdempotencyStore(client, Keys.of(settings))
        app.state.background = set()  # tasks that outlive their request (OpenAI disconnect cancels)
        app.state.limiter = RequestLimiter(settings, client)
        if celery is None:
            from whisperx_service.broker.celery_app import make_celery

            app.state.celery = make_celery(settings)
        else:
            app.state.celery = celery
        listener = MetricsListener(settings, app.state.jobs, app.state.events)
        listener.start()  # METRICS_ADDRESS, when set; an address that cannot be bound stops the start
        log.info("gateway_started", storage=str(settings.storage.root))
        app.state.dispatch_wake = asyncio.Event()
        loops: list[asyncio.Task[None]] = []
        if settings.api.reconcile_interval_s > 0:
            from whisperx_service.maintenance import reconciler

            loops.append(asyncio.create_task(reconciler.run_forever(app.state.jobs, app.state.celery, settings)))
        if settings.api.dispatch_interval_s > 0:
            from whisperx_service.maintenance import dispatcher

            async def max_running(owner: str) -> int | None:
                key = await app.state.keys.get(owner)
                return key.quotas.max_running if key is not None else None

            loops.append(
                asyncio.create_task(
                    dispatcher.run_forever(
                        app.state.jobs, app.state.celery, settings, max_running, app.state.dispatch_wake
                    )
                )
            )
        try:
            yield
        finally:
            for loop in [*loops, *app.state.background]:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            listener.close()
            await app.state.events.close()
            await blocking_client.aclose()
            await events_client.aclose()
            await client.aclose()

    app = FastAPI(
        title="whisperx-service",
        summary="Speech-to-text jobs: streamed uploads, live progress over SSE, results as JSON/SRT/VTT/TXT/TSV.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if settings.api.docs_enabled else None,
        redoc_url="/redoc" if settings.api.docs_enabled else None,
        openapi_url="/openapi.json" if settings.api.docs_enabled else None,
    )
    app.state.settings = settings
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "HEAD", "PATCH"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", *TUS_REQUEST_HEADERS],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed", "x-should-retry", *TUS_ANSWER_HEADERS],
        )
    if settings.api.allowed_hosts != ["*"]:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.api.allowed_hosts)
    app.add_middleware(_RequestContext)

    install_error_handlers(app)
    for module in (jobs, stages, events, results, audio, webhooks, health, openai, languages, uploads):
        app.include_router(module.router)
    install_web(app)  # the page at `/` (static, keyless; its API calls send the key)
    return app


def _redis_client(settings: Settings, *, socket_timeout_s: float, max_connections: int) -> aioredis.Redis:
    """A gateway Redis client (REDIS_URL) with a pool of its own that reconnects once on error.

    Args:
        socket_timeout_s: seconds one command may take.
        max_connections: connections the pool opens at most; one more command waits up to
            REDIS_POOL_WAIT_S for a free one, then fails with `redis.ConnectionError` (a 503).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis.url,
        max_connections=max_connections,
        timeout=REDIS_POOL_WAIT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=socket_timeout_s,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
    return aioredis.Redis.from_pool(pool)


def app_factory() -> FastAPI:
    """The app built from `get_settings()` (environment and `.env`); for `uvicorn --factory`.

    The process's garbage collector is tuned once the app is built (`gc_tuning.tune_gc`).
    """
    app = create_app(get_settings())
    tune_gc()
    return app
