"""What one attempt at a job tells operators: its log context and Sentry tags, and its metrics.

A transcription task binds `job_id` to its log lines and Sentry tags from its start (Celery's
`task_prerun`, in the pool process) to its end (`task_postrun`), claimed or not.
`JobObserver` follows the job's progress reports: each new (stage, chunk) binds `stage` to the
log lines and Sentry tags (next to `job_id` and `attempt`), ends the previous stage's timing
(`wxs_stage_duration_seconds`) and samples CUDA memory. The stage label is whatever `Stage` the
pipeline reports, so a stage added to `domain.jobs.Stage` is measured without a change here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from celery import Task
from celery.signals import task_postrun, task_prerun

from whisperx_service.broker.celery_app import TRANSCRIBE_TASK
from whisperx_service.domain.jobs import Stage
from whisperx_service.logs import bind_job_context, clear_job_context
from whisperx_service.worker.metrics import WorkerMetrics, worker_metrics

log = structlog.get_logger(__name__)


class Progress(Protocol):
    """A progress callback: (stage, stage percent 0-100, chunk index, number of chunks, extra event fields)."""

    def __call__(self, stage: Stage, stage_percent: float, chunk: int = 0, chunks: int = 1, **extra: str) -> None:
        """Report progress."""


class JobObserver:
    """Log context, Sentry tags and metrics of one claimed attempt at a job, in the process running it.

    Args:
        job_id: the job.
        attempt: the claimed attempt number.
        metrics: the metrics to record (this process's by default).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        job_id: str,
        attempt: int,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id, self.attempt = job_id, attempt
        self.m = metrics or worker_metrics()
        self.clock = clock
        self.started = clock()
        self.current: tuple[Stage, int] | None = None  # (stage, chunk) being timed
        self.current_since = 0.0
        self.last_key: tuple[Stage, int] | None = None
        #: True once this attempt reused earlier work (decoded audio, a chunk checkpoint): no RTF then.
        self.reused = False
        self.running = False
        self._gpu_failed = False

    def start(self) -> None:
        """The attempt begins: bind `job_id` and `attempt`, count it running, reset the CUDA peak."""
        bind_job_context(job_id=self.job_id, attempt=self.attempt)
        self.m.jobs_running.inc()
        self.running = True
        self._cuda(reset_peak=True)

    def step(self, stage: Stage, stage_percent: float, chunk: int, *, checkpoint: str | None = None) -> None:
        """A progress report of `stage` on `chunk`.

        A new (stage, chunk) ends the timing of the one before and starts its own, unless it is
        already at 100 % on its first report (work reused from an earlier attempt: not timed). A
        report with `checkpoint` (a chunk just saved or reused) ends the timing of the chunk's last stage.
        """
        now = self.clock()
        key = (stage, chunk)
        if checkpoint is not None:
            self._end_stage(now)
            if checkpoint == "reused":
                self.reused = True
            return
        if key == self.last_key:
            return
        self._end_stage(now)
        self.last_key = key
        bind_job_context(stage=stage.value)
        if stage_percent >= 100.0:
            self.reused = True  # e.g. the decoded audio of an earlier attempt
        else:
            self.current, self.current_since = key, now
        self._cuda()

    def tracking(self, publish: Progress) -> Progress:
        """`publish` wrapped so that each report passes through `step` first."""

        def progress(stage: Stage, stage_percent: float, chunk: int = 0, chunks: int = 1, **extra: str) -> None:
            self.step(stage, float(stage_percent), chunk, checkpoint=extra.get("checkpoint"))
            publish(stage, stage_percent, chunk, chunks, **extra)

        return progress

    def succeeded(self, audio_s: float) -> None:
        """The job succeeded with `audio_s` seconds of audio: count them, and its real-time factor when
        this attempt computed every step (a resumed attempt's time covers part of the work)."""
        self._end_stage(self.clock())
        if audio_s > 0:
            self.m.audio_seconds.inc(audio_s)
            if not self.reused:
                self.m.rtf.observe((self.clock() - self.started) / audio_s)

    def close(self) -> None:
        """The attempt is over, however it ended: end the stage timing, stop counting it running,
        sample CUDA memory, and unbind the job from the log context and Sentry tags."""
        self._end_stage(self.clock())
        if self.running:
            self.m.jobs_running.dec()
            self.running = False
        self._cuda()
        clear_job_context()

    def _end_stage(self, now: float) -> None:
        if self.current is not None:
            self.m.stage_seconds.labels(stage=self.current[0].value).observe(now - self.current_since)
            self.current = None

    def _cuda(self, *, reset_peak: bool = False) -> None:
        """Sample PyTorch's CUDA memory into the GPU gauges once this process has initialised CUDA
        (its models run on a GPU); never initialises CUDA itself, never raises.

        Not run by the test suite: the build machine has no GPU.
        """
        torch = sys.modules.get("torch")
        if torch is None or self._gpu_failed:
            return
        try:
            if not torch.cuda.is_initialized():
                return
            index = torch.cuda.current_device()
            label = f"cuda:{index}"
            if reset_peak:
                torch.cuda.reset_peak_memory_stats(index)
            self.m.gpu_allocated.labels(device=label).set(torch.cuda.memory_allocated(index))
            self.m.gpu_reserved.labels(device=label).set(torch.cuda.memory_reserved(index))
            self.m.gpu_peak.labels(device=label).set(torch.cuda.max_memory_allocated(index))
        except Exception as e:  # metrics never fail a job
            self._gpu_failed = True
            log.warning("gpu_memory_sample_failed", error=repr(e))


def count_end(status: str, code: str, metrics: WorkerMetrics | None = None) -> None:
    """Count one job a worker ended (`wxs_worker_jobs_ended_total`); `code` is empty unless it failed."""
    (metrics or worker_metrics()).jobs_ended.labels(status=status, code=code or "none").inc()


@task_prerun.connect
def _bind_job(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if task is not None and task.name == TRANSCRIBE_TASK and task_id:
        bind_job_context(job_id=task_id)


@task_postrun.connect
def _clear_job(task: Task | None = None, **_: Any) -> None:
    if task is not None and task.name == TRANSCRIBE_TASK:
        clear_job_context()
