"""Pins the kombu behaviour `broker/kombu_redis.py` relies on, against the real Redis and kombu in use.

A task sent by the service's Celery app waits in the list the adapter names, under the
deployment's REDIS_KEY_PREFIX (kombu's `global_keyprefix`); once a consumer takes it without
acknowledging, it moves to the `unacked` hash and the `unacked_index` sorted set (scored by
delivery time); an acknowledgement removes both; closing the channel of an unacknowledged
message puts it back on its queue. Two deployments with different prefixes never see each
other's messages.
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
from celery import Celery

from whisperx_service.broker.celery_app import (
    OUTBOUND_TASK,
    TRANSCRIBE_TASK,
    enqueue,
    make_celery,
    make_outbound_celery,
)
from whisperx_service.broker.kombu_redis import BrokerKeys, broker_job_ids, unacked_job_ids, waiting_job_ids
from whisperx_service.config import RedisSettings, Settings

JOB_A = "a" * 32
JOB_B = "b" * 32


def _app(settings: Settings, prefix: str) -> tuple[Celery, Settings]:
    s = settings.model_copy(update={"redis": RedisSettings(url=settings.redis.url, key_prefix=prefix)})
    app = make_celery(s)
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0)
    return app, s


def _in_broker(settings: Settings, queue: str, delivered_after_s: float) -> set[str]:
    async def read() -> set[str]:
        r = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await broker_job_ids(r, BrokerKeys.of(settings), queue, delivered_after_s)
        finally:
            await r.aclose()

    return asyncio.run(read())


def test_messages_live_where_the_adapter_looks(settings: Settings, redis_client: redis.Redis) -> None:
    app, s = _app(settings, "dep1")
    queue, keys = s.worker.queue, BrokerKeys.of(s)
    enqueue(app, JOB_A, queue)
    enqueue(app, JOB_B, queue)

    assert keys.queue(queue)[0] == f"dep1:{queue}"
    assert redis_client.llen(keys.queue(queue)[0]) == 2
    assert not redis_client.exists(queue), "no broker key outside the deployment's prefix"
    assert waiting_job_ids(redis_client, keys, queue) == [JOB_A, JOB_B]
    assert _in_broker(s, queue, time.time()) == {JOB_A, JOB_B}

    with app.connection_for_read() as conn:
        q = conn.SimpleQueue(queue, no_ack=False)
        msg = q.get(timeout=10)
        assert msg.headers["id"] == JOB_A and msg.headers["task"] == TRANSCRIBE_TASK
        assert waiting_job_ids(redis_client, keys, queue) == [JOB_B]
        assert unacked_job_ids(redis_client, keys) == [JOB_A]
        delivered = redis_client.zrange(keys.unacked_index(), 0, -1, withscores=True)
        assert len(delivered) == 1 and abs(delivered[0][1] - time.time()) < 60, "scored by delivery time (s)"
        # Delivered now: counted while in flight; delivered before the cut-off: not.
        assert _in_broker(s, queue, time.time() - 60) == {JOB_A, JOB_B}
        assert _in_broker(s, queue, time.time() + 60) == {JOB_B}
        msg.ack()
        assert unacked_job_ids(redis_client, keys) == []
        assert redis_client.zcard(keys.unacked_index()) == 0

        taken = q.get(timeout=10)
        assert taken.headers["id"] == JOB_B and unacked_job_ids(redis_client, keys) == [JOB_B]
        q.close()  # closing the channel restores what it did not acknowledge
    assert waiting_job_ids(redis_client, keys, queue) == [JOB_B]
    assert unacked_job_ids(redis_client, keys) == []
    app.close()


def test_two_deployments_share_a_redis(settings: Settings, redis_client: redis.Redis) -> None:
    one, s1 = _app(settings, "dep1")
    two, s2 = _app(settings, "dep2")
    enqueue(one, JOB_A, s1.worker.queue)
    enqueue(two, JOB_B, s2.worker.queue)
    assert waiting_job_ids(redis_client, BrokerKeys.of(s1), s1.worker.queue) == [JOB_A]
    assert waiting_job_ids(redis_client, BrokerKeys.of(s2), s2.worker.queue) == [JOB_B]
    with two.connection_for_read() as conn:
        q = conn.SimpleQueue(s2.worker.queue, no_ack=False)
        assert q.get(timeout=10).headers["id"] == JOB_B
        assert unacked_job_ids(redis_client, BrokerKeys.of(s1)) == []
        assert unacked_job_ids(redis_client, BrokerKeys.of(s2)) == [JOB_B]
        q.close()
    one.close()
    two.close()


def test_prioritised_messages_wait_in_the_step_lists_the_adapter_reads(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """kombu puts a message with priority p on `queue + Channel.sep + step` (PRIORITY_STEPS); the service
    sends none, but a message sent so by hand must still count as in the broker for the reconciler."""
    app, s = _app(settings, "dep1")
    queue, keys = s.worker.queue, BrokerKeys.of(s)
    app.send_task(TRANSCRIBE_TASK, args=[JOB_A], task_id=JOB_A, queue=queue, priority=9)
    lists = keys.queue(queue)
    lengths = [redis_client.llen(k) for k in lists]
    assert sum(lengths) == 1 and lengths[0] == 0, f"priority 9 lands in a step list, not the plain one: {lengths}"
    assert waiting_job_ids(redis_client, keys, queue) == [JOB_A]
    assert _in_broker(s, queue, time.time()) == {JOB_A}
    app.close()


def test_an_outbound_message_in_flight_is_not_a_job_of_the_worker_queue(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """The `unacked` hash is shared by every queue: an outbound task delivered and not acknowledged
    (a long fetch, acks_late) must not count as a GPU job in flight (the dispatcher's free slots)."""
    app, s = _app(settings, "dep1")
    out = make_outbound_celery(s)
    out.send_task(OUTBOUND_TASK, args=["fetch:" + JOB_B], queue=s.outbound.queue)
    enqueue(app, JOB_A, s.worker.queue)
    with out.connection_for_read() as conn:
        q = conn.SimpleQueue(s.outbound.queue, no_ack=False)
        msg = q.get(timeout=10)
        assert msg.headers["task"] == OUTBOUND_TASK
        assert len(unacked_job_ids(redis_client, BrokerKeys.of(s))) == 1  # it is in the shared hash
        assert _in_broker(s, s.worker.queue, time.time() - 60) == {JOB_A}
        msg.ack()
        q.close()
    out.close()
    app.close()
