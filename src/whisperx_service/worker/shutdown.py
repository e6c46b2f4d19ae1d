"""Graceful shutdown: a worker told to stop hands its running job back to the queue.

SIGTERM is remapped to Celery's cold shutdown with a soft phase (REMAP_SIGTERM=SIGQUIT, set by
`whisperx-service worker`; WORKER_SOFT_SHUTDOWN_S): the worker stops consuming at once, the
running job gets the soft window to finish (its message is then acked as usual), after which the
main process signals the pool process, which raises SystemExit inside the job: the job unwinds
(its `finally` stops the lease keeper), and the exiting process runs `hand_back`, which releases
the job's lease. The task message was never acked: the main process puts it back on the queue
when it closes the broker connection (kombu's Redis transport restores unacked messages then),
and the next worker claims the job at once with attempt + 1 and resumes from its chunk
checkpoints. Should the message still go missing, the released lease counts as expired and the
reconciler re-enqueues the job. A pool process killed outright (SIGKILL, OOM) runs no hand-back:
its lease runs out instead (WORKER_LEASE_S).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import redis
import structlog
from celery import Task
from celery.signals import task_prerun, worker_process_shutdown

from whisperx_service.broker.celery_app import TRANSCRIBE_TASK
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.store.jobs import JobStore
from whisperx_service.worker.runtime import worker_name

log = structlog.get_logger(__name__)

_current: tuple[str, Settings] | None = None  # (job id, settings) of the job this pool process runs


@task_prerun.connect
def _note_job(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    """In the pool process: remember the job it is about to run, for `hand_back` at exit."""
    global _current
    if task is not None and task.name == TRANSCRIBE_TASK and task_id:
        _current = (task_id, task.app.wxs_settings)


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
    store = JobStore.from_settings(settings, socket_timeout=5, socket_connect_timeout=5)
    try:
        status, owner, attempt = store.lease(job_id)
        if status != JobStatus.running.value or owner != worker_name():
            return False
        released = store.release(job_id, attempt)
    except redis.RedisError as e:
        log.warning("job_release_failed", job_id=job_id, error=str(e))
        return False
    finally:
        store.r.close()
    if released:
        log.warning("job_released", job_id=job_id, attempt=attempt, reason=reason)
    return released


def check_sigterm_remapped() -> None:
    """Warn when SIGTERM is not remapped to SIGQUIT (then SIGTERM waits for the running job however long)."""
    from billiard.common import REMAP_SIGTERM

    if REMAP_SIGTERM != "SIGQUIT":
        log.warning(
            "sigterm_not_remapped",
            detail="REMAP_SIGTERM is not SIGQUIT: SIGTERM makes a warm shutdown that waits for the running job "
            "to end, however long; start workers with `whisperx-service worker` or REMAP_SIGTERM=SIGQUIT",
        )


def free_working_memory() -> None:
    """Release what a stopped job left: Python garbage, and PyTorch's cached CUDA blocks (models stay)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
