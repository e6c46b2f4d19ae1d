"""Unit tests start no process and reach no Redis: both fail the test here (see also the fixture
check in tests/conftest.py, which refuses `redis_url` and `models_dir` in this folder)."""

from __future__ import annotations

import subprocess
from typing import Any, NoReturn

import pytest
import redis
import redis.asyncio


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"a unit test {what}: it belongs in tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def _no_process_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("started a subprocess"))
    monkeypatch.setattr(redis.Redis, "execute_command", _refuse("used Redis"))
    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", _refuse("used Redis"))
