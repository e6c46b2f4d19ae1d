"""The transcription task (thin: claim, run the pipeline, write the result, finish) and the heartbeat.

The task id is the job id. A delivery first claims the job's lease in Redis: a copy that finds
the job finished or leased by a live worker returns without touching any model. While it works,
a thread renews the lease; every write carries the claimed attempt number and is refused when it
no longer matches (fencing), and then the task stops.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from typing import Any

import redis
import structlog
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobStatus, Stage, job_percent
from whisperx_service.errors import ServiceError
from whisperx_service.logs import configure_logging
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.jobs import JobStore, heartbeat
from whisperx_service.store.keys import Keys
from whisperx_service.worker.celery_app import TRANSCRIBE_TASK
from whisperx_service.worker.models import get_model_cache

log = structlog.get_logger(__name__)


class JobLost(Exception):
    """This worker no longer owns the job (lease taken over, cancelled, or finished elsewhere)."""


_store: JobStore | None = None


def _settings(task: Task) -> Settings:
    settings: Settings = task.app.wxs_settings
    return settings


def get_store(settings: Settings) -> JobStore:
    """The process's job store (one Redis connection pool per pool process, made after fork)."""
    global _store
    if _store is None:
        client = redis.Redis.from_url(settings.redis.url, health_check_interval=30)
        _store = JobStore(client, Keys(settings.redis.key_prefix), events_maxlen=settings.redis.events_maxlen)
    return _store


def worker_name() -> str:
    """`<host>:<pid>`: the lease owner and heartbeat name of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ProgressPublisher:
    """Maps stage progress into job percent and publishes it, throttled, fenced by attempt.

    Publishes at every stage or chunk start, then when the job percent rose by >= 1 and at least
    `min_interval_s` passed (DESIGN.md section 6: about one event per second or per percent).
    Each event carries `chunk`, `chunks` and `eta_s`: the remaining time estimated from the rate
    of progress made by this attempt so far (work reused from checkpoints does not count).

    Raises (from `__call__`):
        JobLost: the store refused the write (another attempt owns the job, or it is terminal).
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, options: JobOptions, min_interval_s: float) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.min_interval_s = min_interval_s
        skipped = set()
        if not options.align:
            skipped.add(Stage.align)
        if not options.diarize:
            skipped.add(Stage.diarize)
        self.skipped = frozenset(skipped)
        self.last_key: tuple[Stage, int] | None = None
        self.last_percent = -1.0
        self.last_time = 0.0
        self.rate_origin: tuple[float, float] | None = None  # (monotonic s, percent) when work began

    def eta_s(self, percent: float, now: float) -> float | None:
        """Seconds left at the rate this attempt has made progress (None until it can tell)."""
        if self.rate_origin is None:
            self.rate_origin = (now, percent)
            return None
        t0, p0 = self.rate_origin
        if percent - p0 < 1.0 or now - t0 < 1.0:
            return None
        return round((now - t0) * (100.0 - percent) / (percent - p0), 1)

    def __call__(self, stage: Stage, stage_percent: float, chunk: int = 0, chunks: int = 1, **extra: str) -> None:
        stage_percent = float(stage_percent)  # callbacks may pass numpy scalars
        pct = job_percent(stage, stage_percent, self.skipped, chunk=chunk, chunks=chunks)
        now = time.monotonic()
        key = (stage, chunk)
        new_step = key != self.last_key or bool(extra)
        if not new_step and (pct < self.last_percent + 1.0 or now - self.last_time < self.min_interval_s):
            return
        eta = self.eta_s(pct, now) if stage != Stage.decode else None
        ok = self.store.progress(
            self.job_id,
            self.attempt,
            stage,
            pct,
            stage_percent=round(min(max(stage_percent, 0.0), 100.0), 1),
            chunk=chunk,
            chunks=chunks,
            eta_s=eta,
            **extra,
        )
        if not ok:
            raise JobLost(f"job {self.job_id} attempt {self.attempt} is no longer running here")
        self.last_key, self.last_percent, self.last_time = key, pct, now


class LeaseKeeper(threading.Thread):
    """Renews the job's lease every `lease_s / 3` seconds until stopped; notes when it is lost."""

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease_s: float) -> None:
        super().__init__(daemon=True, name=f"lease-{job_id[:8]}")
        self.store, self.job_id, self.attempt, self.lease_s = store, job_id, attempt, lease_s
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.lease_s / 3):
            try:
                if not self.store.renew(self.job_id, self.attempt, self.lease_s):
                    self.lost = True
                    return
            except redis.RedisError:
                log.warning("lease_renew_failed", job_id=self.job_id)


