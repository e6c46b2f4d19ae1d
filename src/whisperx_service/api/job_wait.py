"""Waiting on a job inside a request (the OpenAI-compatible routes answer when the job ends).

The wait follows the job's event stream through the gateway's `EventHub` (one Redis reader per
job per process, no polling of storage): it returns at the terminal event, or when the record
says the job ended. Each waiting request is counted in Redis (`Keys.job_waiters`); when a client
disconnects before the end and no other request waits on the job for API_OPENAI_CANCEL_GRACE_S
(an SDK's retry with the same Idempotency-Key comes back within it), the job is cancelled through
the cancel path of DELETE /v1/jobs/{id}.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request

from whisperx_service.api.event_hub import EventHub, HubEvent, StreamEnd
from whisperx_service.api.submit import cancel_quietly
from whisperx_service.domain.jobs import JobRecord
from whisperx_service.errors import JobNotFound
from whisperx_service.logs import get_logger
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.keys import Keys

log = get_logger(__name__)

#: Seconds between two looks at the record after the job's event stream failed under its reader.
RETRY_S = 0.5
#: Seconds a waiter count outlives its last change (a gateway that died while waiting).
WAITERS_TTL_S = 7 * 86400


async def follow_job(hub: EventHub, jobs: AsyncJobStore, job_id: str) -> AsyncIterator[HubEvent]:
    """Every event of the job from its start until its end (the terminal event is the last one
    given); ends at once, giving nothing, when the job has already ended.

    A subscription that falls behind or fails is taken up again after the last event given, so no
    event is given twice.

    Raises:
        JobNotFound: the job is gone (purged).
        redis.RedisError: Redis does not answer.
    """
    after = (0, 0)
    while True:
        record = await jobs.get(job_id)
        if record is None:
            raise JobNotFound(f"job {job_id} not found")
        if record.status.terminal:
            return
        async with hub.subscribe(job_id, after, live=True) as sub:
            async for event in sub.events():
                yield event
                if event.terminal:
                    return
            after, end = sub.last, sub.end
        if end is not None and end is not StreamEnd.ended:
            await asyncio.sleep(RETRY_S)  # behind or failed: read the record, then subscribe again


async def ended_record(jobs: AsyncJobStore, job_id: str) -> JobRecord:
    """The record of a job that `follow_job` saw end.

    Raises:
        JobNotFound: the job is gone (purged). redis.RedisError: Redis does not answer.
    """
    record = await jobs.get(job_id)
    if record is None:
        raise JobNotFound(f"job {job_id} not found")
    return record


async def wait_for_end(hub: EventHub, jobs: AsyncJobStore, job_id: str) -> JobRecord:
    """The job's record once it is terminal (succeeded, failed or cancelled).

    Raises:
        JobNotFound: the job is gone (purged).
        redis.RedisError: Redis does not answer.
    """
    async for _ in follow_job(hub, jobs, job_id):
        pass
    return await ended_record(jobs, job_id)


async def disconnected(request: Request) -> None:
    """Return once the client has gone (`http.disconnect`); the body must have been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Waiters:
    """Counts the requests waiting on one job; the last one to leave early cancels it after a grace."""

    def __init__(self, request: Request, job_id: str) -> None:
        state = request.app.state
        self.redis: aioredis.Redis = state.redis
        self.key = Keys.of(state.settings).job_waiters(job_id)
        self.jobs: AsyncJobStore = state.jobs
        self.storage: Storage = state.storage
        self.grace_s: float = state.settings.api.openai_cancel_grace_s
        self.background: set[asyncio.Task[Any]] = state.background
        self.job_id = job_id

    async def enter(self) -> None:
        """Count this request as waiting.

        Raises:
            redis.RedisError: Redis does not answer.
        """
        p = self.redis.pipeline(transaction=True)
        p.incr(self.key)
        p.expire(self.key, WAITERS_TTL_S)
        await p.execute()

    async def leave(self) -> None:
        """This request got its answer."""
        with contextlib.suppress(Exception):
            await self.redis.decr(self.key)

    def abandon(self) -> None:
        """This request's client left before the end: stop counting it and, in the background,
        cancel the job if nobody waits on it after the grace."""
        task = asyncio.create_task(self._abandon())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _abandon(self) -> None:
        try:
            await self.redis.decr(self.key)
            await asyncio.sleep(self.grace_s)
            if int(await self.redis.get(self.key) or 0) > 0:
                return
            outcome = await cancel_quietly(self.jobs, self.storage, self.job_id, "client_disconnected")
            log.info("job_cancelled_on_disconnect", job_id=self.job_id, outcome=outcome)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("disconnect_cancel_failed", job_id=self.job_id, error=repr(e))


async def wait_while_connected(request: Request, hub: EventHub, job_id: str) -> JobRecord | None:
    """Wait for the job's end while the client stays; None when the client left first (the job is
    then cancelled after the grace unless another request waits on it).

    Raises:
        JobNotFound: the job is gone. redis.RedisError: Redis does not answer.
    """
    waiters = Waiters(request, job_id)
    await waiters.enter()
    wait = asyncio.create_task(wait_for_end(hub, waiters.jobs, job_id))
    watch = asyncio.create_task(disconnected(request))
    try:
        done, _ = await asyncio.wait({wait, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        waiters.abandon()
        raise
    finally:
        for task in (wait, watch):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    if wait in done:
        try:
            return wait.result()
        finally:
            await waiters.leave()
    waiters.abandon()
    return None
