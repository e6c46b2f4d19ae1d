"""The dispatcher on a real Redis and a real broker queue: round robin between keys, max_running,
held jobs that ended or were purged, and nothing lost when the dispatcher dies mid-move or Redis
restarts empty.

Jobs are submitted through the real gateway with keys on; its own dispatcher and reconciler loops
are off (one test keeps the dispatcher loop on), and passes are run by hand (`dispatch`). No
worker runs: the capacity is one worker's unless a test raises WORKER_CONCURRENCY; a worker is
played with the real `JobStore` (claim, finish).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from tests.integration.api.conftest import (
    Gateway,
    accounted_job_ids,
    dispatch,
    dispatching_job_ids,
    held_job_ids,
    queued_job_ids,
    serve,
    wait_until,
    wav_bytes,
)
from tests.integration.api.test_reconciler import GRACE_S, run_sweep
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.broker.celery_app import enqueue
from whisperx_service.broker.kombu_redis import BrokerKeys
from whisperx_service.config import ApiSettings, AuthSettings, Settings
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.domain.keys import ApiKey, Quotas
from whisperx_service.maintenance.dispatcher import MaxRunning
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.dispatch import DispatchStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fair_settings(api_settings: Settings) -> Settings:
    """Keys required; the gateway's reconciler and dispatcher loops off."""
    return api_settings.model_copy(
        update={
            "auth": AuthSettings(enabled=True, key_rate_limit="1000/minute", address_rate_limit="2000/minute"),
            "api": ApiSettings(sse_block_ms=200, sse_ping_s=0.3, reconcile_interval_s=0, dispatch_interval_s=0),
        }
    )


def slots(settings: Settings, n: int) -> Settings:
    """`settings` with WORKER_CONCURRENCY = n: n free slots while no worker is live and nothing runs."""
    return settings.model_copy(update={"worker": settings.worker.model_copy(update={"concurrency": n})})


@pytest.fixture
def registry(fair_settings: Settings, redis_client: redis.Redis) -> KeyRegistry:
    return KeyRegistry(fair_settings, redis_client)


