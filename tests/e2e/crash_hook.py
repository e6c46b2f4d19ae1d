"""Test-only worker plug-in: a job whose file name contains "crash" raises an unexpected error in its
diarize stage.

Loaded into a test's worker with `--include tests.e2e.crash_hook` (never by the service). A
Celery `task_prerun` handler looks the job up in Redis and, in the pool process, puts a function
that raises `RuntimeError` in place of the diarize stage of `pipeline/stages/chunk.py` for a crash
job (and the real one back for any other). The error's text names a made-up server path
(`SECRET_PATH`): the worker's log and Sentry may see it, the job's client never.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task
from celery.signals import task_prerun

from whisperx_service.broker.celery_app import TRANSCRIBE_TASK
from whisperx_service.config import Settings
from whisperx_service.store.keys import Keys

#: A job whose file name contains this crashes in its diarize stage.
MARK = "crash"
#: A server path in the exception's text.
SECRET_PATH = "/srv/wxs-internal/secret-state/diarize.bin"


def _crashing_diarize(*_: Any, **__: Any) -> Any:
    raise RuntimeError(f"crash hook: cannot read {SECRET_PATH}")


@task_prerun.connect
def _arm(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if task is None or task.name != TRANSCRIBE_TASK or not task_id:
        return
    from whisperx_service.pipeline.stages import chunk

    real = chunk.__dict__.setdefault("_real_diarize", chunk.diarize)
    settings: Settings = task.app.wxs_settings
    with redis.Redis.from_url(settings.redis.url, socket_timeout=5) as client:
        name = (client.hget(Keys.of(settings).job(task_id), "filename") or b"").decode()
    chunk.diarize = _crashing_diarize if MARK in name else real  # type: ignore[assignment]
