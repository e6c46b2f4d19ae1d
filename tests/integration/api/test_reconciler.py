"""The reconciler on a real Redis and a real broker queue: attempt cap, lost task messages,
rebuilding Redis from storage, and retention.

Jobs are created through the real gateway (its own reconciler and dispatcher loops are off: a
created job stays held on its pending list until a test runs a dispatcher pass); sweeps are called
directly with a `now` in the future where a test needs time to have passed. Dead workers are
played with the worker's real `JobStore.claim` and a lease that runs out; the fourth delivery of
a job is the real task run in-process by Celery (`apply`), which returns at its claim.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from tests.integration.api.conftest import (
    Gateway,
    dispatch,
    held_job_ids,
    serve,
    wav_bytes,
)
from tests.integration.api.test_results import TRANSCRIPT
from whisperx_service.broker.celery_app import TRANSCRIBE_TASK, make_celery
from whisperx_service.broker.kombu_redis import BrokerKeys, unacked_job_ids, waiting_job_ids
from whisperx_service.config import ApiSettings, RetentionSettings, Settings
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.maintenance.reconciler import Sweep, sweep
from whisperx_service.maintenance.retention import Retention, sweep_retention
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys
from whisperx_service.worker import tasks as worker_tasks

pytestmark = pytest.mark.timeout(120)

QUEUE = "transcribe"
KEYS = Keys("wxs")
#: The reconciler's grace for a queued job without a message: 3 sweeps of max(interval, 1 s) = 3 s here.
GRACE_S = 3.0
RESULT = TRANSCRIPT.model_dump(mode="json")


@pytest.fixture
def rec_settings(api_settings: Settings) -> Settings:
    """API test settings with the gateway's reconciler and dispatcher loops off (the tests run them by hand)."""
    return api_settings.model_copy(
        update={
            "api": ApiSettings(sse_block_ms=200, sse_ping_s=0.3, reconcile_interval_s=0, dispatch_interval_s=0),
            "retention": RetentionSettings(s=3600.0, orphan_s=3600.0, sweep_interval_s=600.0),
        }
    )


@pytest.fixture
def gw(rec_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    yield from serve(rec_settings, celery_app)


@pytest.fixture
def new_job(gw: Gateway) -> Callable[[], str]:
    def _new() -> str:
        r = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(0.1), "audio/wav")})
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    return _new


