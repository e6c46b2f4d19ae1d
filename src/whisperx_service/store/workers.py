"""Worker state in Redis: each pool process's models and device, and workers that failed to start.

Written by the worker (sync client): a pool process records itself in its worker's hash
(`Keys.worker_state`, one field per pool process) while it loads its models and once they are
warm; the worker's heartbeat (`store.jobs.heartbeat`) keeps that hash alive, so it disappears
`WORKER_STATE_TTL` after the worker stops beating. A worker that cannot load a model records a
`WorkerFailure` (`Keys.worker_failures`), kept `FAILURE_KEEP_S`.

Read by the gateway (async client) for `/readyz`: the live workers (heartbeat within the window)
with their pool processes, and the recent failures.
"""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from whisperx_service.domain.workers import ProcessState, WorkerFailure, WorkerProcess, WorkerStatus
from whisperx_service.store.keys import Keys

#: Seconds a failed start stays listed (the same hour the heartbeat set keeps old names).
FAILURE_KEEP_S = 3600.0


def state_ttl_s(heartbeat_s: float) -> float:
    """Seconds a worker's state hash outlives its last write or heartbeat: three heartbeats (the
    liveness window) plus a minute, so a pool process that writes before the worker's first beat
    is not lost."""
    return 3 * heartbeat_s + 60.0


def record_process(r: redis.Redis, keys: Keys, worker: str, process: WorkerProcess, ttl_s: float) -> None:
    """Write one pool process's record into its worker's hash and push the hash's expiry to `ttl_s` seconds.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    p = r.pipeline()
    p.hset(keys.worker_state(worker), process.name, process.model_dump_json())
    p.pexpire(keys.worker_state(worker), int(ttl_s * 1000))
    p.execute()


def remove_process(r: redis.Redis, keys: Keys, worker: str, process: str) -> None:
    """Remove a pool process (`<host>:<pid>`) from its worker's hash (it exited).

    Raises:
        redis.RedisError: Redis does not answer.
    """
    r.hdel(keys.worker_state(worker), process)


def process_names(r: redis.Redis, keys: Keys, worker: str) -> list[str]:
    """The pool processes (`<host>:<pid>`) a worker's hash lists.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    return [n.decode() if isinstance(n, bytes) else str(n) for n in r.hkeys(keys.worker_state(worker))]


def remove_worker(r: redis.Redis, keys: Keys, worker: str) -> None:
    """Forget a stopping worker: its heartbeat entry and its pool processes' records.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    p = r.pipeline()
    p.zrem(keys.workers(), worker)
    p.delete(keys.worker_state(worker))
    p.execute()


def record_failure(r: redis.Redis, keys: Keys, failure: WorkerFailure) -> None:
    """Record why a worker could not start (one entry per worker name; older than FAILURE_KEEP_S pruned).

    Raises:
        redis.RedisError: Redis does not answer.
    """
    p = r.pipeline()
    p.hset(keys.worker_failures(), failure.worker, failure.model_dump_json())
    p.expire(keys.worker_failures(), int(FAILURE_KEEP_S))
    p.execute()


def clear_failure(r: redis.Redis, keys: Keys, worker: str) -> None:
    """Drop a worker name's failure record (a worker of that name started warm since).

    Raises:
        redis.RedisError: Redis does not answer.
    """
    r.hdel(keys.worker_failures(), worker)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def live_workers(r: aioredis.Redis, keys: Keys, within_s: float) -> list[WorkerStatus]:
    """Workers with a heartbeat in the last `within_s` seconds and their pool processes, by name.

    A record that does not parse (another version's) is left out.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    found = await r.zrangebyscore(keys.workers(), time.time() - within_s, "+inf")
    names = sorted(_text(n) for n in found if isinstance(n, (bytes, str)))
    if not names:
        return []
    p = r.pipeline()
    for name in names:
        p.hgetall(keys.worker_state(name))
    states = await p.execute()
    out = []
    for name, fields in zip(names, states, strict=True):
        processes = []
        for raw in sorted(fields, key=_text):
            try:
                processes.append(WorkerProcess.model_validate_json(fields[raw]))
            except ValidationError:
                continue
        warm = any(proc.state is ProcessState.warm for proc in processes)
        out.append(WorkerStatus(name=name, warm=warm, processes=processes))
    return out


async def recent_failures(r: aioredis.Redis, keys: Keys, within_s: float = FAILURE_KEEP_S) -> list[WorkerFailure]:
    """Failed worker starts of the last `within_s` seconds, newest first; older ones are deleted.

    Raises:
        redis.RedisError: Redis does not answer.
    """
    raw = await r.hgetall(keys.worker_failures())
    cutoff = time.time() - within_s
    found: list[WorkerFailure] = []
    stale: list[bytes | str] = []
    for field, value in raw.items():
        try:
            failure = WorkerFailure.model_validate_json(value)
        except ValidationError:
            stale.append(field)
            continue
        if failure.at >= cutoff:
            found.append(failure)
        else:
            stale.append(field)
    if stale:
        await r.hdel(keys.worker_failures(), *stale)
    return sorted(found, key=lambda f: f.at, reverse=True)
