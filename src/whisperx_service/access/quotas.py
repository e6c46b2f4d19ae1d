"""Per-key quotas at submission: queued jobs, audio hours per rolling 24 h, stored upload bytes.

Usage is read from the key's own job index (`AsyncJobStore.owner_usage`), so it is exact
whatever happened to earlier jobs (ended, purged, expired). A submission is checked twice: before
its body is read (is there room for one more job?) and after (does its size still fit?). Running
jobs per key (`max_running`) are held back by the dispatcher (`maintenance/dispatcher.py`), not refused here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator

import redis.exceptions

from whisperx_service.domain.keys import ApiKey
from whisperx_service.errors import QuotaExceeded, ServiceUnavailable
from whisperx_service.logs import get_logger
from whisperx_service.store.async_jobs import AsyncJobStore

#: The window of the audio-hours quota (s).
DAY_S = 86_400
#: Retry-After (s) when a queue or storage quota is full: jobs end, and retention frees storage, on
#: their own time; a minute is a polite interval to look again.
RETRY_QUEUE_S = 60
RETRY_STORAGE_S = 3600
#: Seconds a key's quota lock lives at most: a gateway that dies holding it frees it then. The step
#: it guards (a quota read, a manifest write, one Lua call) takes milliseconds.
QUOTA_LOCK_TTL_S = 30.0
#: Seconds a submission waits for its key's quota lock before it answers 503.
QUOTA_LOCK_WAIT_S = 30.0
#: Seconds between tries for a held quota lock.
QUOTA_LOCK_POLL_S = 0.02

log = get_logger(__name__)


def _has_quota(key: ApiKey | None) -> bool:
    """Whether a submission of `key` is checked at all: a queue, audio or storage quota is set."""
    if key is None:
        return False
    q = key.quotas
    return q.max_queued is not None or q.max_audio_hours_per_day is not None or q.max_storage_gb is not None


@contextlib.asynccontextmanager
async def quota_lock(jobs: AsyncJobStore, key: ApiKey | None) -> AsyncIterator[None]:
    """Hold `key`'s quota lock (redis-py's `Lock`, shared by every gateway) for the block.

    Around the last quota check and the job's creation, so two submissions of one key never both
    take its last free place. Keys without a queue, audio or storage quota (and auth off) take no lock.

    Raises:
        ServiceUnavailable: the lock stayed taken for QUOTA_LOCK_WAIT_S.
        redis.RedisError: Redis does not answer.
    """
    q = key.quotas if key is not None else None
    if (
        key is None
        or q is None
        or (q.max_queued is None and q.max_audio_hours_per_day is None and q.max_storage_gb is None)
    ):
        yield
        return
    lock = jobs.r.lock(
        jobs.keys.quota_lock(key.id),
        timeout=QUOTA_LOCK_TTL_S,
        sleep=QUOTA_LOCK_POLL_S,
        blocking_timeout=QUOTA_LOCK_WAIT_S,
    )
    if not await lock.acquire():
        raise ServiceUnavailable("too many submissions of this key at once; try again")
    try:
        yield
    finally:
        try:
            await lock.release()
        except redis.exceptions.LockNotOwnedError:  # held past its TTL: another submission may have it now
            log.warning("quota_lock_expired", key_id=key.id)


async def check_quotas(
    jobs: AsyncJobStore, key: ApiKey | None, *, add_bytes: int = 0, add_audio_s: float = 0.0
) -> None:
    """Refuse a submission that would take `key` over one of its quotas.

    Args:
        key: the submitting key (None when auth is off: no quotas).
        add_bytes: size of the upload being submitted (0 before its body is read).
        add_audio_s: its audio duration in seconds, when known (0 otherwise).
    Raises:
        QuotaExceeded: naming the quota, with a Retry-After.
        redis.RedisError: Redis does not answer.
    """
    if not _has_quota(key):
        return
    assert key is not None
    q = key.quotas
    now_ms = int(time.time() * 1000)
    usage = await jobs.owner_usage(key.id, since_ms=now_ms - DAY_S * 1000)
    if q.max_queued is not None and usage.queued + 1 > q.max_queued:
        raise QuotaExceeded(
            f"quota max_queued: this key has {usage.queued} jobs waiting (at most {q.max_queued})",
            quota="max_queued",
            retry_after_s=RETRY_QUEUE_S,
        )
    if q.max_audio_hours_per_day is not None and usage.audio_s + add_audio_s > q.max_audio_hours_per_day * 3600:
        oldest = min(usage.recent_created_ms, default=now_ms)
        raise QuotaExceeded(
            f"quota max_audio_hours_per_day: {usage.audio_s / 3600:.2f} h of audio in the last 24 h "
            f"(at most {q.max_audio_hours_per_day:g} h)",
            quota="max_audio_hours_per_day",
            retry_after_s=math.ceil((oldest + DAY_S * 1000 - now_ms) / 1000),
        )
    if q.max_storage_gb is not None and usage.stored_bytes + add_bytes > q.max_storage_gb * 1e9:
        raise QuotaExceeded(
            f"quota max_storage_gb: this key's uploads hold {usage.stored_bytes / 1e9:.3f} GB "
            f"(at most {q.max_storage_gb:g} GB); purge ended jobs to free it",
            quota="max_storage_gb",
            retry_after_s=RETRY_STORAGE_S,
        )
