"""`/healthz` (alive), `/readyz` (can take work) and `/metrics` (Prometheus; `api/metrics.py`)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from whisperx_service.api.auth import AdminDep
from whisperx_service.api.deps import JobsDep, SettingsDep, StorageDep
from whisperx_service.api.event_hub import EventHub
from whisperx_service.api.metrics import read_snapshot, registry_of
from whisperx_service.logs import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)

#: Seconds each readiness check may take before it counts as failed.
READY_CHECK_TIMEOUT_S = 2.0


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"description": "a check failed; the body lists each check's result"}},
)
async def readyz(settings: SettingsDep, jobs: JobsDep, storage: StorageDep) -> JSONResponse:
    """200 when Redis answers, storage is writable and at least one worker sent a heartbeat
    within 3 heartbeat intervals; otherwise 503. The body shows each check's result.
    """
    redis_ok, workers = False, 0
    try:
        with anyio.fail_after(READY_CHECK_TIMEOUT_S):
            redis_ok = bool(await jobs.r.ping())
            workers = await jobs.live_workers(within_s=3 * settings.worker.heartbeat_s)
    except Exception as e:  # any failure is "not ready", never an error
        log.warning("readiness_redis_failed", error=repr(e))
    storage_ok = await anyio.to_thread.run_sync(storage.writable)
    ready = redis_ok and storage_ok and workers >= 1
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {"redis": redis_ok, "storage": storage_ok, "workers": workers},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, _: AdminDep, jobs: JobsDep, settings: SettingsDep) -> Response:
    """Prometheus text exposition of the shared job counters, queue depth and running jobs (read
    from Redis at scrape time) and this process's event streams; admin keys only (METRICS_ADDRESS
    serves the same without a key).

    Raises:
        redis.ConnectionError: Redis does not answer (answered as 503).
    """
    snapshot = await read_snapshot(jobs, settings)
    hub: EventHub = request.app.state.events
    return Response(generate_latest(registry_of(snapshot, hub)), media_type=CONTENT_TYPE_LATEST)
