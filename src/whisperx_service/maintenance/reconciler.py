"""The reconciler: every accepted job reaches a terminal state, even when workers or Redis fail.

A loop in the gateway's lifespan; one gateway process at a time sweeps (a Redis lock, SET NX PX).
Each sweep, every API_RECONCILE_INTERVAL_S:

1. Redis lost its data (the `storage-synced` marker is gone): every job in storage that Redis
   does not hold is rebuilt from its files (`restore.rebuild`) and the unfinished ones are held
   again on their owners' pending lists (the dispatcher hands them out). The marker is set once
   no manifest is left to restore.
2. Running jobs whose lease expired (the worker died: SIGKILL, power loss; Redis would redeliver
   its task only after the visibility timeout, hours later): a job whose cancel was requested
   ends `cancelled`; one whose workers were lost WORKER_MAX_ATTEMPTS times ends
   `failed: worker_lost` (both with final.json); any other is enqueued again, and the next worker
   claims the expired lease with attempt + 1 and resumes from the chunk checkpoints.
3. Jobs taken by the dispatcher more than the grace period ago and still in its dispatching
   zset (the dispatcher died, or Redis failed, between taking a job and sending its task): one
   whose message the broker holds just leaves the zset; any other is held again at the head of
   its owner's pending list (PUT_BACK).
4. Queued jobs older than the grace period (QUEUED_GRACE_SWEEPS sweeps) that are not held (on a
   pending list or being dispatched: that is on purpose), not being fetched from their `url` (the
   outbound schedule holds those until their source is stored) and whose task message is nowhere in the
   broker (not waiting in the queue's lists, not delivered to a worker within the grace period
   and unacknowledged) are enqueued again, at most once per grace period.
5. Every RETENTION_SWEEP_INTERVAL_S: the retention sweep (`retention.py`).

A task enqueued twice is harmless: the claim lets one copy run and the other returns at once.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from dataclasses import dataclass, field

import anyio.to_thread
import redis
import structlog
from celery import Celery

from whisperx_service.broker.celery_app import enqueue
from whisperx_service.broker.kombu_redis import BrokerKeys, broker_job_ids
from whisperx_service.config import Settings
from whisperx_service.maintenance.restore import Rebuild, rebuild
from whisperx_service.maintenance.retention import Retention, sweep_retention
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.dispatch import DispatchStore
from whisperx_service.store.locks import LeaderLock
from whisperx_service.store.records import final_record
from whisperx_service.store.webhooks import job_event_async

log = structlog.get_logger(__name__)

#: A queued job gets this many sweep intervals to have its task message seen in the broker.
QUEUED_GRACE_SWEEPS = 3


@dataclass
class Sweep:
    """What one sweep did.

    rebuilt: the rebuild from storage, when Redis had lost its data (else None).
    requeued: running jobs whose lease expired, enqueued again.
    held_again: jobs stuck in the dispatcher's dispatching zset, held again on their pending lists.
    ended: running jobs ended instead (id -> status: `cancelled` or `failed` worker_lost).
    queued_requeued: queued jobs whose task message was missing, enqueued again.
    retention: the retention sweep, when one was due (else None).
    """

    rebuilt: Rebuild | None = None
    requeued: list[str] = field(default_factory=list)
    held_again: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    queued_requeued: list[str] = field(default_factory=list)
    retention: Retention | None = None


def grace_s(settings: Settings) -> float:
    """Seconds a queued job may go without a task message in the broker (QUEUED_GRACE_SWEEPS sweeps)."""
    return QUEUED_GRACE_SWEEPS * max(settings.api.reconcile_interval_s, 1.0)


async def _write_final(jobs: AsyncJobStore, storage: Storage, job_id: str) -> None:
    record = await jobs.get(job_id)
    if record is not None and record.status.terminal:
        await anyio.to_thread.run_sync(functools.partial(storage.write_final, job_id, **final_record(record)))


async def _announce_end(jobs: AsyncJobStore, job_id: str) -> None:
    """Record the `ended` webhook event of a job the reconciler ended, when it wants one; never raises."""
    try:
        await job_event_async(jobs.r, jobs.keys, job_id, "ended", int(time.time() * 1000))
    except Exception as e:
        log.error("webhook_hook_failed", job_id=job_id, error=repr(e))


async def sweep(
    jobs: AsyncJobStore,
    celery: Celery,
    settings: Settings,
    *,
    now_s: float | None = None,
    retention: bool = True,
) -> Sweep:
    """One pass of the reconciler (see the module docstring).

    Args:
        now_s: now (s since the epoch); None = the clock.
        retention: run the retention sweep when it is due (RETENTION_SWEEP_INTERVAL_S).
    Raises:
        redis.RedisError, OSError: Redis or storage failed; the next sweep starts over.
    """
    now_s = time.time() if now_s is None else now_s
    now_ms = int(now_s * 1000)
    storage = Storage(settings.storage.root)
    keys = jobs.keys
    out = Sweep()

    async def requeue(job_id: str) -> None:
        await anyio.to_thread.run_sync(enqueue, celery, job_id, settings.worker.queue)

    grace = grace_s(settings)
    if not await jobs.r.exists(keys.storage_synced()):
        out.rebuilt = await rebuild(jobs, storage, min_age_s=grace, now_ms=now_ms)
        if out.rebuilt.young == 0:
            await jobs.r.set(keys.storage_synced(), str(now_ms))
        log.warning("rebuilt_from_storage", restored=len(out.rebuilt.restored), waiting=out.rebuilt.young)

    for job_id in await jobs.running_ids():
        outcome, status = await jobs.reap(
            job_id,
            now_ms,
            max_attempts=settings.worker.max_attempts,
            requeue_after_ms=int(settings.worker.lease_s * 1000),
        )
        if outcome == "ended":
            await _write_final(jobs, storage, job_id)
            await _announce_end(jobs, job_id)
            out.ended[job_id] = status
            log.warning("job_ended_by_reconciler", job_id=job_id, status=status)
        elif outcome == "requeue":
            await requeue(job_id)
            out.requeued.append(job_id)
            log.warning("job_requeued", job_id=job_id, reason="lease_expired")

    grace_ms = int(grace * 1000)
    dispatch = DispatchStore(jobs.r, keys)
    stuck = await dispatch.dispatching(now_ms - grace_ms)
    if stuck:
        in_broker = await broker_job_ids(jobs.r, BrokerKeys.of(settings), settings.worker.queue, now_s - grace)
        for job_id in stuck:
            if job_id in in_broker:
                await dispatch.done(job_id)
            elif await dispatch.put_back(job_id, await jobs.owner_of(job_id), now_ms):
                out.held_again.append(job_id)
                log.warning("job_held_again", job_id=job_id, reason="dispatch_interrupted")
            else:
                await dispatch.done(job_id)  # it ended meanwhile (or was put back already)

    held = set(await dispatch.held()) | set(await dispatch.dispatching())
    stale = [
        job_id
        for job_id, h in (await jobs.unfinished(now_ms - grace_ms)).items()
        if h.get("status") == "queued"
        and h.get("fetching") != "1"
        and now_ms - int(h.get("requeued_ms") or 0) >= grace_ms
        and job_id not in held
    ]
    if stale:
        in_broker = await broker_job_ids(jobs.r, BrokerKeys.of(settings), settings.worker.queue, now_s - grace)
        for job_id in stale:
            if job_id not in in_broker and await jobs.mark_requeued(job_id, now_ms, grace_ms):
                await requeue(job_id)
                out.queued_requeued.append(job_id)
                log.warning("job_requeued", job_id=job_id, reason="no_task_message")

    if retention and await jobs.r.set(
        keys.retention_sweep(), str(now_ms), nx=True, px=int(settings.retention.sweep_interval_s * 1000)
    ):
        out.retention = await sweep_retention(jobs, storage, settings, now_s=now_s)
        log.info("retention_swept", **vars(out.retention))
    return out


async def run_forever(jobs: AsyncJobStore, celery: Celery, settings: Settings) -> None:
    """Sweep every API_RECONCILE_INTERVAL_S while holding the reconciler lock; never raises."""
    interval = settings.api.reconcile_interval_s
    lock = LeaderLock(
        jobs.r, jobs.keys.reconciler_lock(), f"{socket.gethostname()}:{os.getpid()}", int(interval * 3000)
    )
    while True:
        await asyncio.sleep(interval)
        try:
            if await lock.hold():
                await sweep(jobs, celery, settings)
        except Exception as e:  # a failed sweep must not end the loop: the next one starts over
            log.warning("reconcile_failed", error=repr(e), exc_info=not isinstance(e, (redis.RedisError, OSError)))
