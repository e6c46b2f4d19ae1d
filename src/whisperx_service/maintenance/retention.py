"""Retention: nothing the service created stays on disk forever.

One sweep (run by the reconciler every RETENTION_SWEEP_INTERVAL_S, under its lock):

- jobs that ended more than RETENTION_S ago: their directory (source, chunks, result, final.json)
  and then their Redis keys (hash, events, index entries) are deleted. Files go first, so a job
  Redis still knows is never rebuilt from files that are half gone.
- every other ended job: a leftover `work/` directory (decoded audio; the worker removes it when
  the job ends, unless it died first) is removed, and a missing `final.json` is written from the
  Redis record (the process that ended the job died before writing it).
- directories no job owns (no `job.json`: an upload that never finished) and temp files of
  unfinished atomic writes (`.tmp-*`) older than RETENTION_ORPHAN_S are deleted.
- resumable uploads (`uploads/<id>`, tus) past their expiry (UPLOAD_EXPIRY_S after creation):
  unfinished, or finished and never made a job, or the note left by one made a job; deleted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from dataclasses import dataclass

import anyio.to_thread
import structlog

from whisperx_service.config import Settings
from whisperx_service.storage.local import Storage
from whisperx_service.storage.uploads import UploadStore
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.records import final_record

log = structlog.get_logger(__name__)


@dataclass
class Retention:
    """What one sweep deleted or repaired (counts)."""

    expired_jobs: int = 0
    orphan_dirs: int = 0
    tmp_files: int = 0
    work_dirs: int = 0
    finals_written: int = 0
    expired_uploads: int = 0


def _stale_files(storage: Storage, before_s: float) -> tuple[list[str], list[str]]:
    """(ids of job directories without a manifest, temp files), both last modified before `before_s`."""
    orphans = [d.job_id for d in storage.list_job_dirs() if not d.has_manifest and d.mtime < before_s]
    tmps = []
    for path in storage.tmp_files():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < before_s:
                tmps.append(str(path))
    return orphans, tmps


def _leftovers(storage: Storage, ended: list[str]) -> tuple[int, list[str]]:
    """Remove the `work/` directories of ended jobs; returns (how many, ids whose final.json is missing)."""
    removed, missing = 0, []
    for job_id in ended:
        work = storage.work_dir(job_id)
        if work.is_dir():
            shutil.rmtree(work, ignore_errors=True)
            removed += 1
        if storage.job_dir(job_id).is_dir() and not storage.final(job_id).exists():
            missing.append(job_id)
    return removed, missing


def _remove_files(paths: list[str]) -> int:
    """Unlink each path (gone already is fine); returns how many this call removed."""
    removed = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            removed += 1
    return removed


async def sweep_retention(
    jobs: AsyncJobStore, storage: Storage, settings: Settings, *, now_s: float | None = None
) -> Retention:
    """Run one retention sweep (see the module docstring).

    Args:
        now_s: now (s since the epoch); None = the clock.
    Raises:
        redis.RedisError: Redis does not answer (files deleted so far stay deleted).
    """
    now_s = time.time() if now_s is None else now_s
    out = Retention()
    for job_id in await jobs.finished_before(int((now_s - settings.retention.s) * 1000)):
        await anyio.to_thread.run_sync(storage.remove_job, job_id)
        await jobs.purge(job_id)
        out.expired_jobs += 1
        log.info("job_expired", job_id=job_id)
    out.work_dirs, missing_final = await anyio.to_thread.run_sync(_leftovers, storage, await jobs.finished_ids())
    for job_id in missing_final:
        record = await jobs.get(job_id)
        if record is not None and record.status.terminal:
            await anyio.to_thread.run_sync(functools.partial(storage.write_final, job_id, **final_record(record)))
            out.finals_written += 1
    orphans, tmps = await anyio.to_thread.run_sync(_stale_files, storage, now_s - settings.retention.orphan_s)
    for job_id in orphans:
        await anyio.to_thread.run_sync(storage.remove_job, job_id)
        log.info("orphan_removed", job_id=job_id)
    out.orphan_dirs = len(orphans)
    out.tmp_files = await anyio.to_thread.run_sync(_remove_files, tmps)
    uploads = UploadStore(storage.root)
    for upload_id in await anyio.to_thread.run_sync(uploads.expired, now_s):
        await anyio.to_thread.run_sync(uploads.remove, upload_id)
        log.info("upload_expired", upload_id=upload_id)
        out.expired_uploads += 1
    return out
