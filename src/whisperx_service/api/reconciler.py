"""The reconciler: re-enqueues running jobs whose worker is gone (its lease ran out).

A worker killed with SIGKILL (or a machine that lost power) never acknowledges or finishes its
job, and Redis redelivers the task only after the broker's visibility timeout (hours, since it
must exceed the task time limit). The job's lease expires much sooner (WORKER_LEASE_S). This
loop, in the gateway's lifespan, finds such jobs and enqueues their task again (task id = job
id); the next worker claims the expired lease with attempt + 1 and resumes from the job's chunk
checkpoints. One gateway process at a time runs a sweep: a Redis lock (SET NX PX).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import anyio.to_thread
import redis
import structlog
from celery import Celery

from whisperx_service.config import Settings
from whisperx_service.store.jobs import AsyncJobStore
from whisperx_service.worker.celery_app import enqueue

log = structlog.get_logger(__name__)


async def sweep(jobs: AsyncJobStore, celery: Celery, settings: Settings) -> list[str]:
    """One pass: re-enqueue every running job whose lease expired; returns their ids."""
    now_ms = int(time.time() * 1000)
    requeued = await jobs.expired_leases(now_ms, requeue_after_ms=int(settings.worker.lease_s * 1000))
    for job_id in requeued:
        await anyio.to_thread.run_sync(enqueue, celery, job_id, settings.worker.queue)
        log.warning("job_requeued", job_id=job_id, reason="lease_expired")
    return requeued


async def run_forever(jobs: AsyncJobStore, celery: Celery, settings: Settings) -> None:
    """Sweep every API_RECONCILE_INTERVAL_S while holding the reconciler lock; never raises."""
    interval = settings.api.reconcile_interval_s
    me = f"{socket.gethostname()}:{os.getpid()}"
    lock = jobs.keys.reconciler_lock()
    while True:
        await asyncio.sleep(interval)
        try:
            mine = await jobs.r.set(lock, me, nx=True, px=int(interval * 3000))
            if not mine and (await jobs.r.get(lock)) in (me, me.encode()):
                await jobs.r.pexpire(lock, int(interval * 3000))
                mine = True
            if mine:
                await sweep(jobs, celery, settings)
        except (redis.RedisError, OSError) as e:
            log.warning("reconcile_failed", error=str(e))
