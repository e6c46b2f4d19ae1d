"""The gateway's job store (async Redis): create, read, cancel, purge, list, and the reconciler's views.

Every state change goes through the Lua scripts in `scripts.py`, so a status change and its event
are one step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobRecord, utcnow
from whisperx_service.domain.keys import KeyOwner
from whisperx_service.store import scripts
from whisperx_service.store.jobs import end_keys
from whisperx_service.store.keys import Keys
from whisperx_service.store.queries import JobQueries
from whisperx_service.store.records import (
    TERMINAL_VALUES,
    Event,
    as_str,
    decode_hash,
    flat_args,
    iso_to_ms,
    new_job_hash,
    now_ms,
    score_pairs,
    stream_entries,
)

#: The dispatch owner of jobs created with auth off (no key).
NO_OWNER = "-"


def owner_of(h: Mapping[str, str]) -> str:
    """The dispatch owner of a job hash: its key's id, or `NO_OWNER`."""
    return h.get("owner_id") or NO_OWNER


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What `AsyncJobStore.cancel` did.

    outcome: `cancelled` (it was queued and is now cancelled, terminal), `cancelling` (it is running:
    cancel requested, the worker ends it at its next progress point), `terminal` (it had already ended:
    `status` says how) or `missing` (no such job).
    """

    outcome: Literal["cancelled", "cancelling", "terminal", "missing"]
    status: str


class AsyncJobStore(JobQueries):
    """Asynchronous job store (the gateway's)."""

    @classmethod
    def from_settings(cls, client: aioredis.Redis, settings: Settings) -> AsyncJobStore:
        """A store on `client` with REDIS_KEY_PREFIX and REDIS_EVENTS_MAXLEN."""
        return cls(client, Keys.of(settings), events_maxlen=settings.redis.events_maxlen)

    def __init__(self, client: aioredis.Redis, keys: Keys, *, events_maxlen: int = 10_000) -> None:
        self.r = client
        self.keys = keys
        self.maxlen = events_maxlen
        self._create = client.register_script(scripts.CREATE)
        self._finish = client.register_script(scripts.FINISH)
        self._cancel = client.register_script(scripts.CANCEL)
        self._reap = client.register_script(scripts.REAP)
        self._mark_requeued = client.register_script(scripts.MARK_REQUEUED)
        self._restore = client.register_script(scripts.RESTORE)

    async def create(
        self,
        job_id: str,
        options: JobOptions,
        *,
        filename: str | None,
        size_bytes: int,
        owner: KeyOwner | None = None,
        duration_s: float | None = None,
        fetch_url: str | None = None,
    ) -> JobRecord:
        """Record a new queued job (owned by `owner`), publish its `queued` event and hold it on its
        owner's pending list for the dispatcher (one step).

        Args:
            duration_s: the audio duration the gateway probed (s), when the container states one.
            fetch_url: the source is still to be fetched from this URL: the job is put on the
                outbound schedule (`fetch:<id>`) instead of being held (see `store/fetches.py`).
        Raises:
            ValueError: another job with this id exists.
            redis.RedisError: Redis does not answer (the job may exist: undo with `delete`).
        """
        created_ms = int(time.time() * 1000)
        h = new_job_hash(
            job_id,
            options,
            filename=filename,
            size_bytes=size_bytes,
            created_ms=created_ms,
            owner=owner,
            duration_s=duration_s,
        )
        if fetch_url is not None:
            h |= {"fetching": "1", "source_url": fetch_url}
        ok = await self._create(
            keys=[
                self.keys.job(job_id),
                self.keys.events(job_id),
                self.keys.jobs_index(),
                self.keys.metrics(),
                self.keys.owner_jobs(owner_of(h)),
                self.keys.pending(owner_of(h)),
                self.keys.dispatch_ring(),
                self.keys.dispatch_served(),
                self.keys.outbound_due(),
            ],
            args=[created_ms, self.maxlen, job_id, owner_of(h), *flat_args(h)],
        )
        # The client resends a command once after a lost connection: a job with this id and this
        # creation time is this call's own, created before the reply was lost.
        if not ok and as_str(await self.r.hget(self.keys.job(job_id), "created_ms") or b"") != str(created_ms):
            raise ValueError(f"job {job_id} exists")
        await self.r.hincrby(self.keys.metrics(), "upload_bytes", size_bytes)
        return JobRecord.from_hash(h)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown."""
        h = await self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(decode_hash(h)) if h else None

    async def delete(self, job_id: str) -> None:
        """Forget a job entirely: the undo of a submission that failed after `create` was called
        (a held id whose hash is gone is dropped by the dispatcher)."""
        await self.purge(job_id)

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job atomically: a queued one at once, a running one by request (see `CancelOutcome`)."""
        out = await self._cancel(
            keys=[
                self.keys.job(job_id),
                self.keys.events(job_id),
                self.keys.metrics(),
                self.keys.running(),
                self.keys.finished(),
            ],
            args=[utcnow().isoformat(), int(time.time() * 1000), self.maxlen],
        )
        outcome, status = (as_str(x) for x in out)
        return CancelOutcome(outcome, status)  # type: ignore[arg-type]

    async def purge(self, job_id: str) -> None:
        """Remove every Redis key of an ended job: its hash, events, index entries and webhook deliveries.

        Only for a terminal job (a running worker would lose its state); the caller checks that.
        """
        owner = await self.r.hget(self.keys.job(job_id), "owner_id")
        deliveries = [as_str(d) for d in await self.r.lrange(self.keys.job_deliveries(job_id), 0, -1)]
        p = self.r.pipeline(transaction=True)
        p.delete(self.keys.job(job_id), self.keys.events(job_id), self.keys.job_deliveries(job_id))
        for d in deliveries:
            p.delete(self.keys.delivery(d), self.keys.delivery_attempts(d))
            p.zrem(self.keys.outbound_due(), f"webhook:{d}")
        p.zrem(self.keys.outbound_due(), f"fetch:{job_id}")
        p.zrem(self.keys.jobs_index(), job_id)
        if owner:
            p.zrem(self.keys.owner_jobs(as_str(owner)), job_id)
        p.zrem(self.keys.finished(), job_id)
        p.srem(self.keys.running(), job_id)
        await p.execute()

    async def read_events(self, job_id: str, after: str, block_ms: int | None, count: int = 500) -> list[Event]:
        """Up to `count` events with ids greater than `after` (XREAD).

        Args:
            block_ms: wait up to this many ms for the first one (XREAD BLOCK); None = do not wait.
        """
        res: Any = await self.r.xread({self.keys.events(job_id): after}, block=block_ms, count=count)
        out: list[Event] = []
        for _stream, raw in res or []:
            out += stream_entries(raw)
        return out

    async def events_between(self, job_id: str, after: str, upto: str | None, count: int) -> list[Event]:
        """Up to `count` events with `after` < id <= `upto` (None = to the newest), oldest first (XRANGE)."""
        return stream_entries(await self.r.xrange(self.keys.events(job_id), f"({after}", upto or "+", count=count))

    async def status(self, job_id: str) -> str | None:
        """The job's stored status value, or None when Redis holds no such job."""
        raw: Any = await self.r.hget(self.keys.job(job_id), "status")
        return None if raw is None else as_str(raw)

    async def last_event(self, job_id: str) -> Event | None:
        """The newest event in the job's stream, or None when the stream is empty or gone."""
        found = stream_entries(await self.r.xrevrange(self.keys.events(job_id), count=1))
        return found[0] if found else None

    async def newest_events(self, job_id: str, count: int) -> list[Event]:
        """The job's newest `count` events (fewer when the stream holds fewer), oldest first."""
        return stream_entries(await self.r.xrevrange(self.keys.events(job_id), count=count))[::-1]

    async def running_ids(self) -> list[str]:
        """Ids in the running set (jobs a worker claimed and did not finish)."""
        return sorted(as_str(x) for x in await self.r.smembers(self.keys.running()))

    async def reap(self, job_id: str, now_ms: int, *, max_attempts: int, requeue_after_ms: int) -> tuple[str, str]:
        """The reconciler's atomic look at one running job (script REAP).

        Returns:
            (outcome, status): `gone` (no longer running), `alive` (lease live), `ended` (cancel was
            requested, or its workers were lost `max_attempts` times: ended now with `status`),
            `wait` (re-enqueued less than `requeue_after_ms` ago) or `requeue` (lease expired:
            marked, enqueue its task again).
        """
        out = await self._reap(
            keys=end_keys(self.keys, job_id),
            args=[now_ms, max_attempts, utcnow().isoformat(), self.maxlen, requeue_after_ms, job_id],
        )
        outcome, status = (as_str(x) for x in out)
        return outcome, status

    async def unfinished(self, created_before_ms: int) -> dict[str, dict[str, str]]:
        """Jobs created before `created_before_ms` that are not in the finished zset, with their hashes.

        A terminal job missing from the finished zset (ended before that index existed) is added
        to it here, scored by its `finished_at`, so retention finds it; it is not returned.
        """
        idx = await self.r.zdiff([self.keys.jobs_index(), self.keys.finished()], withscores=True)
        ids = [as_str(m) for m, score in score_pairs(idx) if float(score) < created_before_ms]
        out: dict[str, dict[str, str]] = {}
        p = self.r.pipeline(transaction=False)
        for job_id in ids:
            p.hgetall(self.keys.job(job_id))
        for job_id, raw in zip(ids, await p.execute(), strict=True):
            h = decode_hash(raw)
            if not h:
                continue
            if h.get("status") in TERMINAL_VALUES:
                await self.r.zadd(self.keys.finished(), {job_id: iso_to_ms(h.get("finished_at")) or now_ms()})
                continue
            out[job_id] = h
        return out

    async def mark_requeued(self, job_id: str, now_ms: int, requeue_after_ms: int) -> bool:
        """Mark a queued job re-enqueued now; False when it is not queued or was marked < `requeue_after_ms` ago."""
        return bool(await self._mark_requeued(keys=[self.keys.job(job_id)], args=[now_ms, requeue_after_ms]))

    async def restore(self, job_id: str, h: Mapping[str, str], *, created_ms: int, finished_ms: int | None) -> bool:
        """Write a job hash rebuilt from storage, with its indexes and a `restored` event; an
        unfinished job is held on its owner's pending list (the dispatcher hands it out).

        Returns:
            False (nothing written) when Redis already holds the job.
        """
        return bool(
            await self._restore(
                keys=[
                    self.keys.job(job_id),
                    self.keys.events(job_id),
                    self.keys.jobs_index(),
                    self.keys.running(),
                    self.keys.finished(),
                    self.keys.owner_jobs(owner_of(h)),
                    self.keys.pending(owner_of(h)),
                    self.keys.dispatch_ring(),
                    self.keys.dispatch_served(),
                ],
                args=[
                    created_ms,
                    "" if finished_ms is None else finished_ms,
                    self.maxlen,
                    job_id,
                    owner_of(h),
                    *flat_args(h),
                ],
            )
        )

    async def exists(self, *job_ids: str) -> list[bool]:
        """For each id, whether Redis holds its job hash."""
        p = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            p.exists(self.keys.job(job_id))
        return [bool(x) for x in await p.execute()]

    async def finished_before(self, before_ms: int) -> list[str]:
        """Ids of jobs that ended before `before_ms` (ms since the epoch), oldest first."""
        raw: Any = await self.r.zrangebyscore(self.keys.finished(), "-inf", f"({before_ms}")
        return [as_str(x) for x in raw]

    async def finished_ids(self) -> list[str]:
        """Ids of every ended job still indexed (the retention index)."""
        raw: Any = await self.r.zrange(self.keys.finished(), 0, -1)
        return [as_str(x) for x in raw]

    async def owner_of(self, job_id: str) -> str:
        """The dispatch owner of a job (its key's id, or `NO_OWNER` for no key or an unknown job)."""
        raw = await self.r.hget(self.keys.job(job_id), "owner_id")
        return as_str(raw) if raw else NO_OWNER

    async def metrics(self) -> dict[str, str]:
        """The shared counters (see `Keys.metrics`)."""
        return decode_hash(await self.r.hgetall(self.keys.metrics()))

    async def live_workers(self, within_s: float) -> int:
        """Number of workers whose heartbeat is newer than `within_s` seconds."""
        return int(await self.r.zcount(self.keys.workers(), time.time() - within_s, "+inf"))
