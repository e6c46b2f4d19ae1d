"""The transcription task (thin: claim, run the pipeline, write the result, finish) and the heartbeat.

The task id is the job id. A delivery first claims the job's lease in Redis: a copy that finds
the job finished or leased by a live worker returns without touching any model. While it works,
a thread renews the lease; every write carries the claimed attempt number and is refused when it
no longer matches (fencing), and then the task stops. The same thread learns from the renewal
that DELETE asked the job to stop; the next progress call then raises `JobCancelled` and the task
ends the job `cancelled`. Whoever ends the job writes its terminal record (`final.json`).
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import sys
import threading
import time
from typing import Any

import redis
import structlog
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import (
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobStatus, Stage, job_percent
from whisperx_service.errors import ServiceError
from whisperx_service.logs import configure_logging
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.jobs import JobStore, Renewal, final_record, heartbeat
from whisperx_service.store.keys import Keys
from whisperx_service.worker.celery_app import TRANSCRIBE_TASK
from whisperx_service.worker.models import get_model_cache

log = structlog.get_logger(__name__)


class JobLost(Exception):
    """This worker no longer owns the job (lease taken over, cancelled, or finished elsewhere)."""


class JobCancelled(Exception):
    """DELETE asked the running job to stop; raised at the next progress point."""


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

    Every call first checks `cancel` (set by the `LeaseKeeper`; no Redis round trip), so a
    cancelled job stops at its next progress point, throttled or not.

    Raises (from `__call__`):
        JobCancelled: the job was asked to stop.
        JobLost: the store refused the write (another attempt owns the job, or it is terminal).
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        options: JobOptions,
        min_interval_s: float,
        cancel: threading.Event | None = None,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.min_interval_s = min_interval_s
        self.cancel = cancel or threading.Event()
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
        if self.cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")
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
    """Renews the job's lease every `min(poll_s, lease_s / 3)` seconds until stopped.

    Each renewal also says whether DELETE asked the job to stop: then `cancel` is set (the
    `ProgressPublisher` watches it). `lost` is set when the renewal is refused (fenced).
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease_s: float, poll_s: float) -> None:
        super().__init__(daemon=True, name=f"lease-{job_id[:8]}")
        self.store, self.job_id, self.attempt, self.lease_s = store, job_id, attempt, lease_s
        self.interval_s = min(poll_s, lease_s / 3)
        self.stopped = threading.Event()
        self.cancel = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                renewal = self.store.renew(self.job_id, self.attempt, self.lease_s)
            except redis.RedisError:
                log.warning("lease_renew_failed", job_id=self.job_id)
                continue
            if renewal is Renewal.lost:
                self.lost = True
                return
            if renewal is Renewal.cancel_requested and not self.cancel.is_set():
                log.info("job_cancel_seen", job_id=self.job_id)
                self.cancel.set()


def free_working_memory() -> None:
    """Release what a stopped job left: Python garbage, and PyTorch's cached CUDA blocks (models stay)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@shared_task(name=TRANSCRIBE_TASK, bind=True, acks_late=True)
def transcribe(self: Task, job_id: str) -> str:
    """Run one job. Returns the job's final status (or `skipped:<why>` for a copy that does nothing)."""
    settings = _settings(self)
    store = get_store(settings)
    storage = Storage(settings.storage.root)
    bound = log.bind(job_id=job_id)
    claim = store.claim(job_id, worker_name(), settings.worker.lease_s, max_attempts=settings.worker.max_attempts)
    if claim.outcome == "ended":  # cancel requested, or its workers were lost WORKER_MAX_ATTEMPTS times
        final = store.get(job_id)
        if final is not None:
            storage.write_final(job_id, **final_record(final))
        shutil.rmtree(storage.work_dir(job_id), ignore_errors=True)
        bound.warning("job_ended_on_claim", status=claim.status, attempt=claim.attempt)
        return claim.status
    if claim.outcome != "claimed":
        bound.info("job_not_claimed", outcome=claim.outcome, status=claim.status)
        return f"skipped:{claim.outcome}"
    attempt = claim.attempt
    record = store.get(job_id)
    assert record is not None
    bound = bound.bind(attempt=attempt)
    bound.info("job_started")
    keeper = LeaseKeeper(store, job_id, attempt, settings.worker.lease_s, settings.worker.cancel_poll_s)
    keeper.start()
    publisher = ProgressPublisher(
        store, job_id, attempt, record.options, settings.worker.progress_min_interval_s, keeper.cancel
    )
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
    ended = cancelled = False

    def end(status: JobStatus, code: str = "", message: str = "") -> bool:
        """Finish the job as this attempt (fenced), then write its terminal record; False if refused."""
        nonlocal ended
        ended = store.finish(job_id, status, attempt=attempt, error_code=code, error_message=message)
        final = store.get(job_id) if ended else None
        if final is not None:
            try:
                storage.write_final(job_id, **final_record(final))
            except OSError as e:  # Redis has the state; only a rebuild from storage would miss it
                bound.error("final_write_failed", error=str(e))
        return ended

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
        if end(JobStatus.succeeded):
            bound.info("job_succeeded", duration_s=transcript.duration, timings=transcript.timings)
            return JobStatus.succeeded.value
        bound.warning("job_finish_refused")
        return "skipped:fenced"
    except JobCancelled:
        cancelled = True
        if not end(JobStatus.cancelled):
            bound.warning("job_finish_refused")
            return "skipped:fenced"
        bound.info("job_cancelled")
        return JobStatus.cancelled.value
    except JobLost as e:
        bound.warning("job_lost", reason=str(e))
        return "skipped:lost"
    except ServiceError as e:
        bound.warning("job_failed", code=e.code, message=e.message)
        end(JobStatus.failed, e.code, e.message)
        return JobStatus.failed.value
    except SoftTimeLimitExceeded:
        end(JobStatus.failed, "time_limit", f"the job ran longer than {settings.worker.task_soft_time_limit_s} s")
        return JobStatus.failed.value
    except Exception as e:
        bound.exception("job_crashed")
        end(JobStatus.failed, "internal_error", f"{type(e).__name__}: {e}"[:500])
        return JobStatus.failed.value
    finally:
        keeper.stopped.set()
        if ended:  # this attempt ended the job: the decoded audio is only kept for a rerun
            shutil.rmtree(storage.work_dir(job_id), ignore_errors=True)
        if cancelled:  # the pipeline's frames are gone now: give their memory back
            free_working_memory()


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


