"""Helpers for the fault tests: watching a job from outside while its workers are killed.

Everything here reads what a client or an operator can see: the status API, the job's Redis
hash and event stream (what SSE serves), the files in storage and the worker logs.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import psutil
import redis

from tests.e2e.conftest import Service
from whisperx_service.broker.kombu_redis import BrokerKeys
from whisperx_service.store.keys import Keys

T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled")


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Call `check` until it returns a truthy value (returned) or `timeout_s` passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(interval_s)


def redis_client(svc: Service) -> redis.Redis:
    """A client on the service's Redis database (strings decoded)."""
    return redis.Redis.from_url(svc.env["REDIS_URL"], decode_responses=True, socket_timeout=10)


def broker_keys(svc: Service) -> BrokerKeys:
    """The keys of the service's broker (kombu's, under its REDIS_KEY_PREFIX)."""
    return BrokerKeys(f"{svc.env['REDIS_KEY_PREFIX']}:")


def keys(svc: Service) -> Keys:
    """The service's key builder."""
    return Keys(svc.env["REDIS_KEY_PREFIX"])


def job_hash(svc: Service, job_id: str) -> dict[str, str]:
    """The job's Redis hash (empty when unknown)."""
    with redis_client(svc) as r:
        return dict(r.hgetall(keys(svc).job(job_id)))


def stream(svc: Service, job_id: str) -> list[dict[str, str]]:
    """The job's event stream entries (the fields of each, in order) straight from Redis."""
    with redis_client(svc) as r:
        return [fields for _id, fields in r.xrange(keys(svc).events(job_id))]


def terminal_events(svc: Service, job_id: str) -> list[dict[str, str]]:
    """The terminal entries of the job's event stream (exactly one for an ended job)."""
    return [e for e in stream(svc, job_id) if e.get("type") in TERMINAL]


def status(svc: Service, job_id: str) -> dict[str, Any]:
    """GET /v1/jobs/{id}."""
    with svc.client() as c:
        return dict(c.get(f"/v1/jobs/{job_id}").json())


def checkpoints(svc: Service, job_id: str) -> dict[str, tuple[int, int]]:
    """Chunk checkpoint file name -> (mtime ns, attempt that computed it)."""
    out = {}
    for p in (svc.storage / "jobs" / job_id / "chunks").glob("[0-9]*.json"):
        out[p.name] = (p.stat().st_mtime_ns, int(json.loads(p.read_text())["attempt"]))
    return out


def chunk_done(svc: Service, job_id: str, index: int) -> bool:
    """True once chunk `index`'s checkpoint is in storage."""
    return (svc.storage / "jobs" / job_id / "chunks" / f"{index}.json").exists()


def pool_children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The worker's pool processes (children of its main process)."""
    try:
        return psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []


def worker_ready(svc: Service, proc: subprocess.Popen[bytes]) -> bool:
    """True once the worker logged Celery's `ready.` line and its pool process `models_warm` (it
    takes jobs from now on; before, it loads its models)."""
    log = svc.worker_log(proc)
    return " ready." in log and '"models_warm"' in log


def log_lines(svc: Service, event: str, job_id: str | None = None) -> list[str]:
    """Lines of every worker log of the service that mention `event` (and `job_id`)."""
    out = []
    for p in sorted(svc.logs.glob("worker*.log")):
        for line in p.read_text(errors="replace").splitlines():
            if event in line and (job_id is None or job_id in line):
                out.append(line)
    return out


class StatusWatcher(threading.Thread):
    """Polls a job's status every 0.2 s and keeps the sequence of distinct statuses it saw."""

    def __init__(self, svc: Service, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{svc.url}/v1/jobs/{job_id}"
        self.seen: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                value = c.get(self.url).json()["status"]
                if not self.seen or self.seen[-1] != value:
                    self.seen.append(value)
                time.sleep(0.2)

    def finish(self) -> list[str]:
        """Stop polling; the statuses seen."""
        self.stop.set()
        self.join(10)
        return self.seen


def assert_forward_only(seen: list[str]) -> None:
    """The statuses a poller saw never went back (running -> queued, terminal -> anything)."""
    order = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "cancelled": 2}
    ranks = [order[s] for s in seen]
    assert ranks == sorted(ranks) and len([s for s in seen if s in TERMINAL]) <= 1, seen
