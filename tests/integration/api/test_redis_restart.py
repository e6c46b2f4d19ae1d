"""The gateway after its Redis restarts: pooled connections are stale, and no request may fail for it.

A private redis-server (never the shared one) is killed with SIGKILL and started again on the same
port; the gateway (real, uvicorn in a thread) keeps its connection pool throughout.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from celery import Celery

from tests.integration.api.conftest import Gateway, free_port, serve
from tests.private_redis import PrivateRedis
from whisperx_service.config import RedisSettings, Settings

#: Concurrent requests: enough to open (and later reuse) several pooled connections.
PARALLEL = 8


def _statuses(gw: Gateway, job_id: str) -> list[int]:
    def get(_: int) -> int:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            return c.get(f"/v1/jobs/{job_id}").status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(get, range(PARALLEL)))


def test_no_503_once_redis_is_back(tmp_path: Path, api_settings: Settings, celery_app: Celery) -> None:
    server = PrivateRedis(free_port(), tmp_path / "redis")
    server.start()
    try:
        settings = api_settings.model_copy(update={"redis": RedisSettings(url=server.url)})
        unknown = "0" * 32
        for gw in serve(settings, celery_app):
            assert _statuses(gw, unknown) == [404] * PARALLEL  # Redis answered: no such job
            server.kill()
            assert _statuses(gw, unknown) == [503] * PARALLEL
            server.start()
            assert _statuses(gw, unknown) == [404] * PARALLEL  # not 503: stale connections are replaced
    finally:
        server.stop()
