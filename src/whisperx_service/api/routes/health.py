"""`/healthz` (alive), `/readyz` (can take work) and `/metrics` (Prometheus).

The job counters live in Redis (shared by every gateway and worker process), so `/metrics` reads
them at scrape time and renders them with a throwaway registry; only `wxs_sse_clients` and
`wxs_sse_job_readers` are local to this gateway process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from whisperx_service.api.auth import AdminDep
from whisperx_service.api.deps import JobsDep, SettingsDep, StorageDep
from whisperx_service.api.event_hub import EventHub
from whisperx_service.domain.jobs import TERMINAL
from whisperx_service.domain.workers import WorkerFailure, WorkerStatus
from whisperx_service.logs import get_logger
from whisperx_service.store import workers
from whisperx_service.store.jobs import DURATION_BUCKETS_S

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


class _SharedCounters(Collector):
    """Prometheus view of the counters hash in Redis plus the gateway's open event streams and readers."""

    def __init__(self, counters: Mapping[str, str], sse_clients: int, sse_readers: int) -> None:
        self.counters = counters
        self.sse_clients = sse_clients
        self.sse_readers = sse_readers

    def _num(self, key: str) -> float:
        try:
            return float(self.counters.get(key) or 0)
        except ValueError:
            return 0.0

    def collect(self) -> Iterator[Metric]:
        submitted = CounterMetricFamily("wxs_jobs_submitted", "Jobs accepted by the gateway")
        submitted.add_metric([], self._num("submitted"))
        yield submitted
        finished = CounterMetricFamily("wxs_jobs_finished", "Jobs that ended, by outcome", labels=["outcome"])
        for status in sorted(TERMINAL):
            finished.add_metric([status.value], self._num(f"finished:{status.value}"))
        yield finished
        upload = CounterMetricFamily("wxs_upload_bytes", "Bytes of accepted uploads")
        upload.add_metric([], self._num("upload_bytes"))
        yield upload
        # The counters are cumulative already: a job increments every bucket whose bound it fits.
        buckets = [(f"{le:g}", self._num(f"duration_bucket:{le:g}")) for le in DURATION_BUCKETS_S]
        buckets.append(("+Inf", self._num("duration_bucket:+Inf")))
        yield HistogramMetricFamily(
            "wxs_job_duration_seconds",
            "Seconds from submission to the terminal status",
            buckets=buckets,
            sum_value=self._num("duration_sum"),
        )
        sse = GaugeMetricFamily("wxs_sse_clients", "Open event streams on this gateway process")
        sse.add_metric([], self.sse_clients)
        yield sse
        readers = GaugeMetricFamily("wxs_sse_job_readers", "Jobs whose events this gateway process reads from Redis")
        readers.add_metric([], self.sse_readers)
        yield readers


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, _: AdminDep, jobs: JobsDep) -> Response:
    """Prometheus text exposition of the shared job counters (read from Redis at scrape time); admin keys only.

    Raises:
        redis.ConnectionError: Redis does not answer (answered as 503).
    """
    counters = await jobs.metrics()
    registry = CollectorRegistry(auto_describe=False)
    hub: EventHub = request.app.state.events
    registry.register(_SharedCounters(counters, hub.streams, hub.readers))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
