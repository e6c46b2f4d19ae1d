"""Idempotent submissions: an `Idempotency-Key` per owner in Redis, from reservation to the job it made.

One string key per (owner, Idempotency-Key) (`Keys.idempotency`) holds JSON:

- `{"state": "pending", "token": ...}` while the first request's upload streams: taken with
  `SET NX PX` (so of two concurrent requests exactly one reserves), with a short lease
  (`PENDING_LEASE_MS`) the request renews while it uploads, so a gateway that dies mid-upload
  frees the key within the lease;
- `{"state": "done", "job_id", "fingerprint", "status", "body"}` once the job exists, kept
  IDEMPOTENCY_TTL_S from then: a repeat with the same fingerprint gets this answer, one with
  another fingerprint is a conflict (the route decides what to answer).

Every change of a reservation checks its token in the same Lua step, so a request whose lease ran
out never overwrites or deletes the reservation of the request that took the key after it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from whisperx_service.store.keys import Keys

#: Lease (ms) of a pending reservation; renewed every third of it while the upload streams.
PENDING_LEASE_MS = 30_000

# KEYS[1]=key ARGV[1]=token ARGV[2]=new value ARGV[3]=ttl_ms. Replace our own reservation. 1 = done.
_COMPLETE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cjson.decode(cur)['token'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS[1]=key ARGV[1]=token ARGV[2]=ttl_ms (0 = delete). Extend or drop our own pending reservation.
_TOUCH = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local v = cjson.decode(cur)
if v['token'] ~= ARGV[1] or v['state'] ~= 'pending' then return 0 end
if tonumber(ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def key_digest(idempotency_key: str) -> str:
    """SHA-256 hex of the client's key: the Redis key holds no client text."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Completed:
    """A key whose first request made a job: its fingerprint and the answer it got."""

    job_id: str
    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reservation:
    """This request holds the key (state pending) until `complete` or `release`."""

    key: str
    token: str


class IdempotencyStore:
    """Reserve, complete, renew and release `Idempotency-Key`s on `client`."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._complete = client.register_script(_COMPLETE)
        self._touch = client.register_script(_TOUCH)

    async def reserve(self, owner_id: str, idempotency_key: str) -> Reservation | Completed | None:
        """Take the key for a first request, or tell what an earlier request left.

        Args:
            owner_id: the API key's id (`-` with auth off): keys of different owners never meet.
            idempotency_key: the client's header value.
        Returns:
            A `Reservation` (this request is the first: upload, then `complete` or `release`), the
            `Completed` answer of the first request, or None while the first request still uploads.
        Raises:
            redis.RedisError: Redis does not answer.
        """
        key = self.keys.idempotency(owner_id, key_digest(idempotency_key))
        token = secrets.token_hex(16)
        value = json.dumps({"state": "pending", "token": token})
        if await self.r.set(key, value, nx=True, px=PENDING_LEASE_MS):
            return Reservation(key, token)
        raw = await self.r.get(key)
        if raw is None:  # the holder released it just now: take it
            if await self.r.set(key, value, nx=True, px=PENDING_LEASE_MS):
                return Reservation(key, token)
            return None
        found = json.loads(raw)
        if found.get("state") != "done":
            return None
        return Completed(found["job_id"], found["fingerprint"], int(found["status"]), found["body"])

    async def complete(self, res: Reservation, done: Completed, ttl_s: float) -> bool:
        """Record the job the reserved request made, kept `ttl_s` seconds (IDEMPOTENCY_TTL_S).

        Returns:
            False when the reservation was lost (its lease ran out and another request took the key).
        Raises:
            redis.RedisError: Redis does not answer.
        """
        value = json.dumps(
            {
                "state": "done",
                "token": res.token,
                "job_id": done.job_id,
                "fingerprint": done.fingerprint,
                "status": done.status,
                "body": done.body,
            }
        )
        return bool(await self._complete(keys=[res.key], args=[res.token, value, int(ttl_s * 1000)]))

    async def renew(self, res: Reservation) -> bool:
        """Extend the pending reservation by `PENDING_LEASE_MS`; False when it is no longer this request's."""
        return bool(await self._touch(keys=[res.key], args=[res.token, PENDING_LEASE_MS]))

    async def release(self, res: Reservation) -> None:
        """Drop the pending reservation (the request failed before its job existed): the key is free again."""
        await self._touch(keys=[res.key], args=[res.token, 0])
