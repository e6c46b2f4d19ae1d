"""Shared fixtures: a real Redis (started if none answers), flushed per test, test settings, the model
bundle; and the folder markers.

Each test gets the marker of its folder: `unit` (no Redis, no model, no subprocess), `integration`
(real Redis and real models, in this process), `e2e` (real gateway and worker processes).
"""

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


#: Folder under tests/ -> marker its tests get.
FOLDER_MARKERS = ("unit", "integration", "e2e")
#: Fixtures that reach Redis or the model bundle: a unit test may not use them.
NOT_IN_UNIT = frozenset({"redis_url", "models_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder; refuse a unit test that asks for Redis or the models."""
    for item in items:
        folder = item.path.relative_to(REPO / "tests").parts[0]
        if folder not in FOLDER_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of {FOLDER_MARKERS}")
        item.add_marker(folder)
        used = NOT_IN_UNIT.intersection(getattr(item, "fixturenames", ()))
        if folder == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: it belongs in tests/integration")


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


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The offline model bundle, prepared (idempotently) once per session."""
    from whisperx_service.pipeline.models.prepare import prepare_models

    prepare_models(MODELS_DIR)
    return MODELS_DIR
