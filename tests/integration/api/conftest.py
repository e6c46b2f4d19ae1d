"""API test fixtures: the real gateway served by uvicorn in a thread, on the real test Redis.

The Celery app is a real one pointed at the test Redis, so an enqueued task is a real message in
the broker's queue list; no worker runs. Worker progress is simulated through the real sync
`JobStore` (claim / progress / finish), exactly as the worker writes it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from celery import Celery

from whisperx_service.api.app import create_app
from whisperx_service.broker.celery_app import make_celery
from whisperx_service.broker.kombu_redis import BrokerKeys, waiting_job_ids
from whisperx_service.config import ApiSettings, LimitsSettings, Settings
from whisperx_service.maintenance.dispatcher import Dispatch, MaxRunning, dispatch_once, no_limit
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys

#: Upload limit of the API tests (bytes): small enough to exceed quickly, larger than a write batch.
TEST_MAX_UPLOAD = 12 * 1024 * 1024


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll `check` every 20 ms until it is true; fail after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def queued_job_ids(r: redis.Redis, settings: Settings) -> list[str]:
    """Job ids whose task message waits in the service's broker queue, oldest first."""
    return waiting_job_ids(r, BrokerKeys.of(settings), settings.worker.queue)


def held_job_ids(r: redis.Redis, settings: Settings) -> list[str]:
    """Job ids held for a worker slot: each pending list of the dispatch ring, owners in ring order."""
    keys = Keys.of(settings)
    out: list[str] = []
    for owner in r.zrange(keys.dispatch_ring(), 0, -1):
        out += [x.decode() for x in r.lrange(keys.pending(owner.decode()), 0, -1)]
    return out


def dispatching_job_ids(r: redis.Redis, settings: Settings) -> list[str]:
    """Job ids the dispatcher took and has not sent yet (or died sending)."""
    return [x.decode() for x in r.zrange(Keys.of(settings).dispatching(), 0, -1)]


def accounted_job_ids(r: redis.Redis, settings: Settings) -> list[str]:
    """Every job id held, being dispatched or waiting in the broker, sorted. Read in the order a job
    moves (held -> dispatching -> broker), so a job moving meanwhile is still seen."""
    held = held_job_ids(r, settings)
    moving = dispatching_job_ids(r, settings)
    return sorted({*held, *moving, *queued_job_ids(r, settings)})


def dispatch(
    settings: Settings, celery: Celery, max_running: MaxRunning = no_limit, now_s: float | None = None
) -> Dispatch:
    """One dispatcher pass (`dispatch_once`) on a fresh async client."""

    async def go() -> Dispatch:
        client = aioredis.Redis.from_url(settings.redis.url)
        try:
            return await dispatch_once(
                AsyncJobStore.from_settings(client, settings), celery, settings, max_running, now_s=now_s
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def wav_bytes(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A small valid 16-bit mono WAV of silence."""
    buf = BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


@dataclass
class Gateway:
    """A running gateway: its base URL, settings, storage root and a client on it."""

    url: str
    settings: Settings
    client: httpx.Client
    server: uvicorn.Server

    @property
    def jobs_dir(self) -> Path:
        """`<storage root>/jobs`."""
        return self.settings.storage.root / "jobs"

    def job_dirs(self) -> list[Path]:
        """Job directories present in storage now."""
        return sorted(self.jobs_dir.iterdir()) if self.jobs_dir.exists() else []


def serve(app_settings: Settings, celery: Celery) -> Iterator[Gateway]:
    """Run `create_app(app_settings, celery=celery)` under uvicorn in a thread until the generator closes."""
    port = free_port()
    config = uvicorn.Config(
        create_app(app_settings, celery=celery),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        yield Gateway(url=url, settings=app_settings, client=client, server=server)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """Test settings with a small upload limit and short SSE timings."""
    return settings.model_copy(
        update={
            "limits": LimitsSettings(max_upload_bytes=TEST_MAX_UPLOAD, max_form_field_bytes=4096),
            "api": ApiSettings(sse_block_ms=200, sse_ping_s=0.3),
        }
    )


@pytest.fixture
def celery_app(settings: Settings) -> Iterator[Celery]:
    """The service's Celery app on the test Redis (its broker keys under REDIS_KEY_PREFIX); no worker runs."""
    app = make_celery(settings)
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0)
    yield app
    app.close()


@pytest.fixture
def gateway(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway, served for one test."""
    yield from serve(api_settings, celery_app)


@pytest.fixture
def worker_store(redis_client: redis.Redis, api_settings: Settings) -> JobStore:
    """The worker's sync store on the test Redis, to play the worker's part."""
    return JobStore(redis_client, Keys.of(api_settings))


@pytest.fixture
def submit(gateway: Gateway) -> Callable[..., str]:
    """Submit a small WAV; returns the new job's id."""

    def _submit(**fields: str) -> str:
        r = gateway.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, data=fields)
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    return _submit
