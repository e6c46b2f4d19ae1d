"""Webhook deliveries in Redis: the hook that records an event, the outbound schedule, the attempt log.

The hook (`HOOK`, one Lua step) runs where a job ends or enters a stage. It reads the job's
options (`webhook_url`, `webhook_events`) from its hash and, when the job wants the event,
records a delivery (id = `webhook-id`, fixed per job and event, so a second call is a no-op) and
puts it on the outbound schedule, due now. It touches nothing of the job itself: a job ends the
same with or without a webhook, and the hook's caller logs its errors and goes on.

The schedule (`Keys.outbound_due`) is a sorted set of `webhook:<id>` scored by when each is due
(ms since the epoch). The outbound worker takes what is due (`take_due`), which pushes each item
a lease ahead instead of removing it; an attempt then either reschedules it (a retry) or removes
it (delivered, gone, exhausted). A worker killed mid-attempt loses nothing: its item comes due
again when the lease runs out.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import redis
import redis.asyncio as aioredis

from whisperx_service.domain.webhooks import DeliveryState, WebhookAttempt, WebhookDelivery, delivery_id
from whisperx_service.store.keys import Keys
from whisperx_service.store.records import as_str, decode_hash

#: The schedule's member prefix of a webhook delivery.
WEBHOOK_ITEM = "webhook:"

# KEYS[1]=job hash KEYS[2]=delivery hash KEYS[3]=job's delivery list KEYS[4]=outbound schedule
# ARGV[1]=job id ARGV[2]=event (`ended` | `stage.<name>`) ARGV[3]=delivery id ARGV[4]=now ms
# Returns 1 when a delivery was recorded, 0 when the job wants none (or has it already).
HOOK = """
local raw = redis.call('HGET', KEYS[1], 'options')
if not raw or raw == '' then return 0 end
local ok, options = pcall(cjson.decode, raw)
if not ok or type(options) ~= 'table' then return 0 end
local url = options['webhook_url']
if type(url) ~= 'string' or url == '' then return 0 end
if string.sub(ARGV[2], 1, 6) == 'stage.' and options['webhook_events'] ~= 'progress' then return 0 end
if redis.call('HSETNX', KEYS[2], 'job_id', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'event', ARGV[2], 'url', url, 'created_ms', ARGV[4], 'attempts', '0',
  'state', 'pending', 'owner_id', redis.call('HGET', KEYS[1], 'owner_id') or '')
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], 'webhook:' .. ARGV[3])
return 1
"""

# KEYS[1]=outbound schedule ARGV[1]=now ms ARGV[2]=lease ms ARGV[3]=most items
TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, item in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), item)
end
return due
"""

# KEYS[1]=delivery hash KEYS[2]=attempt list KEYS[3]=outbound schedule
# ARGV[1]=attempt JSON ARGV[2]=state ARGV[3]=next due ms ('' = no more attempts) ARGV[4]=schedule item
# ARGV[5]=the attempt number this is (fenced: a duplicate of an attempt already recorded is refused)
RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1 ~= tonumber(ARGV[5]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'attempts', ARGV[5], 'state', ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
end
return 1
"""


def hook_args(keys: Keys, job_id: str, event: str, now_ms: int) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of `HOOK` for `event` of a job."""
    did = delivery_id(job_id, event)
    return (
        [keys.job(job_id), keys.delivery(did), keys.job_deliveries(job_id), keys.outbound_due()],
        [job_id, event, did, str(now_ms)],
    )


def job_event(r: redis.Redis, keys: Keys, job_id: str, event: str, now_ms: int) -> bool:
    """Run the hook (sync client): record `event` of the job as a delivery when the job wants it.

    Returns:
        True when a delivery was recorded.
    Raises:
        redis.RedisError: Redis does not answer (the job is unaffected; log and go on).
    """
    k, a = hook_args(keys, job_id, event, now_ms)
    return bool(r.eval(HOOK, len(k), *k, *a))


async def job_event_async(r: aioredis.Redis, keys: Keys, job_id: str, event: str, now_ms: int) -> bool:
    """`job_event` on an asyncio client (the gateway).

    Raises:
        redis.RedisError: Redis does not answer.
    """
    k, a = hook_args(keys, job_id, event, now_ms)
    out = r.eval(HOOK, len(k), *k, *a)
    return bool(await out if isinstance(out, Awaitable) else out)


class WebhookStore:
    """The outbound worker's view of deliveries (sync client)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r, self.keys = client, keys
        self._take = client.register_script(TAKE_DUE)
        self._record = client.register_script(RECORD)

    def take_due(self, now_ms: int, lease_ms: int, limit: int = 100) -> list[str]:
        """The schedule's items due by `now_ms`, each pushed `lease_ms` ahead (one step)."""
        return [as_str(x) for x in self._take(keys=[self.keys.outbound_due()], args=[now_ms, lease_ms, limit])]

    def delivery(self, did: str) -> dict[str, str]:
        """The delivery's hash (empty when it is gone: its job was purged)."""
        return decode_hash(self.r.hgetall(self.keys.delivery(did)))

    def set_body(self, did: str, body: str) -> str:
        """Keep the delivery's body (JSON) from its first attempt on; returns the kept one, so
        every retry sends the same bytes."""
        self.r.hsetnx(self.keys.delivery(did), "body", body)
        return as_str(self.r.hget(self.keys.delivery(did), "body") or body)

    def job(self, job_id: str) -> dict[str, str]:
        """The job's hash (empty when unknown)."""
        return decode_hash(self.r.hgetall(self.keys.job(job_id)))

    def record(self, did: str, attempt: WebhookAttempt, state: DeliveryState, next_due_ms: int | None) -> bool:
        """Log an attempt, set the delivery's state and its next due time (None: it is done).

        Returns:
            False when the attempt was recorded already (a duplicate) or the delivery is gone.
        """
        return bool(
            self._record(
                keys=[self.keys.delivery(did), self.keys.delivery_attempts(did), self.keys.outbound_due()],
                args=[
                    attempt.model_dump_json(),
                    state.value,
                    "" if next_due_ms is None else next_due_ms,
                    WEBHOOK_ITEM + did,
                    attempt.attempt,
                ],
            )
        )

    def lock(self, item: str, ms: int, token: str) -> bool:
        """Hold `item` for `ms` (one worker thread at a time); False when another holds it."""
        return bool(self.r.set(self.keys.outbound_lock(item), token, nx=True, px=ms))

    def unlock(self, item: str, token: str) -> None:
        """Let go of `item` if this token still holds it."""
        self.r.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            1,
            self.keys.outbound_lock(item),
            token,
        )


async def job_deliveries(r: aioredis.Redis, keys: Keys, job_id: str) -> list[WebhookDelivery]:
    """Every delivery of a job with its attempts, in the order the events happened."""
    out: list[WebhookDelivery] = []
    for raw_id in await r.lrange(keys.job_deliveries(job_id), 0, -1):
        did = as_str(raw_id)
        h = decode_hash(await r.hgetall(keys.delivery(did)))
        if not h:
            continue
        attempts: list[Any] = [json.loads(as_str(a)) for a in await r.lrange(keys.delivery_attempts(did), 0, -1)]
        out.append(
            WebhookDelivery(
                id=did,
                type="job." + h.get("event", "ended").split(".", 1)[0],
                state=DeliveryState(h.get("state", "pending")),
                attempts=[WebhookAttempt.model_validate(a) for a in attempts],
            )
        )
    return out
