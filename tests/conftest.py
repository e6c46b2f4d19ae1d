"""Shared fixtures: a real Redis (started if none answers), flushed per test, and test settings."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from whisperx_service.config import (
    AuthSettings,
    LimitsSettings,
    ModelsSettings,
    RedisSettings,
    Settings,
    StorageSettings,
    WorkerSettings,
)

#: Redis used by the tests. Database 15 is flushed before each test; never point this at real data.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REPO = Path(__file__).resolve().parents[1]
#: The offline model bundle (`whisperx-service models prepare`); tests that need it prepare it once.
MODELS_DIR = Path(os.environ.get("MODELS_DIR", REPO / "models"))


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis that answers: the configured one, or a private redis-server started for the session."""
    if _answers(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("no Redis answers at TEST_REDIS_URL and redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/15"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database, flushed before the test."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Settings:
    """Settings for one test: flushed Redis database, storage in a temp directory."""
    return Settings(
        auth=AuthSettings(enabled=False),  # the access-control tests turn it on
        redis=RedisSettings(url=redis_url),
        storage=StorageSettings(root=tmp_path / "storage"),
        limits=LimitsSettings(max_upload_bytes=50 * 1024 * 1024),
        models=ModelsSettings(dir=MODELS_DIR),
        worker=WorkerSettings(heartbeat_s=1.0),
    )
