"""Job repository on Redis: atomic, forward-only, fenced state changes plus the event stream.

`JobStore` is the synchronous store the worker uses; `AsyncJobStore` is the gateway's. Both
write through the Lua scripts in `scripts.py`, so a status change and its event are one step.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal, TypedDict

import redis
import redis.asyncio as aioredis

from whisperx_service.domain.jobs import JobOptions, JobRecord, JobStatus, Stage, utcnow
from whisperx_service.errors import InvalidCursor
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


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What `AsyncJobStore.cancel` did.

    outcome: `cancelled` (it was queued and is now cancelled, terminal), `cancelling` (it is running:
    cancel requested, the worker ends it at its next progress point), `terminal` (it had already ended:
    `status` says how) or `missing` (no such job).
    """

    outcome: Literal["cancelled", "cancelling", "terminal", "missing"]
    status: str


class FinalRecord(TypedDict):
    """The keyword arguments of `Storage.write_final` (the job's terminal state)."""

    status: str
    finished_at: str
    attempt: int
    error_code: str
    error_message: str


def final_record(record: JobRecord) -> FinalRecord:
    """A terminal job's record as `Storage.write_final` takes it: `storage.write_final(id, **final_record(rec))`."""
    finished = record.finished_at or utcnow()
    return FinalRecord(
        status=record.status.value,
        finished_at=finished.isoformat(),
        attempt=record.attempt,
        error_code=record.error.code if record.error else "",
        error_message=record.error.message if record.error else "",
    )


#: Job ids read from the index per Redis round trip while listing.
LIST_BATCH = 200
#: Index entries one list request examines at most (a status filter may match few); a page that
#: hits it is short, and its `next_cursor` continues where it stopped.
LIST_SCAN_MAX = 5000


