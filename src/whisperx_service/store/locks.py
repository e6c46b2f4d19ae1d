"""Leader locks in Redis: one gateway process at a time runs the reconciler, the dispatcher, ...

A lock is a string key holding its holder's name with a TTL. Taking it and extending one's own are
one Lua step, so a holder never extends a lock that expired and another process took in between
(a GET followed by a PEXPIRE could).
"""

from __future__ import annotations

import redis.asyncio as aioredis

# KEYS[1]=lock ARGV[1]=holder ARGV[2]=ttl_ms
# Returns 1 when the caller holds the lock for ttl_ms from now (taken or extended), else 0.
_HOLD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class LeaderLock:
    """The lock `key` on `client`, held by `holder` (e.g. `<host>:<pid>`) for `ttl_ms` per `hold()`."""

    def __init__(self, client: aioredis.Redis, key: str, holder: str, ttl_ms: int) -> None:
        self.key, self.holder, self.ttl_ms = key, holder, ttl_ms
        self._hold = client.register_script(_HOLD)

    async def hold(self) -> bool:
        """Take the lock, or extend it when this holder has it; True when it is this holder's now.

        Raises:
            redis.RedisError: Redis does not answer.
        """
        return bool(await self._hold(keys=[self.key], args=[self.holder, self.ttl_ms]))
