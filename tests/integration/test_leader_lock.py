"""`store.locks.LeaderLock` on the real test Redis: one holder at a time, extended only by its holder."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from whisperx_service.store.locks import LeaderLock


def test_one_holder_at_a_time_and_only_the_holder_extends(redis_url: str, redis_client: redis.Redis) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            a = LeaderLock(client, "test:lock", "host-a:1", 300)
            b = LeaderLock(client, "test:lock", "host-b:2", 300)
            assert await a.hold()
            assert not await b.hold()
            assert redis_client.get("test:lock") == b"host-a:1"
            await asyncio.sleep(0.2)
            assert await a.hold()  # extended: 300 ms from now again
            assert 200 < redis_client.pttl("test:lock") <= 300
            # A holder that lost its lock (expired, taken by another) gets nothing back from hold():
            # it never extends the other's lock.
            time.sleep(0.35)
            assert await b.hold()
            ttl_b = redis_client.pttl("test:lock")
            assert not await a.hold()
            assert redis_client.get("test:lock") == b"host-b:2"
            assert redis_client.pttl("test:lock") <= ttl_b
        finally:
            await client.aclose()

    asyncio.run(main())
