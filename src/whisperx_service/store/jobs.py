"""Job repository on Redis: atomic, forward-only, fenced state changes plus the event stream.

`JobStore` is the synchronous store the worker uses; `AsyncJobStore` is the gateway's. Both
write through the Lua scripts in `scripts.py`, so a status change and its event are one step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio as aioredis

from whisperx_service.domain.jobs import JobOptions, JobRecord, JobStatus, Stage, utcnow
from whisperx_service.store import scripts
from whisperx_service.store.keys import Keys

#: Upper bounds (seconds) of the job-duration histogram buckets (queued -> terminal).
DURATION_BUCKETS_S: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

Event = tuple[str, dict[str, str]]


def _flat(pairs: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in pairs.items():
        if v is None:
            continue
        out += [k, str(v.item() if hasattr(v, "item") else v)]  # numpy scalars as plain numbers
    return out


def new_job_hash(
    job_id: str, options: JobOptions, *, filename: str | None, size_bytes: int, created_ms: int
) -> dict[str, str]:
    """The initial Redis hash of a queued job (every value a string)."""
    return {
        "id": job_id,
        "status": JobStatus.queued.value,
        "stage": "",
        "percent": "0",
        "attempt": "0",
        "created_at": utcnow().isoformat(),
        "created_ms": str(created_ms),
        "started_at": "",
        "finished_at": "",
        "filename": filename or "",
        "size_bytes": str(size_bytes),
        "options": options.model_dump_json(),
        "lease_owner": "",
        "lease_expires_ms": "0",
    }


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of a worker's claim on a job.

    outcome: `claimed` (this worker now runs it, with `attempt`), `busy` (another live lease),
    `terminal` (already finished, `status` says how) or `missing` (no such job).
    """

    outcome: Literal["claimed", "busy", "terminal", "missing"]
    attempt: int
    status: str


class JobStore:
    """Synchronous job store (the worker's)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, events_maxlen: int = 10_000) -> None:
        self.r = client
        self.keys = keys
        self.maxlen = events_maxlen
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._progress = client.register_script(scripts.PROGRESS)
        self._update = client.register_script(scripts.UPDATE)
        self._finish = client.register_script(scripts.FINISH)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown."""
        h = self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(_decode(h)) if h else None

    def claim(self, job_id: str, owner: str, lease_s: float) -> Claim:
        """Take the job: queued (or running with an expired lease) -> running, attempt + 1."""
        now_ms = int(time.time() * 1000)
        out = self._claim(
            keys=[self.keys.job(job_id), self.keys.events(job_id), self.keys.running()],
            args=[now_ms, int(lease_s * 1000), owner, utcnow().isoformat(), self.maxlen],
        )
        outcome, attempt, status = (_s(x) for x in out)
        return Claim(outcome, int(attempt), status)  # type: ignore[arg-type]

    def renew(self, job_id: str, attempt: int, lease_s: float) -> bool:
        """Extend the lease; False when the job is no longer ours (fenced)."""
        now_ms = int(time.time() * 1000)
        return bool(self._renew(keys=[self.keys.job(job_id)], args=[attempt, now_ms, int(lease_s * 1000)]))

    def progress(
        self, job_id: str, attempt: int, stage: Stage, percent: float, **extra: str | float | int | None
    ) -> bool:
        """Publish a progress event (percent is clamped to never decrease); False when fenced."""
        return bool(
            self._progress(
                keys=[self.keys.job(job_id), self.keys.events(job_id)],
                # float(): a numpy scalar would reach Lua as "np.float64(…)" (redis-py encodes repr()).
                args=[attempt, self.maxlen, stage.value, round(float(percent), 1), *_flat(extra)],
            )
        )

    def update(self, job_id: str, attempt: int, **fields: str | float | int | None) -> bool:
        """Set plain fields of a running job (e.g. duration_s); False when fenced."""
        return bool(self._update(keys=[self.keys.job(job_id)], args=[attempt, *_flat(fields)]))

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        attempt: int | None,
        error_code: str = "",
        error_message: str = "",
    ) -> bool:
        """Move the job to a terminal status and publish the terminal event, exactly once.

        Args:
            attempt: the worker's attempt (fencing); None = unfenced (the API cancelling).
        Returns:
            True if this call made the change; False if the job was already terminal or fenced.
        """
        changed = bool(
            self._finish(
                keys=[self.keys.job(job_id), self.keys.events(job_id), self.keys.metrics(), self.keys.running()],
                args=[
                    "" if attempt is None else attempt,
                    status.value,
                    utcnow().isoformat(),
                    self.maxlen,
                    error_code,
                    error_message[:2000],
                ],
            )
        )
        if changed:
            created = self.r.hget(self.keys.job(job_id), "created_ms")
            if created:
                observe_duration(self.r, self.keys, time.time() - int(created) / 1000)
        return changed

    def events(self, job_id: str, after: str = "0-0") -> list[Event]:
        """All stored events after the given stream id."""
        raw = self.r.xrange(self.keys.events(job_id), min=f"({after}" if after != "0-0" else "-")
        return _entries(raw)


