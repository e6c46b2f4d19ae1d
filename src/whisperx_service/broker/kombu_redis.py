"""The one module that reads kombu's Redis transport structures (kombu 5.x, `kombu.transport.redis`).

Celery keeps its broker state in Redis through kombu. Every key carries kombu's
`global_keyprefix`, here `"<REDIS_KEY_PREFIX>:"`, so two deployments can share one Redis (their
job keys are namespaced the same way, see `store/keys.py`). With global prefix `P`:

- a queue `q` waits in Redis lists, one per priority step: `P + q` (priority 0) and
  `P + q + "\\x06\\x16" + step` for the other steps of `PRIORITY_STEPS` (3, 6, 9); a message is
  JSON with the task id in `headers.id` (Celery's protocol 2) or `properties.correlation_id`;
- a message delivered to a worker and not yet acknowledged sits in the hash `P + "unacked"`
  (delivery tag -> JSON `[message, exchange, routing key]`) and in the sorted set
  `P + "unacked_index"` (delivery tag scored by delivery time, s since the epoch); kombu puts it
  back on its queue when the worker's connection closes, or after the visibility timeout.

`tests/integration/test_kombu_adapter.py` pins exactly this behaviour of the kombu version in
use; the reconciler reads the broker only through `broker_job_ids`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from whisperx_service.config import Settings


def global_keyprefix(settings: Settings) -> str:
    """kombu's `global_keyprefix` for this deployment: `"<REDIS_KEY_PREFIX>:"`."""
    return f"{settings.redis.key_prefix}:"


def transport_options(settings: Settings) -> dict[str, Any]:
    """Celery's `broker_transport_options`: the visibility timeout (s) and the global key prefix."""
    return {"visibility_timeout": settings.worker.visibility_timeout_s, "global_keyprefix": global_keyprefix(settings)}


@dataclass(frozen=True, slots=True)
class BrokerKeys:
    """The Redis keys kombu uses under one global key prefix."""

    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> BrokerKeys:
        """The keys of this deployment's broker."""
        return cls(global_keyprefix(settings))

    def queue(self, queue: str) -> list[str]:
        """The lists a queue's waiting messages are in: one per priority step, priority 0 first."""
        return [self.prefix + (f"{queue}{Channel.sep}{p}" if p else queue) for p in PRIORITY_STEPS]

    def unacked(self) -> str:
        """Hash: delivery tag -> JSON `[message, exchange, routing key]` of unacknowledged messages."""
        return self.prefix + Channel.unacked_key

    def unacked_index(self) -> str:
        """Sorted set: delivery tag -> delivery time (s since the epoch)."""
        return self.prefix + Channel.unacked_index_key


def task_id(message: Any) -> str | None:
    """The task id (= job id) of a kombu message (a dict, or its JSON as bytes or str); None if it has none."""
    try:
        msg = json.loads(message) if isinstance(message, (bytes, str)) else message
        found = msg.get("headers", {}).get("id") or msg.get("properties", {}).get("correlation_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _unacked_task_id(raw: Any, queue: str | None = None) -> str | None:
    """The task id of an `unacked` hash value (JSON `[message, exchange, routing key]`); with
    `queue`, only of a message delivered from that queue (its routing key: Celery sends to a queue
    through the default exchange, routing key = queue name). The hash is shared by every queue of
    the deployment (the outbound worker's messages sit there too)."""
    try:
        message, _exchange, routing_key = json.loads(raw)
        return task_id(message) if queue is None or routing_key == queue else None
    except (ValueError, IndexError, TypeError, KeyError):
        return None


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


async def broker_job_ids(r: aioredis.Redis, keys: BrokerKeys, queue: str, delivered_after_s: float) -> set[str]:
    """Job ids whose task message the broker holds: waiting in `queue`, or delivered from `queue`
    to a worker at or after `delivered_after_s` (s since the epoch) and not acknowledged yet.

    A message delivered earlier and still unacknowledged belongs to a worker that died (or hangs)
    before claiming its job.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    p = r.pipeline(transaction=False)
    for key in keys.queue(queue):
        p.lrange(key, 0, -1)
    p.hgetall(keys.unacked())
    p.zrangebyscore(keys.unacked_index(), delivered_after_s, "+inf")
    *lists, unacked, fresh = await p.execute()
    ids = {i for messages in lists for i in map(task_id, messages) if i}
    fresh_tags = {_text(t) for t in fresh}
    for tag, raw in unacked.items():
        if _text(tag) in fresh_tags and (found := _unacked_task_id(raw, queue)):
            ids.add(found)
    return ids


def waiting_job_ids(r: redis.Redis, keys: BrokerKeys, queue: str) -> list[str]:
    """Job ids of the messages waiting in `queue` (every priority step), oldest first within a step.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    out: list[str] = []
    for key in keys.queue(queue):
        out += [i for i in map(task_id, reversed(r.lrange(key, 0, -1))) if i]
    return out


def unacked_job_ids(r: redis.Redis, keys: BrokerKeys) -> list[str]:
    """Job ids of messages delivered to a worker and not acknowledged yet (any order).

    Raises:
        redis.RedisError: Redis does not answer.
    """
    return [i for i in map(_unacked_task_id, r.hvals(keys.unacked())) if i]