@pytest.fixture
def gw(fair_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    yield from serve(fair_settings, celery_app)


def submit(gw: Gateway, key: str) -> str:
    r = gw.client.post(
        "/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1), "audio/wav")}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def limits(*keys: ApiKey) -> MaxRunning:
    """A `MaxRunning` from the keys' quotas (the gateway reads the same records through KeyResolver)."""
    table = {k.id: k.quotas.max_running for k in keys}

    async def max_running(owner: str) -> int | None:
        return table.get(owner)

    return max_running


def queued_key_names(s: Settings) -> list[str]:
    """The broker's lists of the queue's waiting messages."""
    return BrokerKeys.of(s).queue(s.worker.queue)


def run_done(store: JobStore, job_id: str) -> None:
    """A worker runs the job to its end."""
    claim = store.claim(job_id, "w", lease_s=60)
    assert claim.outcome == "claimed", claim
    assert store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)


def test_round_robin_between_keys(
    gw: Gateway, registry: KeyRegistry, worker_store: JobStore, redis_client: redis.Redis, celery_app: Celery
) -> None:
    s = gw.settings
    _, alice = registry.create("alice")
    _, bob = registry.create("bob")
    a = [submit(gw, alice) for _ in range(3)]
    assert dispatch(s, celery_app).handed == [a[0]]  # one slot
    b = [submit(gw, bob) for _ in range(2)]
    a.append(submit(gw, alice))
    assert dispatch(s, celery_app).handed == []  # the slot holds a[0]'s message

    redis_client.delete(*queued_key_names(s))  # the worker took a[0]'s message ...
    run_done(worker_store, a[0])  # ... and ran it
    # Bob was never served: he goes first, then the keys take turns, then Alice's rest.
    assert dispatch(slots(s, 10), celery_app).handed == [b[0], a[1], b[1], a[2], a[3]]
    assert held_job_ids(redis_client, s) == []
    assert queued_job_ids(redis_client, s) == [b[0], a[1], b[1], a[2], a[3]]


def test_max_running_is_never_exceeded(
    gw: Gateway, registry: KeyRegistry, worker_store: JobStore, redis_client: redis.Redis, celery_app: Celery
) -> None:
    s = slots(gw.settings, 10)
    alice_key, alice = registry.create("alice", quotas=Quotas(max_running=2))
    bob_key, bob = registry.create("bob")
    a = [submit(gw, alice) for _ in range(4)]
    b = submit(gw, bob)
    out = dispatch(s, celery_app, limits(alice_key, bob_key))
    assert sorted(out.handed) == sorted([a[0], a[1], b]) and out.full == [alice_key.id]
    assert held_job_ids(redis_client, s) == [a[2], a[3]]
    # Handed out and not ended counts, running or still waiting in the broker: nothing more for Alice.
    worker_store.claim(a[0], "w", lease_s=60)
    assert dispatch(s, celery_app, limits(alice_key, bob_key)).handed == []

    run_done(worker_store, a[1])  # one of hers ended: one more may go
    out = dispatch(s, celery_app, limits(alice_key, bob_key))
    assert out.handed == [a[2]] and out.full == [alice_key.id]
    assert held_job_ids(redis_client, s) == [a[3]]
    # A cancelled job frees its place too.
    assert gw.client.delete(f"/v1/jobs/{a[2]}", headers={"Authorization": f"Bearer {alice}"}).status_code == 200
    assert dispatch(s, celery_app, limits(alice_key, bob_key)).handed == [a[3]]


def test_cancelled_and_purged_held_jobs_are_skipped(
    gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis, celery_app: Celery
) -> None:
    _, alice = registry.create("alice")
    auth = {"Authorization": f"Bearer {alice}"}
    cancelled, purged, kept = (submit(gw, alice) for _ in range(3))
    assert gw.client.delete(f"/v1/jobs/{cancelled}", headers=auth).status_code == 200
    assert gw.client.delete(f"/v1/jobs/{purged}", params={"purge": "true"}, headers=auth).status_code == 204
    assert held_job_ids(redis_client, gw.settings) == [cancelled, purged, kept]  # dropped lazily, when reached
    out = dispatch(slots(gw.settings, 10), celery_app)
    assert out.handed == [kept]
    assert held_job_ids(redis_client, gw.settings) == [] and queued_job_ids(redis_client, gw.settings) == [kept]
    assert redis_client.zcard(Keys.of(gw.settings).dispatch_ring()) == 0  # nobody left waiting


def _take(settings: Settings, owner: str) -> str:
    """Play a dispatcher that takes a job and dies before sending its task."""

    async def go() -> str:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            outcome, job_id = await DispatchStore(client, Keys.of(settings)).take(owner, None, int(time.time() * 1000))
            assert outcome == "taken"
            return job_id
        finally:
            await client.aclose()

    return asyncio.run(go())


def _owner(settings: Settings, job_id: str) -> str:
    async def go() -> str:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await AsyncJobStore.from_settings(client, settings).owner_of(job_id)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_dispatcher_dying_between_take_and_send_loses_nothing(
    gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis, celery_app: Celery
) -> None:
    s = gw.settings
    _, alice = registry.create("alice")
    job, sent = submit(gw, alice), submit(gw, alice)
    owner = _owner(s, job)
    assert _take(s, owner) == job  # taken, never sent
    assert dispatching_job_ids(redis_client, s) == [job] and queued_job_ids(redis_client, s) == []

    young = run_sweep(s, celery_app)  # a dispatcher may be sending it right now
    assert young.held_again == [] and young.queued_requeued == []
    assert dispatching_job_ids(redis_client, s) == [job]

    later = run_sweep(s, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert later.held_again == [job] and later.queued_requeued == []
    assert held_job_ids(redis_client, s) == [job, sent]  # back at the head of its list
    assert dispatch(s, celery_app).handed == [job]
    assert queued_job_ids(redis_client, s) == [job]

    # Dying after the send, before leaving the dispatching zset: the message is there, nothing is doubled.
    assert _take(s, owner) == sent
    enqueue(celery_app, sent, s.worker.queue)
    again = run_sweep(s, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert again.held_again == [] and again.queued_requeued == []
    assert dispatching_job_ids(redis_client, s) == [] and held_job_ids(redis_client, s) == []
    assert queued_job_ids(redis_client, s) == [job, sent]


def test_redis_restarting_empty_loses_no_held_job(
    gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis, celery_app: Celery
) -> None:
    s = gw.settings
    _, alice = registry.create("alice")
    _, bob = registry.create("bob")
    a = [submit(gw, alice) for _ in range(3)]
    assert dispatch(s, celery_app).handed == [a[0]]
    b = submit(gw, bob)

    redis_client.flushdb()  # jobs, pending lists, ring, broker queue: all gone
    out = run_sweep(s, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert out.rebuilt is not None and sorted(out.rebuilt.restored) == sorted([*a, b])
    assert accounted_job_ids(redis_client, s) == sorted([*a, b])
    keys = Keys.of(s)
    assert [x.decode() for x in redis_client.lrange(keys.pending(_owner(s, a[0])), 0, -1)] == a  # oldest first
    assert [x.decode() for x in redis_client.lrange(keys.pending(_owner(s, b)), 0, -1)] == [b]
    assert sorted(dispatch(slots(s, 10), celery_app).handed) == sorted([*a, b])
    assert held_job_ids(redis_client, s) == []


def test_the_gateway_loop_enforces_max_running(
    fair_settings: Settings, registry: KeyRegistry, redis_client: redis.Redis, celery_app: Celery
) -> None:
    s = slots(fair_settings, 10).model_copy(
        update={"api": fair_settings.api.model_copy(update={"dispatch_interval_s": 0.05})}
    )
    _, alice = registry.create("alice", quotas=Quotas(max_running=1))
    _, bob = registry.create("bob")
    for gw in serve(s, celery_app):
        a = [submit(gw, alice) for _ in range(3)]
        b = [submit(gw, bob) for _ in range(2)]
        # Bob's jobs went out after Alice's were held: every pass since passed her over.
        wait_until(lambda b=set(b): b <= set(queued_job_ids(redis_client, s)), what="bob's jobs in the broker")
        assert sorted(queued_job_ids(redis_client, s)) == sorted([a[0], *b])
        assert held_job_ids(redis_client, s) == [a[1], a[2]]