@shared_task(name=TRANSCRIBE_TASK, bind=True, acks_late=True)
def transcribe(self: Task, job_id: str) -> str:
    """Run one job. Returns the job's final status (or `skipped:<why>` for a copy that does nothing)."""
    settings = _settings(self)
    store = get_store(settings)
    storage = Storage(settings.storage.root)
    bound = log.bind(job_id=job_id)
    claim = store.claim(job_id, worker_name(), settings.worker.lease_s)
    if claim.outcome != "claimed":
        bound.info("job_not_claimed", outcome=claim.outcome, status=claim.status)
        return f"skipped:{claim.outcome}"
    attempt = claim.attempt
    record = store.get(job_id)
    assert record is not None
    bound = bound.bind(attempt=attempt)
    bound.info("job_started")
    keeper = LeaseKeeper(store, job_id, attempt, settings.worker.lease_s)
    keeper.start()
    publisher = ProgressPublisher(store, job_id, attempt, record.options, settings.worker.progress_min_interval_s)
    from whisperx_service.pipeline.runner import ChunkResult, JobPaths, run_pipeline

    def on_decoded(duration_s: float) -> None:
        store.update(job_id, attempt, duration_s=round(duration_s, 3))

    last_chunk_stage = (
        Stage.diarize if record.options.diarize else Stage.align if record.options.align else Stage.transcribe
    )

    def on_chunk(result: ChunkResult, reused: bool, chunks: int) -> None:
        # One event per chunk says whether it was computed now or reused from its checkpoint.
        bound.info("chunk_done", chunk=result.chunk.index, reused=reused, computed_by_attempt=result.attempt)
        publisher(last_chunk_stage, 100.0, result.chunk.index, chunks, checkpoint="reused" if reused else "saved")

    paths = JobPaths(work=storage.work_dir(job_id), chunks=storage.chunks_dir(job_id))
    ended = False
    try:
        transcript = run_pipeline(
            storage.source(job_id),
            paths,
            record.options,
            get_model_cache(settings),
            settings,
            publisher,
            attempt=attempt,
            on_decoded=on_decoded,
            on_chunk=on_chunk,
        )
        publisher(Stage.merge, 100.0, transcript.chunks - 1, transcript.chunks)
        atomic_write_json(storage.result(job_id), transcript.model_dump(mode="json"))
        ended = store.finish(job_id, JobStatus.succeeded, attempt=attempt)
        if ended:
            bound.info("job_succeeded", duration_s=transcript.duration, timings=transcript.timings)
            return JobStatus.succeeded.value
        bound.warning("job_finish_refused")
        return "skipped:fenced"
    except JobLost as e:
        bound.warning("job_lost", reason=str(e))
        return "skipped:lost"
    except ServiceError as e:
        bound.warning("job_failed", code=e.code, message=e.message)
        ended = store.finish(job_id, JobStatus.failed, attempt=attempt, error_code=e.code, error_message=e.message)
        return JobStatus.failed.value
    except SoftTimeLimitExceeded:
        msg = f"the job ran longer than {settings.worker.task_soft_time_limit_s} s"
        ended = store.finish(job_id, JobStatus.failed, attempt=attempt, error_code="time_limit", error_message=msg)
        return JobStatus.failed.value
    except Exception as e:
        bound.exception("job_crashed")
        ended = store.finish(
            job_id, JobStatus.failed, attempt=attempt, error_code="internal_error",
            error_message=f"{type(e).__name__}: {e}"[:500],
        )  # fmt: skip
        return JobStatus.failed.value
    finally:
        keeper.stopped.set()
        if ended:  # this attempt ended the job: the decoded audio is only kept for a rerun
            shutil.rmtree(storage.work_dir(job_id), ignore_errors=True)


# -- worker liveness -----------------------------------------------------------------------

_beat_stop = threading.Event()


def _beat_loop(settings: Settings, name: str) -> None:
    client = redis.Redis.from_url(settings.redis.url)
    keys = Keys(settings.redis.key_prefix)
    while True:
        try:
            heartbeat(client, keys, name)
        except redis.RedisError:
            log.warning("heartbeat_failed")
        if _beat_stop.wait(settings.worker.heartbeat_s):
            client.zrem(keys.workers(), name)
            return


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings: Settings = sender.app.wxs_settings
    configure_logging(settings)
    _init_sentry(settings)
    threading.Thread(target=_beat_loop, args=(settings, worker_name()), daemon=True, name="heartbeat").start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _beat_stop.set()


def _init_sentry(settings: Settings) -> None:
    if settings.observability.sentry_dsn:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration

        sentry_sdk.init(
            dsn=settings.observability.sentry_dsn,
            environment=settings.observability.sentry_environment,
            integrations=[CeleryIntegration()],
        )
