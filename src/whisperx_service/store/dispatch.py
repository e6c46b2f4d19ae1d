"""The dispatcher's Redis state: per-owner pending lists, the round-robin ring, the dispatching set.

A job is held from its creation (scripts CREATE and RESTORE append it to its owner's pending list)
until the dispatcher takes it (TAKE: pending list -> dispatching zset and the owner's active set, in
one step), sends its Celery task, and drops it from the dispatching zset (`done`). Whatever fails
between take and done leaves the id in the dispatching zset, where the reconciler finds it
(`stuck`) and puts it back (PUT_BACK) unless the broker has its message. See
maintenance/dispatcher.py for the rules.
"""

from __future__ import annotations

from typing import Any, Literal

import redis.asyncio as aioredis

from whisperx_service.store import scripts
from whisperx_service.store.keys import Keys
from whisperx_service.store.records import TERMINAL_VALUES, as_str

#: What `DispatchStore.take` did (see `scripts.TAKE`); `empty`: the owner had nothing held (it left the ring).
TakeOutcome = Literal["taken", "full", "empty"]


class DispatchStore:
    """Pending lists, ring and dispatching set of one deployment (async Redis)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._take = client.register_script(scripts.TAKE)
        self._leave = client.register_script(scripts.LEAVE)
        self._put_back = client.register_script(scripts.PUT_BACK)

    async def ring(self) -> list[str]:
        """Owners with held jobs, the one served least recently first (ties: by owner id)."""
        raw: list[Any] = await self.r.zrange(self.keys.dispatch_ring(), 0, -1)
        return [as_str(x) for x in raw]

    async def pending(self, owner: str) -> list[str]:
        """The ids an owner has held, oldest first (some may have ended meanwhile: TAKE drops them)."""
        raw: list[Any] = await self.r.lrange(self.keys.pending(owner), 0, -1)
        return [as_str(x) for x in raw]

    async def held(self) -> dict[str, str]:
        """Every id on the pending list of an owner in the ring -> its owner."""
        out: dict[str, str] = {}
        for owner in await self.ring():
            out.update(dict.fromkeys(await self.pending(owner), owner))
        return out

    async def take(self, owner: str, max_running: int | None, now_ms: int) -> tuple[TakeOutcome, str]:
        """Take the owner's oldest held job that can still run, unless it is at `max_running`.

        Held ids that cannot run (ended, purged, or running under a live lease) are dropped on the way.

        Args:
            max_running: jobs of this owner handed out and not ended, at most (None = no limit).
            now_ms: now (ms since the epoch): a lease that expired before it does not count as live.
        Returns:
            (`taken`, id): the id is in the dispatching zset; send its task, then `done` (or `put_back`).
            (`full`, ""): the owner has `max_running` jobs out. (`empty`, ""): nothing held; it left the ring.
        Raises:
            redis.RedisError: Redis does not answer.
        """
        await self.prune_active(owner)
        limit = -1 if max_running is None else max_running
        while True:
            head = await self.r.lindex(self.keys.pending(owner), 0)
            if head is None:
                if await self._leave(keys=[self.keys.pending(owner), self.keys.dispatch_ring()], args=[owner]):
                    return "empty", ""
                continue  # a job was held meanwhile
            job_id = as_str(head)
            out = as_str(
                await self._take(
                    keys=[
                        self.keys.pending(owner),
                        self.keys.dispatch_ring(),
                        self.keys.dispatch_served(),
                        self.keys.dispatch_seq(),
                        self.keys.dispatching(),
                        self.keys.owner_active(owner),
                        self.keys.job(job_id),
                    ],
                    args=[job_id, owner, limit, now_ms],
                )
            )
            if out == "taken":
                return "taken", job_id
            if out == "full":
                return "full", ""

    async def done(self, job_id: str) -> None:
        """The job's task is in the broker: it leaves the dispatching zset."""
        await self.r.zrem(self.keys.dispatching(), job_id)

    async def put_back(self, job_id: str, owner: str, now_ms: int) -> bool:
        """Undo a take whose task was not sent: hold the job again at the head of its owner's list.

        Returns:
            True when held again; False when it was not being dispatched or cannot run any more.
        Raises:
            redis.RedisError: Redis does not answer.
        """
        return bool(
            await self._put_back(
                keys=[
                    self.keys.dispatching(),
                    self.keys.pending(owner),
                    self.keys.dispatch_ring(),
                    self.keys.dispatch_served(),
                    self.keys.owner_active(owner),
                    self.keys.job(job_id),
                ],
                args=[job_id, owner, now_ms],
            )
        )

    async def dispatching(self, taken_before_ms: float = float("inf")) -> list[str]:
        """Ids in the dispatching zset taken before `taken_before_ms` (ms since the epoch), oldest first."""
        raw: list[Any] = await self.r.zrangebyscore(self.keys.dispatching(), "-inf", f"({taken_before_ms}")
        return [as_str(x) for x in raw]

    async def active(self, owner: str) -> list[str]:
        """Ids of the owner's jobs handed out and not seen ended (after `prune_active`: exactly those)."""
        raw: set[Any] = await self.r.smembers(self.keys.owner_active(owner))
        return sorted(as_str(x) for x in raw)

    async def prune_active(self, owner: str) -> None:
        """Drop the owner's ended (or purged) jobs from its active set.

        Only ever removes ended jobs, so a count read after a stale prune is too high, never too low.
        """
        ids = await self.active(owner)
        if not ids:
            return
        p = self.r.pipeline(transaction=False)
        for job_id in ids:
            p.hget(self.keys.job(job_id), "status")
        ended = [j for j, s in zip(ids, await p.execute(), strict=True) if s is None or as_str(s) in TERMINAL_VALUES]
        if ended:
            await self.r.srem(self.keys.owner_active(owner), *ended)
