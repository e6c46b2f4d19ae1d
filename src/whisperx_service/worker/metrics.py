"""The worker's Prometheus metrics: what its pool processes record about jobs, stages and models.

Built on first use (`worker_metrics()`), never at import: prometheus-client picks its value
store (in memory, or the per-process files of multiprocess mode) when it is first imported, so it
must not be imported before the worker's main process has set PROMETHEUS_MULTIPROC_DIR
(`exporter.py`, which also serves these metrics on WORKER_METRICS_ADDRESS). Every gauge names its
`multiprocess_mode`, as prometheus-client's multiprocess mode requires: `livesum` / `livemax`
count only processes still alive (a pool process that exits takes its value with it).

Names (the Grafana dashboard `docker/grafana-dashboard.json` queries them):

- `wxs_stage_duration_seconds{stage}`: seconds one stage took on one chunk (decode and merge run
  once per job); measured from the stage's first progress report to the next stage's.
- `wxs_worker_jobs_ended_total{status, code}`: jobs a worker ended, by terminal status and error
  code (`none` unless failed).
- `wxs_job_rtf`: real-time factor of jobs that succeeded with every step computed by one attempt:
  seconds from claim to result / seconds of audio (< 1 is faster than real time).
- `wxs_worker_audio_seconds_total`: seconds of audio in jobs that succeeded.
- `wxs_model_load_seconds{kind}`: seconds a model took to load, by kind (`asr`, `align`, `diarize`).
- `wxs_worker_jobs_running`: jobs running in this worker's pool processes.
- `wxs_gpu_memory_allocated_bytes{device}`, `wxs_gpu_memory_reserved_bytes{device}`: CUDA memory
  PyTorch holds for tensors / has reserved from the driver, sampled at each stage change;
  `wxs_gpu_memory_peak_bytes{device}`: the most allocated at once during the running (or last)
  job. CUDA workers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Upper bounds (s) of the stage-duration buckets: a short chunk's stage on a GPU to a 4 h chunk on a CPU.
STAGE_BUCKETS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
#: Upper bounds of the real-time-factor buckets: a GPU's ~0.01 to a slow CPU's several times real time.
RTF_BUCKETS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
#: Upper bounds (s) of the model-load buckets: a cached tiny model to a large one read from a slow disk.
MODEL_LOAD_BUCKETS_S: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class WorkerMetrics:
    """The worker's metric objects, registered on `registry` (prometheus-client's default one unless given).

    Raises:
        ValueError: (from prometheus-client) the names are already registered on `registry`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        self.stage_seconds: Histogram = Histogram(
            "wxs_stage_duration_seconds",
            "Seconds one stage took on one chunk (decode and merge: once per job)",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=reg,
        )
        self.jobs_ended: Counter = Counter(
            "wxs_worker_jobs_ended",
            "Jobs a worker ended, by terminal status and error code (none unless failed)",
            ["status", "code"],
            registry=reg,
        )
        self.rtf: Histogram = Histogram(
            "wxs_job_rtf",
            "Real-time factor of succeeded jobs computed by one attempt: processing seconds / audio seconds",
            buckets=RTF_BUCKETS,
            registry=reg,
        )
        self.audio_seconds: Counter = Counter(
            "wxs_worker_audio_seconds", "Seconds of audio in jobs that succeeded", registry=reg
        )
        self.model_load_seconds: Histogram = Histogram(
            "wxs_model_load_seconds",
            "Seconds a model took to load, by kind (asr, align, diarize)",
            ["kind"],
            buckets=MODEL_LOAD_BUCKETS_S,
            registry=reg,
        )
        self.jobs_running: Gauge = Gauge(
            "wxs_worker_jobs_running", "Jobs running in this worker", multiprocess_mode="livesum", registry=reg
        )
        self.gpu_allocated: Gauge = Gauge(
            "wxs_gpu_memory_allocated_bytes",
            "CUDA memory PyTorch holds for tensors (bytes), sampled at each stage change",
            ["device"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.gpu_reserved: Gauge = Gauge(
            "wxs_gpu_memory_reserved_bytes",
            "CUDA memory PyTorch has reserved from the driver (bytes), sampled at each stage change",
            ["device"],
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.gpu_peak: Gauge = Gauge(
            "wxs_gpu_memory_peak_bytes",
            "Most CUDA memory PyTorch held for tensors at once during the running or last job (bytes)",
            ["device"],
            multiprocess_mode="livemax",
            registry=reg,
        )


_metrics: WorkerMetrics | None = None


def worker_metrics() -> WorkerMetrics:
    """This process's metrics (on prometheus-client's default registry), built on the first call."""
    global _metrics
    if _metrics is None:
        _metrics = WorkerMetrics()
    return _metrics
