"""A job whose source is fetched from a URL: `POST /v1/jobs` with `url` instead of a file.

The body is JSON (`{"url": ..., "language": "en", ...}`) or a urlencoded form (`url=...&language=en`,
`api/field_body.py`) with `url` (http or https, MAX_URL_CHARS at most, no user info) and the job options. The gateway
checks only the URL's form, the key's quotas and free space, writes the manifest (`job.json`, the
URL's last path segment as file name; the URL itself is kept only in Redis until the fetch ends)
and creates the job `queued` on the outbound schedule (`fetch:<id>`, `store/fetches.py`); it answers
202 at once. The outbound worker fetches the file (`outbound/fetch.py`: every address checked,
the upload's limits); then the job is held for the dispatcher like an upload's. Where the URL
leads is checked when the worker connects, never here (no DNS lookup in the gateway).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import structlog
from starlette.requests import Request

from whisperx_service.access.quotas import check_quotas, quota_lock
from whisperx_service.api.auth import Principal
from whisperx_service.api.multipart_form import OPTION_FIELDS, clean_filename, parse_options
from whisperx_service.api.upload import NO_SPACE_ERRNOS
from whisperx_service.api.webhook_options import with_webhook
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import MAX_URL_CHARS, JobOptions, JobRecord, check_http_url, new_job_id
from whisperx_service.errors import InsufficientStorage, InvalidRequest
from whisperx_service.logs import get_logger
from whisperx_service.storage import intake
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.async_jobs import AsyncJobStore

log = get_logger(__name__)
audit = get_logger("whisperx_service.audit")

#: The field naming the source's URL.
URL_FIELD = "url"


def url_job_request(fields: dict[str, str]) -> tuple[str, JobOptions]:
    """The source URL and the job options of a field body (`api/field_body.read_fields`).

    Raises:
        InvalidRequest: no `url`, a URL that is not http(s) (or too long, or with user info), an
            unknown field, a bad option value.
    """
    rest = dict(fields)
    raw = rest.pop(URL_FIELD, "").strip()
    if not raw:
        raise InvalidRequest("`url` or `upload_id` is required (or send a file as multipart/form-data)")
    if len(raw) > MAX_URL_CHARS:
        raise InvalidRequest(f"url: longer than {MAX_URL_CHARS} characters")
    try:
        url = check_http_url(raw)
    except ValueError as e:
        raise InvalidRequest(f"url: {e}") from None
    unknown = sorted(set(rest) - OPTION_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(u[:64] for u in unknown[:5])}")
    return url, parse_options(rest)


def fingerprint(fields: dict[str, str]) -> str:
    """SHA-256 hex of the fields (sorted): what an Idempotency-Key's repeat must match."""
    return hashlib.sha256(json.dumps(sorted(fields.items()), ensure_ascii=False).encode()).hexdigest()


def url_filename(url: str) -> str | None:
    """The URL's last path segment, percent-decoded and cleaned as an upload's file name (None: none)."""
    return clean_filename(unquote(urlsplit(url).path))


async def create_url_job(
    request: Request,
    principal: Principal,
    settings: Settings,
    jobs: AsyncJobStore,
    storage: Storage,
    url: str,
    options: JobOptions,
) -> JobRecord:
    """Record a job whose source the outbound worker fetches from `url` (see the module docstring).

    Raises:
        QuotaExceeded: one of the key's quotas is used up.
        InsufficientStorage: storage keeps less than STORAGE_MIN_FREE_BYTES free, or the manifest does not fit.
        InvalidRequest: a webhook without a signing secret (`with_webhook`).
        ServiceUnavailable (redis errors): Redis does not answer (nothing is kept).
    """
    job_id = new_job_id()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    options = with_webhook(options, principal, settings)
    filename = url_filename(url)
    created = False
    try:
        await check_quotas(jobs, principal.key)
        await anyio.to_thread.run_sync(intake.check_free, storage.root, settings.storage.min_free_bytes)
        async with quota_lock(jobs, principal.key):
            await check_quotas(jobs, principal.key)
            owner = principal.owner
            manifest = {
                "id": job_id,
                "owner": owner.model_dump() if owner else None,
                "options": options.model_dump(mode="json"),
                "filename": filename,
                "size_bytes": 0,
                "media_type": "",
                "created_at": datetime.now(UTC).isoformat(),
                "source": "url",  # fetched by the outbound worker; the URL stays out of storage
            }
            try:
                await anyio.to_thread.run_sync(lambda: storage.job_dir(job_id).mkdir(parents=True))
                await anyio.to_thread.run_sync(atomic_write_json, storage.manifest(job_id), manifest)
            except OSError as e:
                if e.errno in NO_SPACE_ERRNOS:
                    raise InsufficientStorage("not enough storage space for the job") from None
                raise
            created = True
            record = await jobs.create(job_id, options, filename=filename, size_bytes=0, owner=owner, fetch_url=url)
    except BaseException:
        with anyio.CancelScope(shield=True):
            if created:
                try:
                    await jobs.delete(job_id)
                except Exception as e:
                    log.error("job_delete_failed", error=repr(e))
            await anyio.to_thread.run_sync(storage.remove_job, job_id)
        raise
    audit.info("job_created", source="url", host=urlsplit(url).hostname)
    return record
