"""Rebuild jobs in Redis from storage, which is the record (docs/ARCHITECTURE.md).

When Redis lost its data (restarted empty), every job directory with a manifest (`job.json`)
becomes a job hash again, with these rules:

- `final.json` present: its terminal status, error, finish time and attempt.
- `result.json` present, no `final.json`: `succeeded` (the worker wrote the result; Redis lost
  the rest). Finish time = the result file's modification time.
- otherwise, if a worker had started it (a `work/` or `chunks/` directory exists): `running`
  with an expired lease, so a poller never sees it go from running back to queued; else
  `queued`. Either way it is held again on its owner's pending list (the manifest's `owner`), in
  the same Lua step that writes it, and the dispatcher hands it to a worker; claiming an expired
  lease or a queued job is the same for a worker.

`attempt` is the highest attempt found in `final.json` and the chunk checkpoints, so the attempt
cap (WORKER_MAX_ATTEMPTS) still holds: it is a lower bound, since an attempt that died before its
first checkpoint leaves no trace. Percent and stage restart at 0 and empty. Each restored job
gets one `restored` event in its stream; the SSE route adds the terminal event of an ended job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import structlog
from pydantic import ValidationError

from whisperx_service.domain.jobs import JobOptions, JobStatus
from whisperx_service.domain.keys import KeyOwner
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.records import iso_to_ms, new_job_hash

log = structlog.get_logger(__name__)

#: Job ids checked per Redis round trip when rebuilding.
EXISTS_BATCH = 500


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job as storage records it, ready to be written to Redis.

    hash: the job hash (every value a string, as `new_job_hash` makes it).
    created_ms / finished_ms: ms since the epoch (finished_ms None unless ended).
    manifest_mtime: modification time of `job.json` (s since the epoch).
    """

    job_id: str
    hash: dict[str, str]
    created_ms: int
    finished_ms: int | None
    manifest_mtime: float

    @property
    def status(self) -> JobStatus:
        """The status the job is restored with."""
        return JobStatus(self.hash["status"])


@dataclass
class Rebuild:
    """What one `rebuild` did.

    restored: ids written to Redis. young: manifests without a Redis job that were left alone
    because they are younger than `min_age_s` (an upload whose job is being created right now).
    unreadable: ids whose manifest could not be read or parsed.
    """

    restored: list[str] = field(default_factory=list)
    young: int = 0
    unreadable: list[str] = field(default_factory=list)


def _read_json(path: Any) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _owner(value: object) -> KeyOwner | None:
    """The manifest's `owner` ({id, name} of the key that created the job), when well formed."""
    if not isinstance(value, dict):
        return None
    try:
        return KeyOwner.model_validate(value)
    except ValidationError:
        return None


def _checkpoint_attempt(storage: Storage, job_id: str) -> int:
    """The highest `attempt` written into the job's chunk checkpoints (0 when there are none)."""
    best = 0
    chunks = storage.chunks_dir(job_id)
    for path in chunks.glob("*.json") if chunks.is_dir() else ():
        if path.stem.isdigit():
            data = _read_json(path)
            if data is not None and isinstance(data.get("attempt"), int):
                best = max(best, data["attempt"])
    return best