def observe_duration(r: redis.Redis, keys: Keys, seconds: float) -> None:
    """Add one finished job's duration (s) to the shared histogram counters in Redis."""
    p = r.pipeline()
    for le in DURATION_BUCKETS_S:
        if seconds <= le:
            p.hincrby(keys.metrics(), f"duration_bucket:{le:g}", 1)
    p.hincrby(keys.metrics(), "duration_bucket:+Inf", 1)
    p.hincrbyfloat(keys.metrics(), "duration_sum", seconds)
    p.execute()


class AsyncJobStore:
    """Asynchronous job store (the gateway's)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, events_maxlen: int = 10_000) -> None:
        self.r = client
        self.keys = keys
        self.maxlen = events_maxlen
        self._create = client.register_script(scripts.CREATE)
        self._finish = client.register_script(scripts.FINISH)

    async def create(self, job_id: str, options: JobOptions, *, filename: str | None, size_bytes: int) -> JobRecord:
        """Record a new queued job and publish its `queued` event.

        Raises:
            ValueError: a job with this id exists.
            redis.RedisError: Redis does not answer.
        """
        created_ms = int(time.time() * 1000)
        h = new_job_hash(job_id, options, filename=filename, size_bytes=size_bytes, created_ms=created_ms)
        ok = await self._create(
            keys=[
                self.keys.job(job_id),
                self.keys.events(job_id),
                self.keys.jobs_index(),
                self.keys.metrics(),
            ],
            args=[created_ms, self.maxlen, job_id, *_flat(h)],
        )
        if not ok:
            raise ValueError(f"job {job_id} exists")
        await self.r.hincrby(self.keys.metrics(), "upload_bytes", size_bytes)
        return JobRecord.from_hash(h)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown."""
        h = await self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(_decode(h)) if h else None

    async def fail(self, job_id: str, code: str, message: str) -> bool:
        """Fail a job from the gateway (e.g. the enqueue failed); False if already terminal."""
        return bool(
            await self._finish(
                keys=[self.keys.job(job_id), self.keys.events(job_id), self.keys.metrics(), self.keys.running()],
                args=["", JobStatus.failed.value, utcnow().isoformat(), self.maxlen, code, message],
            )
        )

    async def delete(self, job_id: str) -> None:
        """Forget a job entirely (used when the enqueue after create failed)."""
        await self.r.delete(self.keys.job(job_id), self.keys.events(job_id))
        await self.r.zrem(self.keys.jobs_index(), job_id)

    async def read_events(self, job_id: str, after: str, block_ms: int) -> list[Event]:
        """Events with ids greater than `after`, waiting up to `block_ms` for the first one."""
        res: Any = await self.r.xread({self.keys.events(job_id): after}, block=block_ms, count=500)
        out: list[Event] = []
        for _stream, entries in res or []:
            out += _entries(entries)
        return out

    async def last_event(self, job_id: str) -> Event | None:
        """The newest event in the job's stream, or None when the stream is empty or gone."""
        found = _entries(await self.r.xrevrange(self.keys.events(job_id), count=1))
        return found[0] if found else None

    async def expired_leases(self, now_ms: int, requeue_after_ms: int) -> list[str]:
        """Running jobs whose lease ran out (worker gone), not re-enqueued in the last `requeue_after_ms`.

        Each returned job is marked (`requeued_ms`) so the next sweep leaves it alone for a while.
        """
        out = []
        for raw in await self.r.smembers(self.keys.running()):
            job_id = _s(raw)
            h = _decode(await self.r.hgetall(self.keys.job(job_id)))
            if h.get("status") != "running":
                await self.r.srem(self.keys.running(), job_id)
                continue
            if int(h.get("lease_expires_ms") or 0) > now_ms:
                continue
            if now_ms - int(h.get("requeued_ms") or 0) < requeue_after_ms:
                continue
            await self.r.hset(self.keys.job(job_id), "requeued_ms", str(now_ms))
            out.append(job_id)
        return out

    async def metrics(self) -> dict[str, str]:
        """The shared counters (see `Keys.metrics`)."""
        return _decode(await self.r.hgetall(self.keys.metrics()))

    async def live_workers(self, within_s: float) -> int:
        """Number of workers whose heartbeat is newer than `within_s` seconds."""
        return int(await self.r.zcount(self.keys.workers(), time.time() - within_s, "+inf"))


def heartbeat(r: redis.Redis, keys: Keys, worker: str) -> None:
    """Record that a worker is alive now (the gateway's /readyz counts recent heartbeats)."""
    now = time.time()
    p = r.pipeline()
    p.zadd(keys.workers(), {worker: now})
    p.zremrangebyscore(keys.workers(), "-inf", now - 3600)
    p.execute()


def _s(x: bytes | str | int) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _entries(raw: Any) -> list[Event]:
    """Stream entries `[(id, {field: value})]` as strings."""
    return [(_s(i), _decode(f)) for i, f in raw or []]


def _decode(h: Mapping[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in h.items()}
