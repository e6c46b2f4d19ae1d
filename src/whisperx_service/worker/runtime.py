"""What one worker process holds: its name (the lease owner) and its job store (made after fork)."""

from __future__ import annotations

import os
import socket

from whisperx_service.config import Settings
from whisperx_service.store.jobs import JobStore

_store: JobStore | None = None


def worker_name() -> str:
    """`<host>:<pid>`: the lease owner and heartbeat name of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parent_worker_name() -> str:
    """In a pool process: `<host>:<pid>` of its worker's main process (the heartbeat name).

    Pool processes are forked by the worker's main process, so their parent is that process.
    """
    return f"{socket.gethostname()}:{os.getppid()}"


def get_store(settings: Settings) -> JobStore:
    """The process's job store (one Redis connection pool per pool process, made after fork)."""
    global _store
    if _store is None:
        _store = JobStore.from_settings(settings, health_check_interval=30)
    return _store