def read_stored_job(storage: Storage, job_id: str, now_ms: int) -> StoredJob | None:
    """Build the job hash of `job_id` from its files (see the module docstring for the rules).

    Blocking (file reads; run it in a thread from async code).

    Args:
        now_ms: now (ms since the epoch): marks a restored unfinished job as re-enqueued now.
    Returns:
        The stored job, or None when there is no readable manifest or its options are invalid.
    """
    manifest_path = storage.manifest(job_id)
    manifest = _read_json(manifest_path)
    if manifest is None or manifest.get("id", job_id) != job_id:
        return None
    try:
        options = JobOptions.model_validate(manifest.get("options") or {})
        manifest_mtime = manifest_path.stat().st_mtime
    except (ValidationError, OSError):
        return None
    created_ms = iso_to_ms(manifest.get("created_at")) or int(manifest_mtime * 1000)
    size = manifest.get("size_bytes")
    h = new_job_hash(
        job_id,
        options,
        filename=manifest.get("filename") if isinstance(manifest.get("filename"), str) else None,
        size_bytes=size if isinstance(size, int) else 0,
        created_ms=created_ms,
        owner=_owner(manifest.get("owner")),
    )
    created_at = manifest.get("created_at")
    if isinstance(created_at, str) and iso_to_ms(created_at):
        h["created_at"] = created_at  # the manifest's time, as the gateway wrote it
    else:
        h["created_at"] = datetime.fromtimestamp(created_ms / 1000, UTC).isoformat()
    attempt = _checkpoint_attempt(storage, job_id)
    final = _read_json(storage.final(job_id))
    finished_ms: int | None = None
    if final is not None and final.get("status") in {s.value for s in JobStatus if s.terminal}:
        attempt = max(attempt, int(final.get("attempt") or 0))
        finished_ms = iso_to_ms(final.get("finished_at")) or now_ms
        h.update(status=str(final["status"]), finished_at=datetime.fromtimestamp(finished_ms / 1000, UTC).isoformat())
        if final["status"] == JobStatus.succeeded:
            h["percent"] = "100"
        if final.get("error_code"):
            h.update(error_code=str(final["error_code"]), error_message=str(final.get("error_message") or ""))
    elif storage.result(job_id).is_file():
        try:
            finished_ms = int(storage.result(job_id).stat().st_mtime * 1000)
        except OSError:
            finished_ms = now_ms
        h.update(
            status=JobStatus.succeeded.value,
            percent="100",
            finished_at=datetime.fromtimestamp(finished_ms / 1000, UTC).isoformat(),
        )
    elif storage.work_dir(job_id).is_dir() or storage.chunks_dir(job_id).is_dir():
        attempt = max(attempt, 1)  # a worker started it: it goes on as a lease that expired
        h.update(status=JobStatus.running.value, requeued_ms=str(now_ms))
    else:
        h["requeued_ms"] = str(now_ms)
    h["attempt"] = str(attempt)
    return StoredJob(job_id, h, created_ms, finished_ms, manifest_mtime)


async def _write(jobs: AsyncJobStore, stored: StoredJob) -> bool:
    """Write one stored job to Redis unless Redis has it (an unfinished one is held). True if written."""
    if not await jobs.restore(stored.job_id, stored.hash, created_ms=stored.created_ms, finished_ms=stored.finished_ms):
        return False
    log.warning("job_restored", job_id=stored.job_id, status=stored.status.value, attempt=stored.hash["attempt"])
    return True


async def restore_job(jobs: AsyncJobStore, storage: Storage, job_id: str) -> bool:
    """Restore one job Redis does not know from its files (GET of a job Redis lost).

    Returns:
        True when Redis now holds the job (restored here or meanwhile by someone else); False
        when storage has no readable manifest for it.
    Raises:
        redis.RedisError: Redis does not answer.
    """
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    stored = await anyio.to_thread.run_sync(read_stored_job, storage, job_id, now_ms)
    if stored is None:
        return False
    await _write(jobs, stored)
    return True


async def rebuild(jobs: AsyncJobStore, storage: Storage, *, min_age_s: float, now_ms: int | None = None) -> Rebuild:
    """Restore every job in storage that Redis does not hold.

    Args:
        min_age_s: manifests younger than this (s) are left alone (and counted in `young`): their
            upload may be creating the job right now, and restoring it first would make that
            request fail. The caller runs the rebuild again until none is left.
        now_ms: now (ms since the epoch); None = the clock.
    Raises:
        redis.RedisError: Redis does not answer.
    """
    now_ms = int(datetime.now(UTC).timestamp() * 1000) if now_ms is None else now_ms
    out = Rebuild()
    dirs = [d.job_id for d in await anyio.to_thread.run_sync(storage.list_job_dirs) if d.has_manifest]
    for i in range(0, len(dirs), EXISTS_BATCH):
        batch = dirs[i : i + EXISTS_BATCH]
        found: list[StoredJob] = []
        for job_id, known in zip(batch, await jobs.exists(*batch), strict=True):
            if known:
                continue
            stored = await anyio.to_thread.run_sync(read_stored_job, storage, job_id, now_ms)
            if stored is None:
                out.unreadable.append(job_id)
            elif stored.manifest_mtime * 1000 > now_ms - min_age_s * 1000:
                out.young += 1
            else:
                found.append(stored)
        for stored in sorted(found, key=lambda s: (s.created_ms, s.job_id)):  # each owner's held jobs oldest first
            if await _write(jobs, stored):
                out.restored.append(stored.job_id)
    if out.unreadable:
        log.warning("restore_unreadable_manifests", job_ids=out.unreadable[:20], count=len(out.unreadable))
    return out
