"""Fetching a job's source from its `url` (POST /v1/jobs with `url`) into storage.

One try (`fetch_job`): GET the URL through the SSRF-safe client (`outbound/http.py`: the host
resolved once, private and reserved addresses refused unless OUTBOUND_ALLOW_PRIVATE, the checked
address connected to; at most FETCH_MAX_REDIRECTS redirects, each checked again), with
FETCH_CONNECT_TIMEOUT_S and FETCH_READ_TIMEOUT_S per phase and FETCH_TIMEOUT_S in all. The body
streams to `jobs/<id>/.tmp-source-<try>` under the upload's limits: MAX_UPLOAD_BYTES (announced,
or counted while streaming), STORAGE_MIN_FREE_BYTES (checked before, every MiB and every second),
then fsync, rename to `source`, and the upload's ffprobe check (`storage.intake.check_source`:
allowed container, audio, MAX_DURATION_S). About once a second the bytes so far are published
(the `fetch` stage) and the item's lease pushed ahead; a job cancelled meanwhile stops the fetch.

The stored source makes the job like an upload's: it is held for the dispatcher and goes to the
GPU queue. A failure ends the job `failed` (final.json written, the `ended` webhook recorded)
with `url_unreachable`, `url_refused`, `url_too_large`, `unsupported_media`, `audio_too_long` or
`insufficient_storage`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import drawbridge
import httpx
import redis

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobRecord
from whisperx_service.errors import (
    InsufficientStorage,
    JobFailure,
    ServiceError,
    UrlRefused,
    UrlTooLarge,
    UrlUnreachable,
)
from whisperx_service.logs import get_logger
from whisperx_service.outbound import http
from whisperx_service.storage import intake
from whisperx_service.storage.local import TMP_PREFIX, Storage, atomic_write_json
from whisperx_service.store.fetches import FetchStore
from whisperx_service.store.records import decode_hash, final_record
from whisperx_service.store.webhooks import job_event

log = get_logger(__name__)

#: Seconds between two progress records of one fetch (each also renews the item's lease).
PROGRESS_INTERVAL_S = 1.0
#: Free space is checked again after every this many bytes (an upload's write batch,
#: api/writer.WRITE_BATCH_BYTES) and at every progress record.
FREE_CHECK_BYTES = 1024 * 1024
#: errno values that mean the storage is full (no space, or the user's quota is used up).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class Abandoned(Exception):
    """The job was cancelled or purged, or another try took over, while this one fetched."""


def _timeout(settings: Settings) -> httpx.Timeout:
    f = settings.fetch
    return httpx.Timeout(connect=f.connect_timeout_s, read=f.read_timeout_s, write=f.read_timeout_s, pool=None)


def download(
    settings: Settings,
    url: str,
    tmp: Path,
    storage_root: Path,
    on_progress: Callable[[int, int | None], bool] | None = None,
) -> int:
    """Stream `url` into `tmp` (created; fsynced) under the upload's limits; returns the byte count.

    Args:
        on_progress: called as `on_progress(fetched, total)` about every PROGRESS_INTERVAL_S;
            False stops the fetch (`Abandoned`).
    Raises:
        UrlRefused: the URL or a redirect leads to a refused address (no connection was made to it).
        UrlUnreachable: no answer, a timeout (a phase, or FETCH_TIMEOUT_S in all), a non-2xx answer,
            too many redirects, another transport error.
        UrlTooLarge: over MAX_UPLOAD_BYTES (announced or counted).
        InsufficientStorage: storage would keep less than STORAGE_MIN_FREE_BYTES free.
        Abandoned: `on_progress` said stop.
        OSError: writing failed (other than a full disk).
    """
    limit = settings.limits.max_upload_bytes
    min_free = settings.storage.min_free_bytes
    deadline = time.monotonic() + settings.fetch.timeout_s
    pol = http.policy(
        allow_private=settings.outbound.allow_private,
        timeout=_timeout(settings),
        max_redirects=settings.fetch.max_redirects,
    )
    try:
        with http.client(pol) as client, client.stream("GET", url) as resp:
            if not 200 <= resp.status_code < 300:
                raise UrlUnreachable(f"the source answered {resp.status_code}")
            announced = resp.headers.get("content-length")
            total = int(announced) if announced and announced.isdigit() else None
            if total is not None and total > limit:
                raise UrlTooLarge(f"the source announces {total} bytes")
            intake.check_free(storage_root, min_free, total or 0)
            fetched, checked, last = 0, 0, time.monotonic()
            with open(tmp, "xb") as f:
                for chunk in resp.iter_bytes():
                    fetched += len(chunk)
                    if fetched > limit:
                        raise UrlTooLarge(f"the source sent more than {limit} bytes")
                    f.write(chunk)
                    now = time.monotonic()
                    if now > deadline:
                        raise UrlUnreachable(f"the fetch took longer than {settings.fetch.timeout_s:g} s")
                    tick = now - last >= PROGRESS_INTERVAL_S
                    if tick or fetched - checked >= FREE_CHECK_BYTES:
                        checked = fetched
                        intake.check_free(storage_root, min_free)
                    if tick:
                        last = now
                        if on_progress is not None and not on_progress(fetched, total):
                            raise Abandoned()
                f.flush()
                os.fsync(f.fileno())
            intake.check_free(storage_root, min_free)
            return fetched
    except http.Refused as e:
        raise UrlRefused(f"refused: {e}") from None
    except drawbridge.TooManyRedirectsError:
        raise UrlUnreachable("too many redirects") from None
    except (httpx.HTTPError, drawbridge.DrawbridgeError) as e:
        raise UrlUnreachable(f"fetch failed: {e!r}") from None
    except OSError as e:
        if e.errno in NO_SPACE_ERRNOS:
            raise InsufficientStorage("not enough storage space for the source") from None
        raise


def _finish_failed(r: redis.Redis, fetches: FetchStore, storage: Storage, job_id: str) -> None:
    """After a fetch ended its job `failed`: final.json and the `ended` webhook event (logged, never raised)."""
    h = decode_hash(r.hgetall(fetches.keys.job(job_id)))
    if h:
        try:
            storage.write_final(job_id, **final_record(JobRecord.from_hash(h)))
        except OSError as e:
            log.error("final_write_failed", job_id=job_id, error=repr(e))
    try:
        job_event(r, fetches.keys, job_id, "ended", int(time.time() * 1000))
    except redis.RedisError as e:
        log.error("webhook_hook_failed", job_id=job_id, error=repr(e))


def _public(e: ServiceError) -> tuple[str, str]:
    """The failed job's code and message: a job failure's fixed message, a request error's own
    (they name no path and carry no exception text)."""
    return e.code, e.public_message if isinstance(e, JobFailure) else e.message


def _record_source(storage: Storage, job_id: str, size_bytes: int) -> None:
    """Put the fetched size into the job's manifest (the record storage keeps), atomically."""
    path = storage.manifest(job_id)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["size_bytes"] = size_bytes
    atomic_write_json(path, manifest)