def run_sweep(settings: Settings, celery: Celery, **kw: Any) -> Sweep:
    """One reconciler sweep on a fresh async client (retention off unless asked)."""

    async def go() -> Sweep:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            kw.setdefault("retention", False)
            return await sweep(AsyncJobStore(client, KEYS), celery, settings, **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def run_retention(settings: Settings, now_s: float) -> Retention:
    async def go() -> Retention:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await sweep_retention(
                AsyncJobStore(client, KEYS), Storage(settings.storage.root), settings, now_s=now_s
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def queued_ids(r: redis.Redis, settings: Settings) -> list[str]:
    """Task ids (= job ids) of the messages waiting in the broker's queue, oldest first."""
    return waiting_job_ids(r, BrokerKeys.of(settings), QUEUE)


def drop_queue(r: redis.Redis, settings: Settings) -> None:
    """Lose every waiting message of the queue (as a Redis restarted from an older AOF would)."""
    r.delete(*BrokerKeys.of(settings).queue(QUEUE))


def die(store: JobStore, job_id: str, worker: str, max_attempts: int) -> int:
    """A worker claims the job and dies: its lease (10 ms) runs out. Returns the attempt it had."""
    claim = store.claim(job_id, worker, lease_s=0.01, max_attempts=max_attempts)
    assert claim.outcome == "claimed", claim
    time.sleep(0.05)
    return claim.attempt


def final_json(settings: Settings, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Storage(settings.storage.root).final(job_id).read_text())
    return data


# -- attempt cap -----------------------------------------------------------------------------


def test_worker_lost_after_exactly_max_attempts_claims(
    gw: Gateway, new_job: Callable[[], str], worker_store: JobStore, redis_client: redis.Redis, rec_settings: Settings
) -> None:
    cap = rec_settings.worker.max_attempts
    assert cap == 3
    job = new_job()
    assert [die(worker_store, job, f"w{i}", cap) for i in range(1, cap + 1)] == [1, 2, 3]

    # The next delivery is the real task: its claim ends the job instead of running it.
    worker_app = make_celery(rec_settings)
    assert worker_tasks.transcribe.name == TRANSCRIBE_TASK
    result = worker_app.tasks[TRANSCRIBE_TASK].apply(args=[job]).get(timeout=30)
    assert result == "failed"

    body = gw.client.get(f"/v1/jobs/{job}").json()
    assert body["status"] == "failed" and body["attempt"] == cap
    assert body["error"]["code"] == "worker_lost"
    assert "lost 3 times" in body["error"]["message"]
    final = final_json(rec_settings, job)
    assert (final["status"], final["attempt"], final["error_code"]) == ("failed", 3, "worker_lost")
    types = [f["type"] for _, f in worker_store.events(job)]
    assert types == ["queued", "started", "started", "started", "failed"]
    assert redis_client.zscore(KEYS.finished(), job) is not None
    assert not redis_client.sismember(KEYS.running(), job)
    # Never delivered again: a further copy finds it terminal.
    assert worker_store.claim(job, "w5", lease_s=60, max_attempts=cap).outcome == "terminal"


def test_reconciler_ends_a_capped_job_and_requeues_others_once(
    gw: Gateway,
    new_job: Callable[[], str],
    worker_store: JobStore,
    redis_client: redis.Redis,
    rec_settings: Settings,
    celery_app: Celery,
) -> None:
    capped, retry, alive = new_job(), new_job(), new_job()
    for i in range(3):
        die(worker_store, capped, f"c{i}", 3)
    die(worker_store, retry, "r1", 3)
    assert worker_store.claim(alive, "a1", lease_s=60, max_attempts=3).outcome == "claimed"

    first = run_sweep(rec_settings, celery_app)
    assert first.ended == {capped: "failed"}
    assert first.requeued == [retry]
    assert queued_ids(redis_client, rec_settings) == [retry]  # the capped job is not delivered again
    assert gw.client.get(f"/v1/jobs/{capped}").json()["error"]["code"] == "worker_lost"
    assert final_json(rec_settings, capped)["error_code"] == "worker_lost"
    assert gw.client.get(f"/v1/jobs/{alive}").json()["status"] == "running"

    second = run_sweep(rec_settings, celery_app)  # the lease is still expired: no second copy yet
    assert (second.ended, second.requeued, second.queued_requeued) == ({}, [], [])
    assert queued_ids(redis_client, rec_settings) == [retry]
    # The re-enqueued message fills the one slot (no worker is live): the dispatcher sends nothing.
    assert dispatch(rec_settings, celery_app).handed == []
    assert queued_ids(redis_client, rec_settings) == [retry]

    # The re-enqueued copy claims the expired lease with attempt 2.
    assert worker_store.claim(retry, "r2", lease_s=60, max_attempts=3).attempt == 2


def test_cancel_requested_on_a_dead_worker_ends_cancelled(
    gw: Gateway,
    new_job: Callable[[], str],
    worker_store: JobStore,
    redis_client: redis.Redis,
    rec_settings: Settings,
    celery_app: Celery,
) -> None:
    job = new_job()
    die(worker_store, job, "w1", 3)
    redis_client.hset(KEYS.job(job), "cancel_requested", "1")  # what DELETE on a running job sets
    out = run_sweep(rec_settings, celery_app)
    assert out.ended == {job: "cancelled"} and out.requeued == []
    assert gw.client.get(f"/v1/jobs/{job}").json()["status"] == "cancelled"
    assert final_json(rec_settings, job)["status"] == "cancelled"


# -- queued jobs without a task message ------------------------------------------------------


def test_held_job_is_left_alone(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    out = run_sweep(rec_settings, celery_app, now_s=time.time() + 600)
    assert out.queued_requeued == [] and out.held_again == []  # held on purpose: no message to miss
    assert held_job_ids(redis_client, rec_settings) == [job]
    assert queued_ids(redis_client, rec_settings) == []


def test_queued_job_with_its_message_waiting_is_left_alone(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    assert dispatch(rec_settings, celery_app).handed == [job]
    out = run_sweep(rec_settings, celery_app, now_s=time.time() + 600)
    assert out.queued_requeued == []
    assert queued_ids(redis_client, rec_settings) == [job]


def test_queued_job_without_message_is_requeued_once(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    assert dispatch(rec_settings, celery_app).handed == [job]
    drop_queue(redis_client, rec_settings)  # the message is lost (e.g. Redis restarted from an older AOF)
    assert run_sweep(rec_settings, celery_app).queued_requeued == []  # younger than the grace period

    t = time.time() + 2 * GRACE_S
    assert run_sweep(rec_settings, celery_app, now_s=t).queued_requeued == [job]
    assert queued_ids(redis_client, rec_settings) == [job]
    assert run_sweep(rec_settings, celery_app, now_s=t + 1).queued_requeued == []
    assert run_sweep(rec_settings, celery_app, now_s=t + 10 * GRACE_S).queued_requeued == []  # message there
    assert queued_ids(redis_client, rec_settings) == [job]


def test_message_held_by_a_worker_counts_until_the_grace_period_passes(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    assert dispatch(rec_settings, celery_app).handed == [job]
    time.sleep(GRACE_S + 0.3)  # the job is now older than the grace period
    with celery_app.connection_for_read() as conn:
        q = conn.SimpleQueue(QUEUE, no_ack=False)
        msg = q.get(timeout=10)  # a worker took it: kombu moves it to `unacked`
        assert msg.headers["id"] == job and queued_ids(redis_client, rec_settings) == []
        assert unacked_job_ids(redis_client, BrokerKeys.of(rec_settings)) == [job]
        # Delivered just now: in flight, its worker is about to claim it.
        assert run_sweep(rec_settings, celery_app).queued_requeued == []
        # Still unclaimed long after delivery: that worker died; send another copy.
        assert run_sweep(rec_settings, celery_app, now_s=time.time() + 2 * GRACE_S).queued_requeued == [job]
        assert queued_ids(redis_client, rec_settings) == [job]
        msg.ack()
        q.close()


# -- rebuild from storage --------------------------------------------------------------------


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _checkpoint(storage: Storage, job_id: str, index: int, attempt: int) -> None:
    atomic_write_json(storage.chunks_dir(job_id) / f"{index}.json", {"chunk": {"index": index}, "attempt": attempt})


def test_rebuild_after_redis_lost_everything(
    gw: Gateway,
    new_job: Callable[[], str],
    worker_store: JobStore,
    redis_client: redis.Redis,
    rec_settings: Settings,
    celery_app: Celery,
) -> None:
    storage = Storage(rec_settings.storage.root)
    queued, done, failed, done_no_final, running, capped = (new_job() for _ in range(6))
    for job in (done, failed, done_no_final):
        worker_store.claim(job, "w", lease_s=60)
    atomic_write_json(storage.result(done), RESULT)
    assert worker_store.finish(done, JobStatus.succeeded, attempt=1)
    rec = worker_store.get(done)
    assert rec is not None and rec.finished_at is not None
    storage.write_final(done, status="succeeded", finished_at=rec.finished_at.isoformat(), attempt=1)
    assert worker_store.finish(failed, JobStatus.failed, attempt=1, error_code="audio_decode_failed", error_message="x")
    storage.write_final(
        failed, status="failed", finished_at=rec.finished_at.isoformat(), attempt=1,
        error_code="audio_decode_failed", error_message="no audio stream",
    )  # fmt: skip
    atomic_write_json(storage.result(done_no_final), RESULT)  # Redis lost the finish
    storage.work_dir(running).mkdir(parents=True)
    _checkpoint(storage, running, 0, 1)
    _checkpoint(storage, running, 1, 2)
    _checkpoint(storage, capped, 0, 3)
    created = {j: gw.client.get(f"/v1/jobs/{j}").json()["created_at"] for j in (queued, running)}

    redis_client.flushdb()  # Redis restarted empty: jobs, events, broker queue, all gone
    out = run_sweep(rec_settings, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert out.rebuilt is not None and out.rebuilt.young == 0
    assert sorted(out.rebuilt.restored) == sorted([queued, done, failed, done_no_final, running, capped])

    def get(job: str) -> dict[str, Any]:
        r = gw.client.get(f"/v1/jobs/{job}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    assert get(queued)["status"] == "queued"
    assert abs(_ts(get(queued)["created_at"]) - _ts(created[queued])) < 1.0  # the manifest's time
    assert (get(done)["status"], get(done)["percent"]) == ("succeeded", 100.0)
    assert get(failed)["status"] == "failed" and get(failed)["error"]["code"] == "audio_decode_failed"
    assert get(done_no_final)["status"] == "succeeded"
    assert (get(running)["status"], get(running)["attempt"]) == ("running", 2)  # never back to queued
    # Its checkpoints show its workers were lost 3 times: the same sweep ended it (the cap holds).
    assert (get(capped)["status"], get(capped)["attempt"], get(capped)["error"]["code"]) == ("failed", 3, "worker_lost")
    assert out.ended == {capped: "failed"}
    assert gw.client.get(f"/v1/jobs/{done}/result").json() == RESULT
    # The unfinished ones are held again on their owner's pending list, oldest first.
    assert held_job_ids(redis_client, rec_settings) == [queued, running, capped]
    assert queued_ids(redis_client, rec_settings) == []
    assert [f["type"] for _, f in worker_store.events(queued)] == ["restored"]
    assert dispatch(rec_settings, celery_app).handed == [queued]  # one slot: no worker is live

    # The lease of the restored running job is expired: the next claim resumes it with attempt 3.
    assert worker_store.claim(running, "w2", lease_s=60, max_attempts=3).attempt == 3
    assert worker_store.claim(capped, "w2", lease_s=60, max_attempts=3).outcome == "terminal"

    again = run_sweep(rec_settings, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert again.rebuilt is None and again.requeued == [] and again.queued_requeued == []
    assert queued_ids(redis_client, rec_settings) == [queued]  # nothing sent twice
    # With slots to spare, the held jobs that are now running (live lease) or ended are dropped, never sent.
    roomy = rec_settings.model_copy(update={"worker": rec_settings.worker.model_copy(update={"concurrency": 4})})
    assert dispatch(roomy, celery_app).handed == []
    assert held_job_ids(redis_client, rec_settings) == [] and queued_ids(redis_client, rec_settings) == [queued]


def test_rebuild_waits_for_a_manifest_written_just_now(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    redis_client.flushdb()
    first = run_sweep(rec_settings, celery_app)  # could be an upload creating its job right now
    assert first.rebuilt is not None and (first.rebuilt.restored, first.rebuilt.young) == ([], 1)
    assert not redis_client.exists(KEYS.storage_synced())
    second = run_sweep(rec_settings, celery_app, now_s=time.time() + 2 * GRACE_S)
    assert second.rebuilt is not None and second.rebuilt.restored == [job]
    assert redis_client.exists(KEYS.storage_synced())


def test_get_restores_a_job_redis_does_not_know(
    gw: Gateway, new_job: Callable[[], str], redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = new_job()
    redis_client.flushdb()
    r = gw.client.get(f"/v1/jobs/{job}")
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["status"]) == (job, "queued")
    assert held_job_ids(redis_client, rec_settings) == [job]
    assert gw.client.get(f"/v1/jobs/{job}").status_code == 200
    assert held_job_ids(redis_client, rec_settings) == [job]  # restored once, held once
    assert dispatch(rec_settings, celery_app).handed == [job]
    assert queued_ids(redis_client, rec_settings) == [job]
    assert gw.client.get(f"/v1/jobs/{'0' * 32}").status_code == 404


# -- retention -------------------------------------------------------------------------------


def test_retention_deletes_old_ended_jobs_and_orphans_only(
    gw: Gateway,
    new_job: Callable[[], str],
    worker_store: JobStore,
    redis_client: redis.Redis,
    rec_settings: Settings,
    celery_app: Celery,
) -> None:
    storage = Storage(rec_settings.storage.root)
    old, young, running, queued = new_job(), new_job(), new_job(), new_job()
    for job in (old, young, running):
        worker_store.claim(job, "w", lease_s=60)
        storage.work_dir(job).mkdir(parents=True)
    assert worker_store.finish(old, JobStatus.succeeded, attempt=1)
    time.sleep(0.05)
    assert worker_store.finish(young, JobStatus.failed, attempt=1, error_code="x", error_message="y")
    old_ms, young_ms = (redis_client.zscore(KEYS.finished(), j) for j in (old, young))
    assert old_ms is not None and young_ms is not None and old_ms < young_ms
    now = (old_ms + young_ms) / 2000 + rec_settings.retention.s  # `old` ended more than RETENTION_S ago

    def orphan(name: str, age_s: float) -> Path:
        d = storage.root / "jobs" / name
        d.mkdir(parents=True)
        (d / ".tmp-source").write_bytes(b"partial upload")
        for p in (d / ".tmp-source", d):
            os.utime(p, (now - age_s, now - age_s))
        return d

    old_orphan = orphan("a" * 32, rec_settings.retention.orphan_s + 60)
    young_orphan = orphan("b" * 32, 60)
    old_tmp = storage.chunks_dir(running) / ".tmp-abc"
    young_tmp = storage.chunks_dir(running) / ".tmp-def"
    for p, age in ((old_tmp, rec_settings.retention.orphan_s + 60), (young_tmp, 60)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        os.utime(p, (now - age, now - age))

    out = run_retention(rec_settings, now)
    assert (out.expired_jobs, out.orphan_dirs, out.tmp_files) == (1, 1, 1)
    assert not storage.job_dir(old).exists()
    assert not redis_client.exists(KEYS.job(old), KEYS.events(old))
    assert redis_client.zscore(KEYS.jobs_index(), old) is None and redis_client.zscore(KEYS.finished(), old) is None
    assert gw.client.get(f"/v1/jobs/{old}").status_code == 404
    # The young ended job stays; its leftover work dir goes and its missing final.json is written.
    assert storage.source(young).exists() and not storage.work_dir(young).exists()
    assert final_json(rec_settings, young)["error_code"] == "x"
    assert gw.client.get(f"/v1/jobs/{young}").json()["status"] == "failed"
    # Running and queued jobs are untouched, work dir included.
    assert storage.work_dir(running).is_dir() and storage.source(queued).exists()
    assert not old_orphan.exists() and young_orphan.exists()
    assert not old_tmp.exists() and young_tmp.exists()

    # The reconciler runs retention at most once per RETENTION_SWEEP_INTERVAL_S.
    assert run_sweep(rec_settings, celery_app, retention=True).retention is not None
    assert run_sweep(rec_settings, celery_app, retention=True).retention is None
