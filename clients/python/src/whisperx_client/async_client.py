"""`AsyncClient`: the job API of whisperx-service over asyncio HTTP (httpx), method for method as
`Client` (see its docstrings for arguments, reconnects and errors).

    from whisperx_client import AsyncClient

    async with AsyncClient("http://127.0.0.1:8000", api_key="...") as wx:
        job = await wx.submit("meeting.mp3", num_speakers=2)
        await wx.wait(job.id, timeout=3600)
        print(await wx.result_text(job.id, "srt"))
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, cast

import httpx
from httpx_sse import SSEError, aconnect_sse

from whisperx_client import __version__, tus
from whisperx_client._core import (
    RETRY_STATUSES,
    CountingReader,
    DeadlineStream,
    ProgressCallback,
    Reconnect,
    auth_headers,
    check,
    check_format,
    content_type,
    file_size,
    job_fields,
    json_body,
    list_params,
    resume_headers,
    source_url,
    stream_timeout,
    to_event,
    upload_name,
)
from whisperx_client._tus_io import submit_async
from whisperx_client.client import UPLOAD_TIMEOUT, _opened
from whisperx_client.errors import ProtocolError, TransportError, WaitTimeout, error_from_response
from whisperx_client.models import Accepted, Event, Job, Transcript
from whisperx_client.tus import UploadState


class AsyncClient:
    """An asyncio client of one whisperx-service gateway; arguments as `Client`.

    The upload reads the file in 64 KiB blocks on the event loop's thread (httpx's multipart
    encoder); each read is one page-cache copy, short next to sending it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url
        self._connect_s = min(timeout, 30.0)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={**auth_headers(api_key), "User-Agent": f"whisperx-client/{__version__}"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises its `ApiError`, a network failure `TransportError`."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise TransportError(f"{method} {path}: {e or type(e).__name__}", type(e).__name__) from e
        return check(response)

    async def submit(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        filename: str | None = None,
        language: str | None = None,
        align: bool | None = None,
        diarize: bool | None = None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        initial_prompt: str | None = None,
        hotwords: str | None = None,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
        resume: bool = False,
        tus_threshold: int | None = tus.TUS_THRESHOLD_BYTES,
        state: UploadState | None = None,
    ) -> Accepted:
        """Upload audio or video as a job; see `Client.submit`."""
        fields = job_fields(
            language=language,
            align=align,
            diarize=diarize,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            initial_prompt=initial_prompt,
            hotwords=hotwords,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        url = source_url(file)
        if url is not None:  # the service fetches the file itself
            fetched = await self._request("POST", "/v1/jobs", json={"url": url, **fields}, headers=headers)
            return Accepted.from_json(json_body(fetched))
        name = upload_name(file, filename)
        if isinstance(file, str | os.PathLike) and tus_threshold is not None:
            path = Path(file)
            if path.stat().st_size > tus_threshold:
                return await submit_async(
                    self, path, name, fields, resume, state or UploadState(), on_progress, UPLOAD_TIMEOUT
                )
        with _opened(file) as f:
            reader = CountingReader(f, file_size(f), on_progress)
            if on_progress is not None:
                on_progress(0, reader.total)
            response = await self._request(
                "POST",
                "/v1/jobs",
                data=fields,
                files={"file": (name, cast(IO[bytes], reader), content_type(name))},
                headers=headers,
                timeout=UPLOAD_TIMEOUT,
            )
        return Accepted.from_json(json_body(response))

    async def status(self, job_id: str) -> Job:
        """The job's status; see `Client.status`."""
        return Job.from_json(json_body(await self._request("GET", f"/v1/jobs/{job_id}")))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, max_reconnects: int = 10
    ) -> AsyncIterator[Event]:
        """The job's events, ending after the terminal one, resumed across drops; see `Client.events`."""
        return self._events(job_id, last_event_id, max_reconnects, None, 0.0)

    async def _events(
        self, job_id: str, last_event_id: str | None, max_reconnects: int, deadline: float | None, timeout: float
    ) -> AsyncIterator[Event]:
        """`events`, giving up with WaitTimeout at `deadline` (a `time.monotonic()` value) when set."""
        last = last_event_id
        policy = Reconnect(max_reconnects)
        path = f"/v1/jobs/{job_id}/events"
        while True:
            retry_after: float | None = None
            failure: Exception
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    path,
                    headers=dict(resume_headers(last)),
                    timeout=stream_timeout(deadline, self._connect_s),
                ) as source:
                    response = source.response
                    if response.status_code == 204:
                        return
                    if response.status_code >= 400:
                        await response.aread()
                        error = error_from_response(response)
                        if response.status_code not in RETRY_STATUSES:
                            raise error
                        failure, retry_after = error, error.retry_after
                    else:
                        if deadline is not None:
                            response.stream = DeadlineStream(response.stream, deadline, job_id, timeout)
                        async for sse in source.aiter_sse():
                            event = to_event(sse)
                            if event is None:
                                continue
                            if event.id:
                                last = event.id
                            policy.progressed()
                            yield event
                            if event.terminal:
                                return
                        failure = TransportError(f"the event stream of job {job_id} ended before the job did")
            except SSEError as e:
                raise ProtocolError(f"job {job_id}: the events answer is not an event stream") from e
            except httpx.TransportError as e:
                failure = TransportError(f"event stream of job {job_id}: {e or type(e).__name__}", type(e).__name__)
            delay = policy.failed(retry_after)
            if delay is None:
                raise failure
            if deadline is not None and time.monotonic() + delay > deadline:
                raise WaitTimeout(job_id, timeout)
            await asyncio.sleep(delay)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[Event], None] | None = None,
        max_reconnects: int = 10,
    ) -> Job:
        """Follow the job's events until it ends; return its final status; see `Client.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async for event in self._events(job_id, None, max_reconnects, deadline, timeout or 0.0):
            if on_event is not None:
                on_event(event)
        return await self.status(job_id)

    async def result(self, job_id: str) -> Transcript:
        """The transcript of a succeeded job, typed; see `Client.result`."""
        response = await self._request("GET", f"/v1/jobs/{job_id}/result", params={"format": "json"})
        return Transcript.from_json(json_body(response))

    async def result_text(self, job_id: str, format: str = "srt") -> str:
        """The transcript rendered as srt, vtt, txt, tsv or json text; see `Client.result_text`."""
        fmt = check_format(format)
        response = await self._request("GET", f"/v1/jobs/{job_id}/result", params={"format": fmt})
        return response.content.decode("utf-8")

    async def cancel(self, job_id: str) -> Job:
        """Cancel the job; see `Client.cancel`."""
        return Job.from_json(json_body(await self._request("DELETE", f"/v1/jobs/{job_id}")))

    async def purge(self, job_id: str) -> None:
        """Delete an ended (or queued) job's files and state now; see `Client.purge`."""
        await self._request("DELETE", f"/v1/jobs/{job_id}", params={"purge": "true"})

    async def list(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        page_size: int = 50,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        """The key's jobs, newest first, page after page; see `Client.list`."""
        cursor: str | None = None
        count = 0
        while True:
            params = list_params(status, page_size, cursor, owner)
            body = json_body(await self._request("GET", "/v1/jobs", params=params))
            jobs: builtins.list[Any] = body.get("jobs", []) if isinstance(body, dict) else []
            for item in jobs:
                if limit is not None and count >= limit:
                    return
                yield Job.from_json(item)
                count += 1
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            if not cursor or (limit is not None and count >= limit):
                return
