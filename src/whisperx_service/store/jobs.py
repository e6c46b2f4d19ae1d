"""The worker's job store (sync Redis): claim, renew, progress, finish, release, all fenced by attempt.

Every state change goes through the Lua scripts in `scripts.py`, so a status change and its event
are one step; a write from an attempt that no longer owns the job is refused (fencing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import redis

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobRecord, JobStatus, Stage, utcnow
from whisperx_service.store import scripts
from whisperx_service.store.keys import Keys
from whisperx_service.store.records import Event, as_str, decode_hash, flat_args, stream_entries

#: Upper bounds (seconds) of the job-duration histogram buckets (queued -> terminal).
DURATION_BUCKETS_S: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of a worker's claim on a job.

    outcome: `claimed` (this worker now runs it, with `attempt`), `busy` (another live lease),
    `terminal` (already finished, `status` says how), `missing` (no such job) or `ended` (it was
    free to take but must not run again: cancel requested, or its workers were lost
    `max_attempts` times; the claim ended it with `status` and the caller writes final.json).
    """

    outcome: Literal["claimed", "busy", "terminal", "missing", "ended"]
    attempt: int
    status: str


class Renewal(IntEnum):
    """What a lease renewal found (RENEW's answer). `lost` is falsy, the others truthy."""

    lost = 0  # fenced: the job is no longer running under this attempt; stop
    renewed = 1  # the lease was extended
    cancel_requested = 2  # extended, and DELETE asked the job to stop: end it `cancelled`


