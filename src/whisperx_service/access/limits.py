"""Request rate limits on Redis, shared by every gateway process (the `limits` library).

Three limits, each a `limits` rate string (e.g. `"600/minute"`): requests per API key
(AUTH_KEY_RATE_LIMIT), requests per client address (AUTH_ADDRESS_RATE_LIMIT), and failed
authentications per client address (AUTH_FAILURES_LIMIT). The sliding-window-counter strategy
keeps two counters per limit and identity in Redis, under `<REDIS_KEY_PREFIX>:limits`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from whisperx_service.config import Settings
from whisperx_service.store.keys import Keys


def _async_uri(redis_url: str) -> str:
    """The `limits` storage URI of a Redis URL (its asyncio flavour)."""
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


class RequestLimiter:
    """The gateway's rate limits (see the module docstring).

    Args (constructor):
        client: the gateway's Redis client, whose connection pool and retry policy are shared.
    Raises (constructor):
        ValueError: a limit is not in `limits` notation.
    """

    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        # On the gateway's own connection pool and retry policy, so a Redis restart costs no request;
        # `limits` passes these options on to redis-py (its annotation names only scalar options).
        shared: dict[str, Any] = {"connection_pool": client.connection_pool, "retry": client.get_retry()}
        storage = RedisStorage(
            _async_uri(settings.redis.url),
            implementation="redispy",
            key_prefix=Keys.of(settings).rate_limits(),
            **shared,
        )
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.per_key: RateLimitItem = parse(settings.auth.key_rate_limit)
        self.per_address: RateLimitItem = parse(settings.auth.address_rate_limit)
        self.failures: RateLimitItem = parse(settings.auth.failures_limit)

    async def _retry_after(self, item: RateLimitItem, *ids: str) -> int:
        stats = await self.limiter.get_window_stats(item, *ids)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def failures_exhausted(self, address: str) -> int | None:
        """Seconds to wait when `address` used up its failed authentications, else None."""
        if await self.limiter.test(self.failures, "auth-failures", address):
            return None
        return await self._retry_after(self.failures, "auth-failures", address)

    async def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        await self.limiter.hit(self.failures, "auth-failures", address)

    async def request(self, key_id: str | None, address: str) -> int | None:
        """Count one request; seconds to wait when the key or the address is over its limit, else None."""
        if not await self.limiter.hit(self.per_address, "address", address):
            return await self._retry_after(self.per_address, "address", address)
        if key_id is not None and not await self.limiter.hit(self.per_key, "key", key_id):
            return await self._retry_after(self.per_key, "key", key_id)
        return None
