"""`GET /v1/jobs/{id}/audio`: the job's original upload, as stored, with HTTP Range support.

Owner-only like the result (another key gets 404). The body is Starlette's `FileResponse`, which
answers a `Range: bytes=a-b` request with `206 Partial Content` and `Content-Range`, a range that
starts past the end with `416` and `Content-Range: bytes */<size>`, and honours `If-Range`
(tests/integration/api/test_audio.py pins that behaviour of the pinned Starlette). A browser's
`<audio>` element seeks through such range requests, so hours of audio play without being
downloaded first.

The media type is libmagic's verdict at upload (the manifest's `media_type`) when it is audio or
video, else `application/octet-stream`; `nosniff` and a `sandbox` CSP keep a browser from ever
treating the bytes as a page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio.to_thread
import structlog
from fastapi import APIRouter
from starlette.responses import FileResponse

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep, StorageDep
from whisperx_service.errors import AudioMissing

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

#: Media type when the manifest names none that is audio or video.
FALLBACK_MEDIA_TYPE = "application/octet-stream"
#: Headers of every audio answer: never sniffed into another type, never run as a document, and
#: kept out of shared caches (the audio is one key's).
AUDIO_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-cache",
}


def stored_audio(source: Path, manifest: Path) -> tuple[os.stat_result, str]:
    """The stat of the job's `source` and the media type to serve it with.

    Blocking (file reads; run it in a thread from async code).

    Returns:
        (stat of `source`, its media type: the manifest's `media_type` when `audio/*` or
        `video/*`, else FALLBACK_MEDIA_TYPE; an unreadable manifest counts as none).
    Raises:
        AudioMissing: `source` is gone or is not a regular file.
    """
    try:
        st = source.stat()
    except FileNotFoundError:
        raise AudioMissing("the job's uploaded audio is gone from storage") from None
    if not source.is_file():
        raise AudioMissing("the job's uploaded audio is gone from storage")
    media_type = FALLBACK_MEDIA_TYPE
    try:
        found = json.loads(manifest.read_bytes()).get("media_type")
    except (OSError, ValueError, AttributeError):
        found = None
    if isinstance(found, str) and found.split("/", 1)[0] in ("audio", "video") and found.isprintable():
        media_type = found
    return st, media_type


@router.get(
    "/{job_id}/audio",
    summary="The job's original upload (HTTP Range supported)",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/*": {}, "video/*": {}}, "description": "The whole upload, as stored"},
        206: {"description": "The requested byte range (`Range: bytes=a-b`), with `Content-Range`"},
        404: {"description": "job_not_found"},
        416: {"description": "the range starts past the end (`Content-Range: bytes */<size>`)"},
        500: {"description": "audio_missing"},
    },
)
async def job_audio(job_id: JobIdDep, principal: PrincipalDep, jobs: JobsDep, storage: StorageDep) -> FileResponse:
    """The job's uploaded file, in any status, with byte ranges (see the module docstring).

    Raises:
        JobNotFound: no such job, or another key owns it.
        AudioMissing: the job exists but its `source` file is gone.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    await visible_job(jobs, job_id, principal)
    st, media_type = await anyio.to_thread.run_sync(stored_audio, storage.source(job_id), storage.manifest(job_id))
    return FileResponse(storage.source(job_id), media_type=media_type, headers=AUDIO_HEADERS, stat_result=st)
