"""The dispatcher: hands held jobs to Celery as worker slots free, keys in round-robin order.

A submitted job is not sent to Celery at once: it is held on its owner's pending list in Redis
(one list per API key; `-` for the jobs of auth-off deployments), in the same Lua step that creates
it (store/dispatch.py). A loop in the gateway's lifespan, one gateway process at a time (a Redis
lock, SET NX PX), every API_DISPATCH_INTERVAL_S and at once when a submission wakes it:

1. free slots = capacity - busy. Capacity = max(live workers, 1) x WORKER_CONCURRENCY (a worker
   is live when its heartbeat is newer than 3 WORKER_HEARTBEAT_S). With no live worker the
   capacity is that of one worker: one message waits in the broker for the first worker to start
   (it needs no dispatcher pass to begin), and the rest stay held. Busy = job ids whose task
   message waits in the queue or was delivered in the last WORKER_LEASE_S and not acknowledged,
   together with running jobs whose lease is live (a set, so a job is counted once).
2. while a slot is free: the owner served least recently (the ring) whose jobs handed out and not
   ended are fewer than its key's `max_running` gets its oldest held job (TAKE: pending list ->
   dispatching zset, one step); its task is sent (task id = job id) and it leaves the dispatching
   zset. A held job that ended (cancelled) or was purged meanwhile is dropped, never sent. A
   broker error puts the job back at the head of its list (PUT_BACK) and ends the pass.

So with one worker, a key that submits while another has a backlog waits for at most the one job
per slot already handed out. Nothing is lost in the move: if the dispatcher dies between take and
send, the id stays in the dispatching zset and the reconciler puts it back after its grace period
unless the broker holds the message; a job sent twice is harmless (the claim lets one copy run).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio.to_thread
import redis
import structlog
from celery import Celery
from kombu.exceptions import OperationalError

from whisperx_service.broker.celery_app import enqueue
from whisperx_service.broker.kombu_redis import BrokerKeys, broker_job_ids
from whisperx_service.config import Settings
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.dispatch import DispatchStore
from whisperx_service.store.locks import LeaderLock
from whisperx_service.store.records import as_str

log = structlog.get_logger(__name__)

#: owner (key id, or `-`) -> its key's `max_running` (None = no limit). Awaited once per owner and pass.
MaxRunning = Callable[[str], Awaitable[int | None]]


async def no_limit(owner: str) -> int | None:
    """A `MaxRunning` for deployments without keys: no owner is limited."""
    return None


@dataclass
class Dispatch:
    """What one dispatcher pass did.

    free: worker slots free at its start. handed: ids sent to Celery, in order. full: owners
    passed over because they had `max_running` jobs out.
    """

    free: int = 0
    handed: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)


async def free_slots(jobs: AsyncJobStore, settings: Settings, now_s: float) -> int:
    """Worker slots free now (may be negative): see step 1 of the module docstring.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    w = settings.worker
    capacity = max(await jobs.live_workers(within_s=3 * w.heartbeat_s), 1) * w.concurrency
    busy = await broker_job_ids(jobs.r, BrokerKeys.of(settings), w.queue, now_s - w.lease_s)
    running = await jobs.running_ids()
    if running:
        p = jobs.r.pipeline(transaction=False)
        for job_id in running:
            p.hget(jobs.keys.job(job_id), "lease_expires_ms")
        now_ms = int(now_s * 1000)
        busy |= {j for j, exp in zip(running, await p.execute(), strict=True) if int(as_str(exp or 0)) > now_ms}
    return capacity - len(busy)


async def dispatch_once(
    jobs: AsyncJobStore,
    celery: Celery,
    settings: Settings,
    max_running: MaxRunning = no_limit,
    *,
    now_s: float | None = None,
) -> Dispatch:
    """One dispatcher pass (see the module docstring).

    Args:
        max_running: each owner's limit of jobs handed out and not ended.
        now_s: now (s since the epoch); None = the clock.
    Raises:
        redis.RedisError: Redis does not answer (a job taken and not sent is put back by the reconciler).
        kombu.exceptions.OperationalError: the broker does not answer (the job taken is held again).
    """
    now_s = time.time() if now_s is None else now_s
    d = DispatchStore(jobs.r, jobs.keys)
    out = Dispatch(free=await free_slots(jobs, settings, now_s))
    limits: dict[str, int | None] = {}
    while len(out.handed) < out.free:
        owners = [o for o in await d.ring() if o not in out.full]
        if not owners:
            break
        owner = owners[0]
        if owner not in limits:
            limits[owner] = await max_running(owner)
        outcome, job_id = await d.take(owner, limits[owner], int(now_s * 1000))
        if outcome == "full":
            out.full.append(owner)
            continue
        if outcome == "empty":
            continue
        try:
            await anyio.to_thread.run_sync(functools.partial(enqueue, celery, job_id, settings.worker.queue))
        except Exception:
            await d.put_back(job_id, owner, int(now_s * 1000))
            raise
        await d.done(job_id)
        out.handed.append(job_id)
        log.info("job_dispatched", job_id=job_id, owner=owner)
    return out


async def _wake_or_timeout(wake: asyncio.Event, timeout_s: float) -> None:
    """Return when `wake` is set or after `timeout_s`. `asyncio.wait` neither raises on the timeout
    nor turns a cancellation into one (a timeout that fires as the lifespan cancels the loop must
    not swallow the cancellation), so the loop always stops when cancelled."""
    waiter = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout_s)
    finally:
        waiter.cancel()


async def run_forever(
    jobs: AsyncJobStore, celery: Celery, settings: Settings, max_running: MaxRunning, wake: asyncio.Event
) -> None:
    """A dispatcher pass every API_DISPATCH_INTERVAL_S, or when `wake` is set, while holding the
    dispatcher lock; never raises."""
    interval = settings.api.dispatch_interval_s
    ttl_ms = int(max(interval * 5, 2.0) * 1000)
    lock = LeaderLock(jobs.r, jobs.keys.dispatcher_lock(), f"{socket.gethostname()}:{os.getpid()}", ttl_ms)
    me_task = asyncio.current_task()
    while True:
        # A cancellation that a Redis client turned into another error (it lands inside a command
        # five times a second here) must still stop the loop: the task remembers it was cancelled.
        if me_task is not None and me_task.cancelling():
            raise asyncio.CancelledError
        await _wake_or_timeout(wake, interval)
        wake.clear()
        try:
            if await lock.hold():
                await dispatch_once(jobs, celery, settings, max_running)
        except Exception as e:  # a failed pass must not end the loop: the next one starts over
            log.warning(
                "dispatch_failed",
                error=repr(e),
                exc_info=not isinstance(e, (redis.RedisError, OSError, OperationalError)),
            )
            await asyncio.sleep(interval)