def encode_cursor(created_ms: int, job_id: str) -> str:
    """Opaque list cursor: the position (created ms, id) of the last job a page covered."""
    return base64.urlsafe_b64encode(f"{created_ms}:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of `encode_cursor`.

    Raises:
        InvalidCursor: not a cursor this service made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, job_id = raw.split(":")
        created_ms = int(ms)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"cursor {cursor[:64]!r} is not one this service returned") from None
    if created_ms < 0 or len(job_id) != 32 or any(c not in "0123456789abcdef" for c in job_id):
        raise InvalidCursor(f"cursor {cursor[:64]!r} is not one this service returned")
    return created_ms, job_id


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
        self._release = client.register_script(scripts.RELEASE)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown."""
        h = self.r.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(_decode(h)) if h else None

    def lease(self, job_id: str) -> tuple[str, str, int]:
        """`(status, lease_owner, attempt)` of the job (`("", "", 0)` when unknown)."""
        status, owner, attempt = self.r.hmget(self.keys.job(job_id), ["status", "lease_owner", "attempt"])
        return _s(status or ""), _s(owner or ""), int(attempt or 0)

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
        outcome, attempt, status = (_s(x) for x in out)
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
                keys=_end_keys(self.keys, job_id),
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
        return _entries(raw)


def _end_keys(keys: Keys, job_id: str) -> list[str]:
    """KEYS of the scripts that can end a job (FINISH, REAP): hash, events, metrics, running, finished."""
    return [keys.job(job_id), keys.events(job_id), keys.metrics(), keys.running(), keys.finished()]


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        self._cancel = client.register_script(scripts.CANCEL)
        self._reap = client.register_script(scripts.REAP)
        self._mark_requeued = client.register_script(scripts.MARK_REQUEUED)
        self._restore = client.register_script(scripts.RESTORE)

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
                keys=_end_keys(self.keys, job_id),
                args=["", JobStatus.failed.value, utcnow().isoformat(), self.maxlen, code, message, _now_ms()],
            )
        )

    async def delete(self, job_id: str) -> None:
        """Forget a job entirely (used when the enqueue after create failed)."""
        await self.r.delete(self.keys.job(job_id), self.keys.events(job_id))
        await self.r.zrem(self.keys.jobs_index(), job_id)

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job atomically: a queued one at once, a running one by request (see `CancelOutcome`)."""
        out = await self._cancel(
            keys=[
                self.keys.job(job_id),
                self.keys.events(job_id),
                self.keys.metrics(),
                self.keys.running(),
                self.keys.finished(),
            ],
            args=[utcnow().isoformat(), int(time.time() * 1000), self.maxlen],
        )
        outcome, status = (_s(x) for x in out)
        return CancelOutcome(outcome, status)  # type: ignore[arg-type]

    async def purge(self, job_id: str) -> None:
        """Remove every Redis key of an ended job: its hash, events and index entries.

        Only for a terminal job (a running worker would lose its state); the caller checks that.
        """
        p = self.r.pipeline(transaction=True)
        p.delete(self.keys.job(job_id), self.keys.events(job_id))
        p.zrem(self.keys.jobs_index(), job_id)
        p.zrem(self.keys.finished(), job_id)
        p.srem(self.keys.running(), job_id)
        await p.execute()

    async def list_jobs(
        self, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Jobs newest first (by creation ms, then id descending), `limit` at most, from `cursor` on.

        The cursor is a position, not an offset: jobs created or removed between pages neither
        shift nor repeat the rest. Index entries whose job hash is gone are skipped.

        Args:
            status: only jobs in this status (None = all).
            limit: page size, >= 1.
            cursor: `next_cursor` of the previous page; None = from the newest job.
        Returns:
            (the page's jobs, the cursor of the next page or None when nothing follows). A
            filtered page may hold fewer than `limit` jobs when LIST_SCAN_MAX entries were examined.
        Raises:
            InvalidCursor: the cursor is not one this service made.
        """
        last = decode_cursor(cursor) if cursor else None  # position of the last entry examined
        size = limit + 1 if status is None else LIST_BATCH
        page: list[JobRecord] = []
        scanned = 0
        while scanned < LIST_SCAN_MAX:
            batch = await self._index_after(last, size)
            if not batch:
                return page, None
            p = self.r.pipeline(transaction=False)
            for _, job_id in batch:
                p.hgetall(self.keys.job(job_id))
            for pos, raw in zip(batch, await p.execute(), strict=True):
                h = _decode(raw)
                if h and (status is None or h.get("status") == status.value):
                    if len(page) == limit:  # a further match exists: the next page starts after `last`
                        assert last is not None
                        return page, encode_cursor(*last)
                    page.append(JobRecord.from_hash(h))
                last = pos
                scanned += 1
        return page, encode_cursor(*last) if last else None

    async def _index_after(self, pos: tuple[int, str] | None, count: int) -> list[tuple[int, str]]:
        """Up to `count` index entries `(created_ms, id)` strictly after `pos`, newest first.

        Order: created ms descending, then id descending (Redis orders equal scores by member),
        so equal creation times neither skip nor repeat a job across pages.
        """
        key = self.keys.jobs_index()
        out: list[tuple[int, str]] = []
        top: str | int = "+inf"
        if pos is not None:
            ms, after_id = pos
            tied: list[Any] = await self.r.zrangebyscore(key, ms, ms)
            ties = sorted((m for m in map(_s, tied) if m < after_id), reverse=True)
            out = [(ms, m) for m in ties[:count]]
            top = f"({ms}"
        if len(out) < count:
            raw: list[Any] = await self.r.zrevrangebyscore(
                key, top, "-inf", start=0, num=count - len(out), withscores=True
            )
            out += [(int(score), _s(m)) for m, score in raw]
        return out

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

    async def running_ids(self) -> list[str]:
        """Ids in the running set (jobs a worker claimed and did not finish)."""
        return sorted(_s(x) for x in await self.r.smembers(self.keys.running()))

    async def reap(self, job_id: str, now_ms: int, *, max_attempts: int, requeue_after_ms: int) -> tuple[str, str]:
        """The reconciler's atomic look at one running job (script REAP).

        Returns:
            (outcome, status): `gone` (no longer running), `alive` (lease live), `ended` (cancel was
            requested, or its workers were lost `max_attempts` times: ended now with `status`),
            `wait` (re-enqueued less than `requeue_after_ms` ago) or `requeue` (lease expired:
            marked, enqueue its task again).
        """
        out = await self._reap(
            keys=_end_keys(self.keys, job_id),
            args=[now_ms, max_attempts, utcnow().isoformat(), self.maxlen, requeue_after_ms, job_id],
        )
        outcome, status = (_s(x) for x in out)
        return outcome, status

    async def unfinished(self, created_before_ms: int) -> dict[str, dict[str, str]]:
        """Jobs created before `created_before_ms` that are not in the finished zset, with their hashes.

        A terminal job missing from the finished zset (ended before that index existed) is added
        to it here, scored by its `finished_at`, so retention finds it; it is not returned.
        """
        idx = await self.r.zdiff([self.keys.jobs_index(), self.keys.finished()], withscores=True)
        ids = [_s(m) for m, score in _pairs(idx) if float(score) < created_before_ms]
        out: dict[str, dict[str, str]] = {}
        p = self.r.pipeline(transaction=False)
        for job_id in ids:
            p.hgetall(self.keys.job(job_id))
        for job_id, raw in zip(ids, await p.execute(), strict=True):
            h = _decode(raw)
            if not h:
                continue
            if h.get("status") in _TERMINAL:
                await self.r.zadd(self.keys.finished(), {job_id: _iso_ms(h.get("finished_at")) or _now_ms()})
                continue
            out[job_id] = h
        return out

    async def mark_requeued(self, job_id: str, now_ms: int, requeue_after_ms: int) -> bool:
        """Mark a queued job re-enqueued now; False when it is not queued or was marked < `requeue_after_ms` ago."""
        return bool(await self._mark_requeued(keys=[self.keys.job(job_id)], args=[now_ms, requeue_after_ms]))

    async def restore(self, job_id: str, h: Mapping[str, str], *, created_ms: int, finished_ms: int | None) -> bool:
        """Write a job hash rebuilt from storage, with its indexes and a `restored` event.

        Returns:
            False (nothing written) when Redis already holds the job.
        """
        return bool(
            await self._restore(
                keys=[
                    self.keys.job(job_id),
                    self.keys.events(job_id),
                    self.keys.jobs_index(),
                    self.keys.running(),
                    self.keys.finished(),
                ],
                args=[created_ms, "" if finished_ms is None else finished_ms, self.maxlen, job_id, *_flat(h)],
            )
        )

    async def exists(self, *job_ids: str) -> list[bool]:
        """For each id, whether Redis holds its job hash."""
        p = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            p.exists(self.keys.job(job_id))
        return [bool(x) for x in await p.execute()]

    async def finished_before(self, before_ms: int) -> list[str]:
        """Ids of jobs that ended before `before_ms` (ms since the epoch), oldest first."""
        raw: Any = await self.r.zrangebyscore(self.keys.finished(), "-inf", f"({before_ms}")
        return [_s(x) for x in raw]

    async def finished_ids(self) -> list[str]:
        """Ids of every ended job still indexed (the retention index)."""
        raw: Any = await self.r.zrange(self.keys.finished(), 0, -1)
        return [_s(x) for x in raw]

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


_TERMINAL = frozenset(s.value for s in JobStatus if s.terminal)


def _pairs(raw: Any) -> list[tuple[Any, Any]]:
    """`(member, score)` pairs from a WITHSCORES reply (RESP2 flat list or RESP3 pairs)."""
    items = list(raw or [])
    if items and isinstance(items[0], (list, tuple)):
        return [(m, sc) for m, sc in items]
    return list(zip(items[::2], items[1::2], strict=True))


def _iso_ms(value: str | None) -> int | None:
    """ms since the epoch of an ISO-8601 time, or None when empty or malformed."""
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


def _entries(raw: Any) -> list[Event]:
    """Stream entries `[(id, {field: value})]` as strings."""
    return [(_s(i), _decode(f)) for i, f in raw or []]


def _decode(h: Mapping[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in h.items()}
