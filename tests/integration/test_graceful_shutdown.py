"""Graceful shutdown: the hand-back on a real Redis (RELEASE ends the lease at once, fenced, not counted
as a lost worker) and the settings that make SIGTERM a bounded soft shutdown."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import yaml

from whisperx_service.broker.celery_app import make_celery
from whisperx_service.config import RedisSettings, Settings, WorkerSettings
from whisperx_service.domain.jobs import JobOptions, JobStatus
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys
from whisperx_service.worker.runtime import worker_name
from whisperx_service.worker.shutdown import hand_back

REPO = Path(__file__).resolve().parents[2]


def _new_job(settings: Settings) -> str:
    job_id = uuid.uuid4().hex

    async def create() -> None:
        client = aioredis.Redis.from_url(settings.redis.url)
        keys = Keys.of(settings)
        await AsyncJobStore(client, keys).create(job_id, JobOptions(), filename="a.wav", size_bytes=10)
        await client.aclose()

    asyncio.run(create())
    return job_id


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, Keys.of(settings))


def test_release_ends_the_lease_now_and_the_next_claim_takes_it(store: JobStore, settings: Settings) -> None:
    job = _new_job(settings)
    assert store.claim(job, "w1", lease_s=600).attempt == 1
    assert store.claim(job, "w2", lease_s=600).outcome == "busy"
    assert store.release(job, 1)
    status, owner, attempt = store.lease(job)
    assert (status, owner, attempt) == ("running", "", 1), "still running: a poller never sees it go back to queued"
    assert store.r.hget(store.keys.job(job), "lease_expires_ms") == b"0"
    released = [f for _, f in store.events(job) if f["type"] == "released"]
    assert released == [{"type": "released", "status": "running", "attempt": "1"}]
    claim = store.claim(job, "w2", lease_s=600)  # at once: no waiting for the 600 s lease
    assert (claim.outcome, claim.attempt) == ("claimed", 2)
    assert not store.renew(job, 1, 600), "the released attempt is fenced"


def test_release_is_fenced(store: JobStore, settings: Settings) -> None:
    job = _new_job(settings)
    assert not store.release(job, 0), "a queued job has no lease to give back"
    store.claim(job, "w1", lease_s=600)
    assert not store.release(job, 2), "another attempt's release is refused"
    assert store.finish(job, JobStatus.succeeded, attempt=1)
    assert not store.release(job, 1), "an ended job stays ended"
    assert store.lease(job)[0] == "succeeded"
    assert not store.release("nope", 1)
    assert store.lease("nope") == ("", "", 0)


def test_hand_backs_do_not_count_as_lost_workers(store: JobStore, settings: Settings) -> None:
    job = _new_job(settings)
    for attempt in (1, 2, 3):
        claim = store.claim(job, "w", lease_s=600, max_attempts=2)
        assert (claim.outcome, claim.attempt) == ("claimed", attempt)
        assert store.release(job, attempt)
    assert store.r.hget(store.keys.job(job), "releases") == b"3"


def test_hand_back_releases_only_what_this_process_holds(store: JobStore, settings: Settings) -> None:
    mine, theirs, done = _new_job(settings), _new_job(settings), _new_job(settings)
    store.claim(mine, worker_name(), lease_s=600)
    store.claim(theirs, "other-host:1", lease_s=600)
    store.claim(done, worker_name(), lease_s=600)
    store.finish(done, JobStatus.succeeded, attempt=1)
    assert hand_back(settings, mine, reason="test")
    assert not hand_back(settings, mine, reason="again"), "released once"
    assert not hand_back(settings, theirs, reason="test")
    assert not hand_back(settings, done, reason="test")
    assert [j for j in (mine, theirs, done) if store.lease(j)[1] == ""] == [mine, done]


def test_hand_back_never_raises_when_redis_is_gone(settings: Settings) -> None:
    gone = settings.model_copy(update={"redis": RedisSettings(url="redis://127.0.0.1:1/0")})
    assert not hand_back(gone, "x", reason="test")


def test_soft_window_fits_the_compose_stop_grace_period(settings: Settings) -> None:
    window = WorkerSettings().soft_shutdown_s
    assert make_celery(settings).conf.worker_soft_shutdown_timeout == settings.worker.soft_shutdown_s == window
    services = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())["services"]
    for name in ("worker", "worker-cpu"):
        grace = re.fullmatch(r"(\d+)s", services[name]["stop_grace_period"])
        assert grace is not None, name
        # The window, then the job's current step ends and the pool process exits, before SIGKILL.
        assert int(grace.group(1)) >= window + 20, name
