"""The job state machine on a real Redis: forward-only, fenced by attempt, percent monotonic."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from whisperx_service.domain.jobs import JobOptions, JobStatus, Stage, job_percent
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys

KEYS = Keys("t")


def _new_job(redis_url: str) -> str:
    job_id = uuid.uuid4().hex

    async def create() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await AsyncJobStore(client, KEYS).create(job_id, JobOptions(), filename="a.wav", size_bytes=10)
        await client.aclose()

    asyncio.run(create())
    return job_id


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, KEYS)


def test_claim_progress_succeed(store: JobStore, redis_url: str) -> None:
    job = _new_job(redis_url)
    assert store.get(job).status is JobStatus.queued  # type: ignore[union-attr]
    c = store.claim(job, "w1", lease_s=60)
    assert (c.outcome, c.attempt) == ("claimed", 1)
    assert store.progress(job, 1, Stage.transcribe, 30.0)
    assert store.progress(job, 1, Stage.transcribe, 20.0)  # accepted, but clamped
    rec = store.get(job)
    assert rec is not None and rec.percent == 30.0 and rec.stage is Stage.transcribe
    assert store.finish(job, JobStatus.succeeded, attempt=1)
    rec = store.get(job)
    assert rec is not None and rec.status is JobStatus.succeeded and rec.percent == 100.0 and rec.finished_at
    types = [f["type"] for _, f in store.events(job)]
    assert types == ["queued", "started", "progress", "progress", "succeeded"]
    percents = [float(f["percent"]) for _, f in store.events(job) if f["type"] == "progress"]
    assert percents == [30.0, 30.0]


def test_terminal_never_changes(store: JobStore, redis_url: str) -> None:
    job = _new_job(redis_url)
    store.claim(job, "w1", lease_s=60)
    assert store.finish(job, JobStatus.failed, attempt=1, error_code="x", error_message="boom")
    assert not store.finish(job, JobStatus.succeeded, attempt=1)
    assert not store.finish(job, JobStatus.cancelled, attempt=None)
    assert store.claim(job, "w2", lease_s=60).outcome == "terminal"
    assert not store.progress(job, 1, Stage.merge, 99.0)
    rec = store.get(job)
    assert rec is not None and rec.status is JobStatus.failed and rec.error is not None
    assert rec.error.code == "x"
    assert [f["type"] for _, f in store.events(job)].count("failed") == 1


def test_live_lease_refuses_second_claim_and_expired_lease_fences_old_attempt(store: JobStore, redis_url: str) -> None:
    job = _new_job(redis_url)
    assert store.claim(job, "w1", lease_s=60).outcome == "claimed"
    busy = store.claim(job, "w2", lease_s=60)
    assert (busy.outcome, busy.attempt) == ("busy", 1)
    # Let the lease run out, then a second worker takes over with attempt 2.
    store.r.hset(KEYS.job(job), "lease_expires_ms", int(time.time() * 1000) - 1)
    c2 = store.claim(job, "w2", lease_s=60)
    assert (c2.outcome, c2.attempt) == ("claimed", 2)
    # The first worker's writes are refused from now on (fencing).
    assert not store.progress(job, 1, Stage.align, 50.0)
    assert not store.renew(job, 1, 60)
    assert not store.update(job, 1, duration_s=1.0)
    assert not store.finish(job, JobStatus.succeeded, attempt=1)
    assert store.finish(job, JobStatus.succeeded, attempt=2)


def test_queued_job_cannot_succeed_without_a_worker(store: JobStore, redis_url: str) -> None:
    job = _new_job(redis_url)
    assert not store.finish(job, JobStatus.succeeded, attempt=None)
    assert store.finish(job, JobStatus.cancelled, attempt=None)
    assert store.get(job).status is JobStatus.cancelled  # type: ignore[union-attr]


def test_unknown_job(store: JobStore) -> None:
    assert store.get("0" * 32) is None
    assert store.claim("0" * 32, "w", 60).outcome == "missing"


def test_stage_weights_map_monotonically() -> None:
    seq = [(s, p) for s in Stage for p in (0, 50, 100)]
    values = [job_percent(s, p) for s, p in seq]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 100.0
    skipped = frozenset({Stage.align, Stage.diarize})
    assert job_percent(Stage.merge, 0, skipped) == 95.0


def test_job_percent_spreads_chunks_evenly_and_never_goes_back() -> None:
    seq = [(Stage.decode, 0, 0), (Stage.decode, 100, 0), (Stage.vad, 0, 0), (Stage.vad, 50, 0), (Stage.vad, 100, 0)]
    seq += [(s, p, c) for c in range(4) for s in (Stage.transcribe, Stage.align, Stage.diarize) for p in (0, 100)]
    seq += [(Stage.merge, 0, 3), (Stage.merge, 100, 3)]
    values = [job_percent(s, p, chunk=c, chunks=4) for s, p, c in seq]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 100.0
    # Decode and vad take 5 % each, once per job, before the first chunk.
    assert [job_percent(Stage.vad, p) for p in (0, 50, 100)] == [5.0, 7.5, 10.0]
    assert job_percent(Stage.vad, 100) == job_percent(Stage.transcribe, 0, chunk=0, chunks=4)
    # Each chunk takes the same share of the 85 % between vad (10 %) and merge (5 %).
    assert job_percent(Stage.transcribe, 0, chunk=2, chunks=4) == 52.5
    assert job_percent(Stage.diarize, 100, chunk=1, chunks=4) == 52.5
    assert job_percent(Stage.align, 0, chunk=0, chunks=1) == 45.0  # 10 + 85 x transcribe's 35 of 85


def test_progress_accepts_numpy_scalars(store: JobStore, redis_url: str) -> None:
    import numpy as np

    job = _new_job(redis_url)
    store.claim(job, "w1", lease_s=60)
    assert store.progress(job, 1, Stage.diarize, np.float64(42.25), stage_percent=np.float32(12.5), chunk=np.int64(3))
    fields = store.events(job)[-1][1]
    assert (fields["percent"], fields["stage_percent"], fields["chunk"]) == ("42.2", "12.5", "3")
