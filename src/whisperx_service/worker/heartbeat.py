"""Worker liveness: a heartbeat thread in the worker's main process (the gateway's /readyz counts them).

Connected to Celery's signals when `tasks.py` is imported: logging and Sentry are set up before the
pool processes fork, the heartbeat starts when the worker is ready, and it stops (and removes its
name) at shutdown.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import redis
import structlog
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from whisperx_service.config import Settings
from whisperx_service.logs import configure_logging, init_sentry
from whisperx_service.store import workers
from whisperx_service.store.jobs import heartbeat
from whisperx_service.store.keys import Keys
from whisperx_service.worker.runtime import worker_name
from whisperx_service.worker.shutdown import check_sigterm_remapped

log = structlog.get_logger(__name__)

_beat_stop = threading.Event()


def beat_loop(settings: Settings, name: str, stop: threading.Event) -> None:
    """Record `name` alive every WORKER_HEARTBEAT_S until `stop` is set, then remove it. Never raises.

    Each beat also keeps the worker's state hash (its pool processes' models, written by
    `warm.py`) alive and drops the records of pool processes that no longer exist (killed).
    """
    client = redis.Redis.from_url(settings.redis.url)
    keys = Keys.of(settings)
    ttl = workers.state_ttl_s(settings.worker.heartbeat_s)
    while True:
        try:
            heartbeat(client, keys, name, state_ttl_s=ttl)
            for process in workers.process_names(client, keys, name):
                if not _alive(process):
                    workers.remove_process(client, keys, name, process)
        except redis.RedisError:
            log.warning("heartbeat_failed")
        if stop.wait(settings.worker.heartbeat_s):
            try:
                workers.remove_worker(client, keys, name)
            except redis.RedisError:
                log.warning("heartbeat_remove_failed")
            return


def _alive(process: str) -> bool:
    """Whether the pool process `<host>:<pid>` of this host still exists (another host's: assumed so)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@worker_init.connect
def _configure_logging(sender: Any = None, **_: Any) -> None:
    # Before the pool processes are forked, so they all log the same way as the main process and
    # report to Sentry (Sentry's Celery docs: init in `worker_init`; its sender thread restarts
    # in each forked process).
    configure_logging(sender.app.wxs_settings)
    init_sentry(sender.app.wxs_settings, celery=True)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings: Settings = sender.app.wxs_settings
    configure_logging(settings)
    check_sigterm_remapped()
    threading.Thread(
        target=beat_loop, args=(settings, worker_name(), _beat_stop), daemon=True, name="heartbeat"
    ).start()


@worker_shutting_down.connect  # SIGTERM/SIGINT: warm or cold (no `worker_shutdown` follows a cold one)
@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _beat_stop.set()
