"""The I/O of a resumable upload (see `tus.py`): one blocking and one asyncio version, used by
`Client.submit` and `AsyncClient.submit` for files over their `tus_threshold`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from whisperx_client import tus
from whisperx_client._core import ProgressCallback, Reconnect, check
from whisperx_client.errors import ProtocolError, TransportError, error_from_response
from whisperx_client.models import Accepted
from whisperx_client.tus import UploadState, state_key

if TYPE_CHECKING:
    from whisperx_client.async_client import AsyncClient
    from whisperx_client.client import Client


def submit_sync(
    client: Client,
    path: Path,
    name: str,
    fields: dict[str, str],
    resume: bool,
    state: UploadState,
    on_progress: ProgressCallback | None,
    timeout: httpx.Timeout,
) -> Accepted:
    """Send `path` as a resumable upload whose last byte makes the job (see `tus.py`)."""
    st = path.stat()
    size = st.st_size
    key = state_key(client.base_url, path, size, st.st_mtime_ns)
    url = state.get(key) if resume else None
    offset: int | None = None
    if url is not None:
        offset, job_id, status_url = head_sync(client, url, size)
        if job_id is not None:
            state.put(key, None)
            return tus.accepted(job_id, status_url)
    if url is None or offset is None:
        r = client._request("POST", "/v1/uploads", headers=tus.creation_headers(size, name, fields))
        url, offset = r.headers["Location"], 0
        state.put(key, url)
    if on_progress is not None:
        on_progress(offset, size)
    policy = Reconnect(tus.MAX_TRIES)
    with path.open("rb") as f:
        while True:
            end = min(size, offset + tus.PART_BYTES)
            retry_after: float | None = None
            failure: Exception
            try:
                r = client._http.patch(
                    url,
                    content=tus.read_range(f, offset, end, size, on_progress),
                    headers=tus.patch_headers(offset, end - offset),
                    timeout=timeout,
                )
            except httpx.TransportError as e:
                failure = TransportError(f"PATCH {url}: {e or type(e).__name__}", type(e).__name__)
            else:
                if r.status_code == 204:
                    offset = int(r.headers["Upload-Offset"])
                    policy.progressed()
                    if offset >= size:
                        state.put(key, None)
                        if "Job-Id" not in r.headers:
                            raise ProtocolError(f"upload {url} finished without a Job-Id")
                        return tus.accepted(r.headers["Job-Id"], r.headers.get("Job-Status-Url"))
                    continue
                error = error_from_response(r)
                if r.status_code not in tus.RETRY_STATUSES:
                    raise error
                failure, retry_after = error, error.retry_after
            delay = policy.failed(retry_after)
            if delay is None:
                raise failure
            time.sleep(delay)
            try:
                now, job_id, status_url = head_sync(client, url, size)
            except TransportError:
                continue  # still unreachable: the next PATCH fails and counts
            if job_id is not None:
                state.put(key, None)
                return tus.accepted(job_id, status_url)
            if now is None:
                raise failure
            offset = now


def head_sync(client: Client, url: str, size: int) -> tuple[int | None, str | None, str | None]:
    """(offset, job id, job status URL) of a stored upload; offset None when it is gone,
    expired or of another size (a new upload is needed)."""
    try:
        r = client._http.head(url, headers=tus.HEAD_HEADERS)
    except httpx.TransportError as e:
        raise TransportError(f"HEAD {url}: {e or type(e).__name__}", type(e).__name__) from e
    if r.status_code in (404, 410) or (r.status_code == 200 and r.headers.get("Upload-Length") != str(size)):
        return None, None, None
    check(r)
    return int(r.headers["Upload-Offset"]), r.headers.get("Job-Id"), None


async def submit_async(
    client: AsyncClient,
    path: Path,
    name: str,
    fields: dict[str, str],
    resume: bool,
    state: UploadState,
    on_progress: ProgressCallback | None,
    timeout: httpx.Timeout,
) -> Accepted:
    """Send `path` as a resumable upload whose last byte makes the job (see `tus.py`)."""
    st = path.stat()
    size = st.st_size
    key = state_key(client.base_url, path, size, st.st_mtime_ns)
    url = state.get(key) if resume else None
    offset: int | None = None
    if url is not None:
        offset, job_id, status_url = await head_async(client, url, size)
        if job_id is not None:
            state.put(key, None)
            return tus.accepted(job_id, status_url)
    if url is None or offset is None:
        r = await client._request("POST", "/v1/uploads", headers=tus.creation_headers(size, name, fields))
        url, offset = r.headers["Location"], 0
        state.put(key, url)
    if on_progress is not None:
        on_progress(offset, size)
    policy = Reconnect(tus.MAX_TRIES)
    with path.open("rb") as f:
        while True:
            end = min(size, offset + tus.PART_BYTES)
            retry_after: float | None = None
            failure: Exception
            try:
                r = await client._http.patch(
                    url,
                    content=tus.aread_range(f, offset, end, size, on_progress),
                    headers=tus.patch_headers(offset, end - offset),
                    timeout=timeout,
                )
            except httpx.TransportError as e:
                failure = TransportError(f"PATCH {url}: {e or type(e).__name__}", type(e).__name__)
            else:
                if r.status_code == 204:
                    offset = int(r.headers["Upload-Offset"])
                    policy.progressed()
                    if offset >= size:
                        state.put(key, None)
                        if "Job-Id" not in r.headers:
                            raise ProtocolError(f"upload {url} finished without a Job-Id")
                        return tus.accepted(r.headers["Job-Id"], r.headers.get("Job-Status-Url"))
                    continue
                error = error_from_response(r)
                if r.status_code not in tus.RETRY_STATUSES:
                    raise error
                failure, retry_after = error, error.retry_after
            delay = policy.failed(retry_after)
            if delay is None:
                raise failure
            await asyncio.sleep(delay)
            try:
                now, job_id, status_url = await head_async(client, url, size)
            except TransportError:
                continue  # still unreachable: the next PATCH fails and counts
            if job_id is not None:
                state.put(key, None)
                return tus.accepted(job_id, status_url)
            if now is None:
                raise failure
            offset = now


async def head_async(client: AsyncClient, url: str, size: int) -> tuple[int | None, str | None, str | None]:
    """(offset, job id, job status URL) of a stored upload; offset None when it is gone,
    expired or of another size (a new upload is needed)."""
    try:
        r = await client._http.head(url, headers=tus.HEAD_HEADERS)
    except httpx.TransportError as e:
        raise TransportError(f"HEAD {url}: {e or type(e).__name__}", type(e).__name__) from e
    if r.status_code in (404, 410) or (r.status_code == 200 and r.headers.get("Upload-Length") != str(size)):
        return None, None, None
    check(r)
    return int(r.headers["Upload-Offset"]), r.headers.get("Job-Id"), None