def fetch_job(r: redis.Redis, fetches: FetchStore, settings: Settings, job_id: str, lease_ms: int) -> str:
    """One try at fetching the job's source (see the module docstring).

    Returns:
        `fetched`, `failed`, or `skipped:<why>` (nothing to fetch, or the job stopped wanting it).
    Raises:
        redis.RedisError: Redis does not answer (the item comes due again after its lease).
        OSError: storage failed other than by a full disk (likewise; each try counts).
    """
    storage = Storage(settings.storage.root)
    start = fetches.start(job_id, settings.fetch.max_attempts)
    if start.outcome == "done":
        fetches.drop(job_id)
        return "skipped:done"
    if start.outcome == "exhausted":
        log.warning("fetch_exhausted", job_id=job_id, tries=start.attempt)
        if fetches.fail(job_id, None, UrlUnreachable.code, UrlUnreachable.public_message):
            _finish_failed(r, fetches, storage, job_id)
        return "failed"
    try:
        job_event(r, fetches.keys, job_id, "stage.fetch", int(time.time() * 1000))
    except redis.RedisError as e:
        log.error("webhook_hook_failed", job_id=job_id, error=repr(e))
    tmp = storage.job_dir(job_id) / f"{TMP_PREFIX}source-{start.attempt}"
    progress = functools.partial(fetches.progress, job_id, start.attempt, lease_ms=lease_ms)
    t0 = time.monotonic()
    try:
        try:
            size = download(settings, start.url, tmp, storage.root, progress)
            os.replace(tmp, storage.source(job_id))
            info = intake.check_source(storage.source(job_id), settings.limits.max_duration_s)
            _record_source(storage, job_id, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    except Abandoned:
        log.info("fetch_abandoned", job_id=job_id, attempt=start.attempt)
        return "skipped:abandoned"
    except ServiceError as e:
        code, message = _public(e)
        log.info("fetch_failed", job_id=job_id, attempt=start.attempt, code=code, reason=e.message)
        # Fenced first: a stale try (its lease ran out and a newer one stored the source) leaves
        # the source alone.
        if fetches.fail(job_id, start.attempt, code, message):
            with contextlib.suppress(FileNotFoundError):
                storage.source(job_id).unlink()
            _finish_failed(r, fetches, storage, job_id)
            return "failed"
        return "skipped:abandoned"
    owner = fetches.owner(job_id)
    if not fetches.fetched(job_id, start.attempt, owner, size, info.duration_s):
        log.info("fetch_abandoned", job_id=job_id, attempt=start.attempt)
        return "skipped:abandoned"
    log.info("fetched", job_id=job_id, size_bytes=size, seconds=round(time.monotonic() - t0, 3))
    return "fetched"