@worker_init.connect
def _configure_logging(sender: Any = None, **_: Any) -> None:
    # Before the pool processes are forked, so they all log the same way as the main process.
    configure_logging(sender.app.wxs_settings)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings: Settings = sender.app.wxs_settings
    configure_logging(settings)
    _init_sentry(settings)
    _check_sigterm_remapped()
    threading.Thread(target=_beat_loop, args=(settings, worker_name()), daemon=True, name="heartbeat").start()


@worker_shutting_down.connect  # SIGTERM/SIGINT: warm or cold (no `worker_shutdown` follows a cold one)
@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _beat_stop.set()


# -- graceful shutdown: hand the running job back -------------------------------------------------
#
# SIGTERM is remapped to Celery's cold shutdown with a soft phase (REMAP_SIGTERM=SIGQUIT, set by
# `whisperx-service worker`; WORKER_SOFT_SHUTDOWN_S): the worker stops consuming at once, the
# running job gets the soft window to finish (its message is then acked as usual), after which the
# main process signals the pool process, which raises SystemExit inside the job: the job unwinds
# (its `finally` stops the lease keeper), and the exiting process runs `_hand_back`, which releases
# the job's lease. The task message was never acked: the main process puts it back on the queue
# when it closes the broker connection (kombu's Redis transport restores unacked messages then),
# and the next worker claims the job at once with attempt + 1 and resumes from its chunk
# checkpoints. Should the message still go missing, the released lease counts as expired and the
# reconciler re-enqueues the job. A pool process killed outright (SIGKILL, OOM) runs no hand-back:
# its lease runs out instead (WORKER_LEASE_S).

_current: tuple[str, Settings] | None = None  # (job id, settings) of the job this pool process runs


@task_prerun.connect
def _note_job(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    """In the pool process: remember the job it is about to run, for `_hand_back` at exit."""
    global _current
    if task is not None and task.name == TRANSCRIBE_TASK and task_id:
        _current = (task_id, _settings(task))


@worker_process_shutdown.connect
def _on_process_exit(exitcode: int | None = None, **_: Any) -> None:
    """In the pool process, as it exits: hand back the job it was running, if it still holds its lease."""
    if _current is not None:
        hand_back(_current[1], _current[0], reason=f"pool process exiting ({exitcode})")


def hand_back(settings: Settings, job_id: str, *, reason: str) -> bool:
    """Release the job's lease if this process (`worker_name()`) still holds it; never raises.

    Called when the job's execution has stopped here for good (the process is exiting). A job that
    ended, or that another attempt owns, is left alone. Uses its own Redis connection with 5 s
    socket timeouts, so a dead Redis cannot hold the process's exit up for long.

    Returns:
        True if the lease was released (a `released` event was published).
    """
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        store = JobStore(client, Keys(settings.redis.key_prefix), events_maxlen=settings.redis.events_maxlen)
        status, owner, attempt = store.lease(job_id)
        if status != JobStatus.running.value or owner != worker_name():
            return False
        released = store.release(job_id, attempt)
    except redis.RedisError as e:
        log.warning("job_release_failed", job_id=job_id, error=str(e))
        return False
    finally:
        client.close()
    if released:
        log.warning("job_released", job_id=job_id, attempt=attempt, reason=reason)
    return released


def _check_sigterm_remapped() -> None:
    from billiard.common import REMAP_SIGTERM

    if REMAP_SIGTERM != "SIGQUIT":
        log.warning(
            "sigterm_not_remapped",
            detail="REMAP_SIGTERM is not SIGQUIT: SIGTERM makes a warm shutdown that waits for the running job "
            "to end, however long; start workers with `whisperx-service worker` or REMAP_SIGTERM=SIGQUIT",
        )


def _init_sentry(settings: Settings) -> None:
    if settings.observability.sentry_dsn:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration

        sentry_sdk.init(
            dsn=settings.observability.sentry_dsn,
            environment=settings.observability.sentry_environment,
            integrations=[CeleryIntegration()],
        )
