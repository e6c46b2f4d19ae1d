"""Test-only worker plug-in: a job whose file name contains "poison" kills its pool process.

Loaded into a test's worker with `--include tests.e2e.poison_hook` (never by the service). A
Celery `task_prerun` handler looks the job up in Redis; for a poison file it starts a thread that
SIGKILLs its own pool process as soon as this process has claimed the job (the lease owner is
this process): every attempt dies right after its claim, like a file that crashes the decoder.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import redis
from celery import Task
from celery.signals import task_prerun

from whisperx_service.broker.celery_app import TRANSCRIBE_TASK
from whisperx_service.config import Settings
from whisperx_service.store.keys import Keys
from whisperx_service.worker.runtime import worker_name

#: A job whose file name contains this kills its worker.
MARK = "poison"


def _kill_when_claimed(client: redis.Redis, key: str, deadline_s: float = 120.0) -> None:
    me, end = worker_name(), time.monotonic() + deadline_s
    while time.monotonic() < end:
        if client.hget(key, "lease_owner") == me.encode():
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.02)


@task_prerun.connect
def _poison(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if task is None or task.name != TRANSCRIBE_TASK or not task_id:
        return
    settings: Settings = task.app.wxs_settings
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=5)
    key = Keys.of(settings).job(task_id)
    if MARK in (client.hget(key, "filename") or b"").decode():
        threading.Thread(target=_kill_when_claimed, args=(client, key), daemon=True, name="poison").start()
