"""`/healthz` (alive), `/readyz` (can take work) and `/metrics` (Prometheus; `api/metrics.py`)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from whisperx_service.api.auth import AdminDep
from whisperx_service.api.deps import JobsDep, SettingsDep, StorageDep
from whisperx_service.api.event_hub import EventHub
from whisperx_service.api.metrics import read_snapshot, registry_of
from whisperx_service.domain.workers import WorkerFailure, WorkerStatus
from whisperx_service.logs import get_logger
from whisperx_service.store import workers

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
    responses={503: {"description": "not ready; `reason` says why, `checks` and `workers` show the state"}},
)
async def readyz(settings: SettingsDep, jobs: JobsDep, storage: StorageDep) -> JSONResponse:
    """200 when Redis answers, storage is writable and at least one live worker (a heartbeat within
    3 heartbeat intervals) has a pool process with every model loaded (`warm`); otherwise 503.

    The body: `status`, `checks` (`redis`, `storage`, `workers`: live workers, `warm_workers`),
    `workers` (each live worker's pool processes: device, models and whether each is loaded),
    `failures` (workers that could not start in the last hour: the model and what to do), and when
    not ready a `reason` (e.g. "no ready worker: ..."). Never a server path.
    """
    redis_ok, live, failures = False, [], []
    try:
        with anyio.fail_after(READY_CHECK_TIMEOUT_S):
            redis_ok = bool(await jobs.r.ping())
            live = await workers.live_workers(jobs.r, jobs.keys, within_s=3 * settings.worker.heartbeat_s)
            failures = await workers.recent_failures(jobs.r, jobs.keys)
    except Exception as e:  # any failure is "not ready", never an error
        log.warning("readiness_redis_failed", error=repr(e))
    storage_ok = await anyio.to_thread.run_sync(storage.writable)
    warm = sum(1 for w in live if w.warm)
    ready = redis_ok and storage_ok and warm >= 1
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "checks": {"redis": redis_ok, "storage": storage_ok, "workers": len(live), "warm_workers": warm},
        "workers": [w.model_dump(mode="json") for w in live],
        "failures": [f.model_dump(mode="json") for f in failures],
    }
    if not ready:
        body["reason"] = _not_ready_reason(redis_ok, storage_ok, live, failures)
    return JSONResponse(body, status_code=200 if ready else 503)


def _not_ready_reason(redis_ok: bool, storage_ok: bool, live: list[WorkerStatus], failures: list[WorkerFailure]) -> str:
    """One sentence: why `/readyz` is not ready (Redis, storage, or no warm worker and why)."""
    if not redis_ok:
        return "Redis does not answer"
    if not storage_ok:
        return "storage is not writable"
    why = []
    if live:
        why.append(f"{len(live)} live worker(s) still loading their models")
    if failures:
        why.append(f"a worker failed to start: {failures[0].reason}")
    if not why:
        why.append("no live worker")
    return "no ready worker: " + "; ".join(why)


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
