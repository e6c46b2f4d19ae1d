"""The gateway's read-only queries over the job indexes: the paged job list and one key's usage.

`JobQueries` is a base of `AsyncJobStore` (it reads `self.r` and `self.keys`); kept apart because
these walk indexes (the jobs index, an owner's index) rather than change one job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from whisperx_service.domain.jobs import JobRecord, JobStatus
from whisperx_service.store.cursor import LIST_BATCH, LIST_SCAN_MAX, decode_cursor, encode_cursor
from whisperx_service.store.keys import Keys
from whisperx_service.store.records import as_str, decode_hash


@dataclass
class OwnerUsage:
    """One key's use of the service (see `AsyncJobStore.owner_usage`)."""

    queued: int = 0
    running: int = 0
    stored_bytes: int = 0
    audio_s: float = 0.0
    recent_created_ms: list[int] = field(default_factory=list)


class JobQueries:
    """Index walks of the gateway's store (see the module docstring)."""

    r: aioredis.Redis
    keys: Keys

    async def list_jobs(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        owner_id: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """Jobs newest first (by creation ms, then id descending), `limit` at most, from `cursor` on.

        The cursor is a position, not an offset: jobs created or removed between pages neither
        shift nor repeat the rest. Index entries whose job hash is gone are skipped.

        Args:
            status: only jobs in this status (None = all).
            limit: page size, >= 1.
            cursor: `next_cursor` of the previous page; None = from the newest job.
            owner_id: only jobs this key created (None = every job).
        Returns:
            (the page's jobs, the cursor of the next page or None when nothing follows). A
            filtered page may hold fewer than `limit` jobs when LIST_SCAN_MAX entries were examined.
        Raises:
            ValueError: the cursor is not one this service made.
        """
        last = decode_cursor(cursor) if cursor else None  # position of the last entry examined
        index = self.keys.owner_jobs(owner_id) if owner_id is not None else self.keys.jobs_index()
        size = limit + 1 if status is None else LIST_BATCH
        page: list[JobRecord] = []
        scanned = 0
        while scanned < LIST_SCAN_MAX:
            batch = await self._index_after(index, last, size)
            if not batch:
                return page, None
            p = self.r.pipeline(transaction=False)
            for _, job_id in batch:
                p.hgetall(self.keys.job(job_id))
            for pos, raw in zip(batch, await p.execute(), strict=True):
                h = decode_hash(raw)
                if h and (status is None or h.get("status") == status.value):
                    if len(page) == limit:  # a further match exists: the next page starts after `last`
                        assert last is not None
                        return page, encode_cursor(*last)
                    page.append(JobRecord.from_hash(h))
                last = pos
                scanned += 1
        return page, encode_cursor(*last) if last else None

    async def _index_after(self, key: str, pos: tuple[int, str] | None, count: int) -> list[tuple[int, str]]:
        """Up to `count` entries `(created_ms, id)` of the index `key` strictly after `pos`, newest first.

        Order: created ms descending, then id descending (Redis orders equal scores by member),
        so equal creation times neither skip nor repeat a job across pages.
        """
        out: list[tuple[int, str]] = []
        top: str | int = "+inf"
        if pos is not None:
            ms, after_id = pos
            tied: list[Any] = await self.r.zrangebyscore(key, ms, ms)
            ties = sorted((m for m in map(as_str, tied) if m < after_id), reverse=True)
            out = [(ms, m) for m in ties[:count]]
            top = f"({ms}"
        if len(out) < count:
            raw: list[Any] = await self.r.zrevrangebyscore(
                key, top, "-inf", start=0, num=count - len(out), withscores=True
            )
            out += [(int(score), as_str(m)) for m, score in raw]
        return out

    async def owner_usage(self, owner_id: str, since_ms: int) -> OwnerUsage:
        """What one key's jobs hold now: queued and running jobs, stored upload bytes, and the audio
        seconds of the jobs it created since `since_ms` (ms since the epoch; durations known so far).
        """
        members: list[Any] = await self.r.zrange(self.keys.owner_jobs(owner_id), 0, -1)
        ids = [as_str(x) for x in members]
        p = self.r.pipeline(transaction=False)
        for job_id in ids:
            p.hmget(self.keys.job(job_id), ["status", "size_bytes", "duration_s", "created_ms"])
        usage = OwnerUsage()
        for status, size, duration, created in await p.execute():
            if status is None:
                continue
            usage.queued += as_str(status) == JobStatus.queued.value
            usage.running += as_str(status) == JobStatus.running.value
            usage.stored_bytes += int(size or 0)
            if int(created or 0) >= since_ms:
                usage.audio_s += float(duration or 0.0)
                usage.recent_created_ms.append(int(created or 0))
        return usage