class JobStore:
    """Synchronous job store (the worker's)."""

    @classmethod
    def from_settings(cls, settings: Settings, **redis_kwargs: Any) -> JobStore:
        """A store on a new Redis client for REDIS_URL, REDIS_KEY_PREFIX and REDIS_EVENTS_MAXLEN.

        Args:
            redis_kwargs: passed to `redis.Redis.from_url` (timeouts, health checks).
        """
        client = redis.Redis.from_url(settings.redis.url, **redis_kwargs)
        return cls(client, Keys.of(settings), events_maxlen=settings.redis.events_maxlen)

    def __init__(self, client: redis.Redis, keys: Keys, *, events_maxlen: int = 10_000) -> None:
        self.r = client
        self.keys = keys
        self.maxlen = events_maxlen
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._progress = client.register_script(scripts.PROGRESS)
        self._update = client.register_script(scripts.UPDATE)
        self._finish = client.register_script(scripts.FINISH)
        self._release = client.register_script(scripts.RELEASE)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown."""
        h = self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(decode_hash(h)) if h else None

    def lease(self, job_id: str) -> tuple[str, str, int]:
        """`(status, lease_owner, attempt)` of the job (`("", "", 0)` when unknown)."""
        status, owner, attempt = self.r.hmget(self.keys.job(job_id), ["status", "lease_owner", "attempt"])
        return as_str(status or ""), as_str(owner or ""), int(attempt or 0)

    def release(self, job_id: str, attempt: int) -> bool:
        """Hand a running job back (graceful shutdown): its lease ends now, status stays `running`.

        The next delivery claims it at once with attempt + 1 and resumes from the chunk checkpoints;
        a `released` event is published and the hand-back does not count as a lost worker.

        Returns:
            True if released; False when fenced (not running, or another attempt owns it).
        """
        return bool(self._release(keys=[self.keys.job(job_id), self.keys.events(job_id)], args=[attempt, self.maxlen]))

    def claim(self, job_id: str, owner: str, lease_s: float, *, max_attempts: int = 0) -> Claim:
        """Take the job: queued (or running with an expired lease) -> running, attempt + 1.

        Args:
            lease_s: the lease this claim holds (s); renew it before it runs out.
            max_attempts: WORKER_MAX_ATTEMPTS; a job whose workers were already lost this many
                times is ended `failed: worker_lost` instead of claimed (0 = no cap).
        """
        now_ms = int(time.time() * 1000)
        out = self._claim(
            keys=[
                self.keys.job(job_id),
                self.keys.events(job_id),
                self.keys.running(),
                self.keys.metrics(),
                self.keys.finished(),
            ],
            args=[now_ms, int(lease_s * 1000), owner, utcnow().isoformat(), self.maxlen, max_attempts],
        )
        outcome, attempt, status = (as_str(x) for x in out)
        if outcome == "ended":
            self._observe_end(job_id)
        return Claim(outcome, int(attempt), status)  # type: ignore[arg-type]

    def renew(self, job_id: str, attempt: int, lease_s: float) -> Renewal:
        """Extend the lease to now + `lease_s` seconds.

        Returns:
            `Renewal.lost` (falsy) when the job is no longer ours (fenced), `renewed`, or
            `cancel_requested` when DELETE asked the job to stop (the lease is extended too).
        """
        now_ms = int(time.time() * 1000)
        return Renewal(int(self._renew(keys=[self.keys.job(job_id)], args=[attempt, now_ms, int(lease_s * 1000)])))

    def progress(
        self, job_id: str, attempt: int, stage: Stage, percent: float, **extra: str | float | int | None
    ) -> bool:
        """Publish a progress event (percent is clamped to never decrease); False when fenced."""
        return bool(
            self._progress(
                keys=[self.keys.job(job_id), self.keys.events(job_id)],
                # float(): a numpy scalar would reach Lua as "np.float64(…)" (redis-py encodes repr()).
                args=[attempt, self.maxlen, stage.value, round(float(percent), 1), *flat_args(extra)],
            )
        )

    def update(self, job_id: str, attempt: int, **fields: str | float | int | None) -> bool:
        """Set plain fields of a running job (e.g. duration_s); False when fenced."""
        return bool(self._update(keys=[self.keys.job(job_id)], args=[attempt, *flat_args(fields)]))

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
                keys=end_keys(self.keys, job_id),
                args=[
                    "" if attempt is None else attempt,
                    status.value,
                    utcnow().isoformat(),
                    self.maxlen,
                    error_code,
                    error_message[:2000],
                    int(time.time() * 1000),
                ],
            )
        )
        if changed:
            self._observe_end(job_id)
        return changed

    def _observe_end(self, job_id: str) -> None:
        created = self.r.hget(self.keys.job(job_id), "created_ms")
        if created:
            observe_duration(self.r, self.keys, time.time() - int(created) / 1000)

    def events(self, job_id: str, after: str = "0-0") -> list[Event]:
        """All stored events after the given stream id."""
        raw = self.r.xrange(self.keys.events(job_id), min=f"({after}" if after != "0-0" else "-")
        return stream_entries(raw)


def end_keys(keys: Keys, job_id: str) -> list[str]:
    """KEYS of the scripts that can end a job (FINISH, REAP): hash, events, metrics, running, finished."""
    return [keys.job(job_id), keys.events(job_id), keys.metrics(), keys.running(), keys.finished()]


def observe_duration(r: redis.Redis, keys: Keys, seconds: float) -> None:
    """Add one finished job's duration (s) to the shared histogram counters in Redis."""
    p = r.pipeline()
    for le in DURATION_BUCKETS_S:
        if seconds <= le:
            p.hincrby(keys.metrics(), f"duration_bucket:{le:g}", 1)
    p.hincrby(keys.metrics(), "duration_bucket:+Inf", 1)
    p.hincrbyfloat(keys.metrics(), "duration_sum", seconds)
    p.execute()


def heartbeat(r: redis.Redis, keys: Keys, worker: str, state_ttl_s: float | None = None) -> None:
    """Record that a worker is alive now (the gateway's /readyz counts recent heartbeats).

    Args:
        state_ttl_s: when given, the worker's state hash (its pool processes' models, `store/workers.py`)
            is kept for this many seconds more.
    Raises:
        redis.RedisError: Redis does not answer.
    """
    now = time.time()
    p = r.pipeline()
    p.zadd(keys.workers(), {worker: now})
    p.zremrangebyscore(keys.workers(), "-inf", now - 3600)
    if state_ttl_s is not None:
        p.pexpire(keys.worker_state(worker), int(state_ttl_s * 1000))
    p.execute()
