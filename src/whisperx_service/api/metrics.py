"""The gateway's Prometheus metrics, and the keyless listener on METRICS_ADDRESS.

The job counters live in Redis (shared by every gateway and worker process): each scrape reads
them, the queue depth and the running jobs (`read_snapshot`) and renders them with a throwaway
registry (`GatewayCollector`); only `wxs_sse_clients` and `wxs_sse_job_readers` are local to
this gateway process. The worker's own metrics (stages, models, RTF, GPU memory) are served by
each worker (`worker/exporter.py`).

Names (the Grafana dashboard `docker/grafana-dashboard.json` queries them):
`wxs_jobs_submitted_total`, `wxs_jobs_finished_total{outcome}`, `wxs_upload_bytes_total`,
`wxs_job_duration_seconds` (histogram: submission to terminal status), `wxs_queue_depth{where}`
(`held`: on the keys' pending lists, waiting for a worker slot; `broker`: sent to Celery, not
taken by a worker yet), `wxs_jobs_running` (claimed by a worker, not ended), `wxs_sse_clients`,
`wxs_sse_job_readers`.

METRICS_ADDRESS (`MetricsListener`): prometheus-client's `start_http_server` on a thread of its
own, without a key, for scrapers; each scrape reads Redis on the gateway's event loop (its async
client), so both paths render the same numbers. Off unless set; a non-loopback address needs
METRICS_ALLOW_REMOTE=true (checked by the settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from whisperx_service.api.event_hub import EventHub
from whisperx_service.broker.kombu_redis import BrokerKeys
from whisperx_service.config import Settings, split_address
from whisperx_service.domain.jobs import TERMINAL
from whisperx_service.logs import get_logger
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import DURATION_BUCKETS_S

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = get_logger(__name__)

#: Seconds a scrape on METRICS_ADDRESS waits for the gateway's Redis reads.
SCRAPE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reads from Redis: the counters hash, jobs held and in the broker, jobs running."""

    counters: dict[str, str] = field(default_factory=dict)
    held: int = 0
    broker: int = 0
    running: int = 0


async def read_snapshot(jobs: AsyncJobStore, settings: Settings) -> Snapshot:
    """Read the shared counters, the queue depth and the running jobs (three Redis round trips).

    A job the dispatcher is sending at that instant may count twice (in the broker and not yet
    off its dispatching set) for one scrape.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    counters = await jobs.metrics()
    owners = await jobs.r.zrange(jobs.keys.dispatch_ring(), 0, -1)
    queue_keys = BrokerKeys.of(settings).queue(settings.worker.queue)
    p = jobs.r.pipeline(transaction=True)  # one consistent view of the lists the dispatcher moves jobs between
    for owner in owners:
        p.llen(jobs.keys.pending(owner.decode() if isinstance(owner, bytes) else str(owner)))
    p.zcard(jobs.keys.dispatching())
    for key in queue_keys:
        p.llen(key)
    p.scard(jobs.keys.running())
    out = [int(x) for x in await p.execute()]
    held = sum(out[: len(owners) + 1])
    broker = sum(out[len(owners) + 1 : -1])
    return Snapshot(counters, held=held, broker=broker, running=out[-1])


class GatewayCollector(Collector):
    """Prometheus view of a `Snapshot` plus this gateway's open event streams and readers."""

    def __init__(self, snapshot: Snapshot, sse_clients: int, sse_readers: int) -> None:
        self.snapshot = snapshot
        self.sse_clients = sse_clients
        self.sse_readers = sse_readers

    def _num(self, key: str) -> float:
        try:
            return float(self.snapshot.counters.get(key) or 0)
        except ValueError:
            return 0.0

    def collect(self) -> Iterator[Metric]:
        """The metric families (see the module docstring for their names)."""
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
        depth = GaugeMetricFamily(
            "wxs_queue_depth",
            "Jobs waiting: held for a worker slot on the keys' pending lists, or sent to the broker",
            labels=["where"],
        )
        depth.add_metric(["held"], self.snapshot.held)
        depth.add_metric(["broker"], self.snapshot.broker)
        yield depth
        running = GaugeMetricFamily("wxs_jobs_running", "Jobs a worker has claimed and not ended")
        running.add_metric([], self.snapshot.running)
        yield running
        sse = GaugeMetricFamily("wxs_sse_clients", "Open event streams on this gateway process")
        sse.add_metric([], self.sse_clients)
        yield sse
        readers = GaugeMetricFamily("wxs_sse_job_readers", "Jobs whose events this gateway process reads from Redis")
        readers.add_metric([], self.sse_readers)
        yield readers


def registry_of(snapshot: Snapshot, hub: EventHub) -> CollectorRegistry:
    """A throwaway registry holding one `GatewayCollector` (for `generate_latest`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(snapshot, hub.streams, hub.readers))
    return registry


class _Live(Collector):
    """Reads a fresh snapshot on the gateway's event loop at each scrape (called on the listener's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, jobs: AsyncJobStore, hub: EventHub, settings: Settings):
        self.loop, self.jobs, self.hub, self.settings = loop, jobs, hub, settings

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(read_snapshot(self.jobs, self.settings), self.loop)
        try:
            snapshot = future.result(SCRAPE_TIMEOUT_S)
        except TimeoutError:
            future.cancel()  # its Redis reads stop instead of running on after the scrape gave up
            raise
        yield from GatewayCollector(snapshot, self.hub.streams, self.hub.readers).collect()


class MetricsListener:
    """`/metrics` without a key on METRICS_ADDRESS (prometheus-client's `start_http_server`).

    Start it on the gateway's event loop (its lifespan); `close` stops it.
    """

    def __init__(self, settings: Settings, jobs: AsyncJobStore, hub: EventHub) -> None:
        self.settings, self.jobs, self.hub = settings, jobs, hub
        self.server: WSGIServer | None = None

    def start(self) -> tuple[str, int] | None:
        """Bind METRICS_ADDRESS and serve; None when it is unset.

        Returns:
            (host, port) bound.
        Raises:
            OSError: the address cannot be bound (in use, not an address of this host).
            RuntimeError: not called from a running event loop.
        """
        address = self.settings.observability.metrics_address
        if not address:
            return None
        host, port = split_address(address)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Live(asyncio.get_running_loop(), self.jobs, self.hub, self.settings))
        self.server, _ = start_http_server(port, addr=host, registry=registry)
        bound = int(self.server.server_address[1])
        log.info("metrics_listener_started", address=f"{host}:{bound}")
        return host, bound

    def close(self) -> None:
        """Stop serving (a scrape under way finishes on its own thread)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
