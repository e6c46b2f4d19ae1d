"""The Celery app factory, configured for long GPU jobs on a Redis broker (docs/ARCHITECTURE.md).

- `task_acks_late` + `task_reject_on_worker_lost`: a job whose worker dies is redelivered,
  not lost; the job's lease and attempt number stop a redelivered copy from working twice.
- `worker_prefetch_multiplier=1`: a worker holds one job at a time, others stay queued for
  other workers.
- `visibility_timeout` above the hard time limit: Redis redelivers only jobs whose worker is
  gone, never one that is still running (validated in `WorkerSettings`).
- `worker_cancel_long_running_tasks_on_connection_loss`: a worker that loses Redis stops its job
  rather than finishing it twice.
- `worker_proc_alive_timeout` = WORKER_WARM_TIMEOUT_S: each pool process loads its models before
  it reports up and takes a job (`worker/warm.py`).
- Graceful shutdown: with `REMAP_SIGTERM=SIGQUIT` in the worker's environment (`whisperx-service
  worker` sets it), SIGTERM starts Celery's cold shutdown with a soft phase: no new job is taken,
  the running job has `worker_soft_shutdown_timeout` (WORKER_SOFT_SHUTDOWN_S) seconds to finish,
  then it is stopped and handed back (its lease released, its message requeued) for the next
  worker, which resumes it from the chunk checkpoints (see `worker/shutdown.py`). Without the remap,
  SIGTERM is Celery's warm shutdown, which waits for the job however long it runs.
"""

from __future__ import annotations

from celery import Celery

from whisperx_service.broker.kombu_redis import transport_options
from whisperx_service.config import Settings

#: The one task name the gateway enqueues (task id = job id).
TRANSCRIBE_TASK = "whisperx_service.transcribe"
#: The outbound worker's task: one item of the outbound schedule (`webhook:<delivery id>`).
OUTBOUND_TASK = "whisperx_service.outbound"
#: The outbound worker's Celery app name (`Celery.main`).
OUTBOUND_APP = "whisperx_service_outbound"


def make_celery(settings: Settings) -> Celery:
    """Build the Celery app for the gateway (to enqueue) and the worker (to run jobs).

    The settings object travels on the app as `app.wxs_settings` so tasks read it from there.
    """
    app = Celery("whisperx_service", broker=settings.redis.url, include=["whisperx_service.worker.tasks"])
    w = settings.worker
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=w.concurrency,
        worker_max_tasks_per_child=w.max_tasks_per_child,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_soft_shutdown_timeout=float(min(w.soft_shutdown_s, w.task_soft_time_limit_s)),
        # A pool process loads its models before it reports up (worker/warm.py); Celery kills one
        # that is not up within this many seconds (default 4).
        worker_proc_alive_timeout=w.warm_timeout_s,
        task_time_limit=w.task_time_limit_s,
        task_soft_time_limit=w.task_soft_time_limit_s,
        task_ignore_result=True,
        task_default_queue=w.queue,
        task_routes={TRANSCRIBE_TASK: {"queue": w.queue}},
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
    )
    app.wxs_settings = settings
    return app


def make_outbound_celery(settings: Settings) -> Celery:
    """The Celery app of the outbound worker (webhook deliveries) on OUTBOUND_QUEUE.

    The broker settings are the GPU workers' (same Redis, same key prefix, same visibility
    timeout: kombu's redelivery sweep reads one `unacked` hash for every queue, so one timeout
    must hold for all); the tasks are short, run in threads, and never go to WORKER_QUEUE.
    Redelivery after a dead worker comes from the outbound schedule's lease (`store/webhooks.py`),
    not from the broker.
    """
    app = Celery(OUTBOUND_APP, broker=settings.redis.url, include=["whisperx_service.outbound.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.outbound.concurrency,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_ignore_result=True,
        task_default_queue=settings.outbound.queue,
        task_routes={OUTBOUND_TASK: {"queue": settings.outbound.queue}},
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
    )
    app.wxs_settings = settings
    return app


def enqueue(celery: Celery, job_id: str, queue: str) -> None:
    """Send the transcription task of a job (task id = job id) to `queue`. Blocking (use a thread).

    Raises:
        kombu.exceptions.OperationalError: the broker cannot be reached.
    """
    celery.send_task(TRANSCRIBE_TASK, args=[job_id], task_id=job_id, queue=queue)
