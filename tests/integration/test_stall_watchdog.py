"""The stall watchdog and the progress publisher on a real Redis, with the worker's own pieces.

The task's `LeaseKeeper`, `ProgressPublisher` and `Attempt` run as a worker process runs them; only
`on_stall` differs: here it records the give-up instead of ending the test process (the e2e test
`tests/e2e/test_stall.py` sees a real pool process exit). The reconciler's REAP step then finds the
lease run out and re-enqueues the job, and the next claim is attempt 2.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import structlog

from tests.integration.api.conftest import wait_until
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, JobStatus, Stage
from whisperx_service.logs import configure_logging
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys
from whisperx_service.worker.attempt import FENCED, Attempt
from whisperx_service.worker.lease import LeaseKeeper
from whisperx_service.worker.progress import JobLost, ProgressPublisher
from whisperx_service.worker.runtime import worker_name
from whisperx_service.worker.stall import StallWatch, not_counted, watching

KEYS = Keys("stall")
#: Short timings: a 2 s lease renewed every 50 ms, a 3 s stall limit.
LEASE_S, STALL_S = 2.0, 3.0


def _new_job(redis_url: str) -> str:
    job_id = uuid.uuid4().hex

    async def create() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await AsyncJobStore(client, KEYS).create(job_id, JobOptions(), filename="a.wav", size_bytes=10)
        await client.aclose()

    asyncio.run(create())
    return job_id


def _reap(redis_url: str, job_id: str) -> tuple[str, str]:
    async def reap() -> tuple[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await AsyncJobStore(client, KEYS).reap(
                job_id, int(time.time() * 1000), max_attempts=3, requeue_after_ms=int(LEASE_S * 1000)
            )
        finally:
            await client.aclose()

    return asyncio.run(reap())


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, KEYS)


def _lease_ms(store: JobStore, job_id: str) -> int:
    return int(store.r.hget(KEYS.job(job_id), "lease_expires_ms") or 0)


@pytest.fixture
def service_logging() -> None:
    """The service's logging, as a worker sets it up: its lines go through stdlib logging. A fixture
    (set up before the test's call phase) so pytest's caplog handler joins the root logger after it."""
    configure_logging(Settings())


def test_a_job_without_progress_is_given_up_and_retried_as_a_lost_worker(
    store: JobStore, redis_url: str, tmp_path: Path, service_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    job = _new_job(redis_url)
    claim = store.claim(job, worker_name(), lease_s=LEASE_S)
    assert claim.outcome == "claimed"
    watch = StallWatch(STALL_S)
    stalled = threading.Event()
    keeper = LeaseKeeper(store, job, claim.attempt, LEASE_S, poll_s=0.05, watch=watch, on_stall=stalled.set)
    publish = ProgressPublisher(
        store, job, claim.attempt, JobOptions(), 0.0, keeper.cancel, gave_up=keeper.gave_up, watch=watch
    )
    attempt = Attempt(store, Storage(tmp_path), job, claim.attempt, structlog.get_logger(), gave_up=keeper.gave_up)
    first_lease = _lease_ms(store, job)
    keeper.start()
    try:
        # Progress at every step, for longer than the stall limit and the lease: kept.
        for i in range(25):
            publish(Stage.vad, 4.0 * i)
            time.sleep(0.2)
        assert not keeper.gave_up.is_set()
        # A model's first load makes no progress and does not count.
        with watching(watch), not_counted():
            time.sleep(STALL_S + 1.0)
        assert not keeper.gave_up.is_set()
        assert _lease_ms(store, job) > first_lease + LEASE_S * 1000, "the lease was renewed meanwhile"
        publish(Stage.transcribe, 0.0)
        # Then nothing: the watchdog gives the job up.
        wait_until(stalled.is_set, 30, "the watchdog to give the job up")
        keeper.join(5)
    finally:
        keeper.stopped.set()
    assert not keeper.is_alive() and keeper.gave_up.is_set()
    # Read from stdlib logging, where logs.py sends the event dicts: structlog's capture_logs misses
    # a logger that an earlier test made cache its processors.
    stalls = [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "job_stalled"]
    assert len(stalls) == 1, stalls
    line = stalls[0].msg
    assert (line["job_id"], line["attempt"], line["stage"], line["chunk"]) == (job, 1, "transcribe", 0)
    assert line["idle_s"] >= STALL_S and line["stall_s"] == STALL_S and stalls[0].levelname == "ERROR"

    # The lease is no longer renewed, and the given-up attempt writes nothing more.
    frozen = _lease_ms(store, job)
    time.sleep(0.3)
    assert _lease_ms(store, job) == frozen
    events_before = len(store.events(job))
    with pytest.raises(JobLost):
        publish(Stage.transcribe, 50.0)
    assert attempt.end(JobStatus.succeeded) == FENCED
    assert len(store.events(job)) == events_before
    record = store.get(job)
    assert record is not None and (record.status, record.attempt) == (JobStatus.running, 1)

    # As for a lost worker: once the lease has run out the reconciler re-enqueues the job, and the
    # next worker claims it as attempt 2.
    wait_until(lambda: time.time() * 1000 > frozen, 10, "the lease to run out")
    assert _reap(redis_url, job) == ("requeue", "running")
    again = store.claim(job, "another-worker", lease_s=60)
    assert (again.outcome, again.attempt) == ("claimed", 2)


def test_publisher_shows_once_per_job_stage_progress_and_every_stage_end(store: JobStore, redis_url: str) -> None:
    """With a 60 s throttle, per-chunk steps still publish their starts and ends; vad's fine steps
    publish (when the interval allows) though the job percent moves by less than 1."""
    job = _new_job(redis_url)
    claim = store.claim(job, "w", lease_s=60)
    slow = ProgressPublisher(store, job, claim.attempt, JobOptions(), 60.0)
    for p in (0.0, 30.0, 60.0, 100.0):
        slow(Stage.vad, p)
    for p in (0.0, 50.0, 100.0):
        slow(Stage.transcribe, p)
    got = [(f["stage"], f["stage_percent"]) for _, f in store.events(job) if f["type"] == "progress"]
    assert got == [("vad", "0.0"), ("vad", "100.0"), ("transcribe", "0.0"), ("transcribe", "100.0")]

    job2 = _new_job(redis_url)
    claim2 = store.claim(job2, "w", lease_s=60)
    fast = ProgressPublisher(store, job2, claim2.attempt, JobOptions(), 0.0)
    for p in (0.0, 10.0, 10.5, 12.0, 100.0, 100.0):
        fast(Stage.vad, p)  # 1 % of vad is 0.05 % of the job
    got = [f["stage_percent"] for _, f in store.events(job2) if f["type"] == "progress"]
    assert got == ["0.0", "10.0", "12.0", "100.0"]
