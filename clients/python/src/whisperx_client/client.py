"""`Client`: the job API of whisperx-service over blocking HTTP (httpx).

    from whisperx_client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as wx:
        job = wx.submit("meeting.mp3", num_speakers=2)
        wx.wait(job.id, timeout=3600)
        print(wx.result_text(job.id, "srt"))

Every method raises `ApiError` (a subclass by status) for an error answer, with the service's
stable `code`, `message`, `status` and `retry_after`; `TransportError` when the service cannot be
reached; `ProtocolError` for an answer not of the documented shape.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import httpx
from httpx_sse import SSEError, connect_sse

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
from whisperx_client._tus_io import submit_sync
from whisperx_client.errors import ProtocolError, TransportError, WaitTimeout, error_from_response
from whisperx_client.models import Accepted, Event, Job, Transcript
from whisperx_client.tus import UploadState

#: Timeouts (seconds) of an upload: the gateway probes the file (ffprobe) after the body ends
#: before it answers, so the read wait is long.
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=300.0, write=120.0)


@contextlib.contextmanager
def _opened(file: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A path opened for reading in binary mode (closed afterwards), or the file object as is."""
    if isinstance(file, str | os.PathLike):
        with Path(file).open("rb") as f:
            yield f
    else:
        yield file


class Client:
    """A blocking client of one whisperx-service gateway.

    Args:
        base_url: the gateway's URL, e.g. `http://127.0.0.1:8000` (a path prefix is kept).
        api_key: the API key, sent as `Authorization: Bearer <key>`; None for a gateway with
            auth off.
        timeout: seconds for each ordinary request (uploads use `UPLOAD_TIMEOUT`, event streams
            `_core.STREAM_READ_TIMEOUT_S` between bytes).
        transport: an httpx transport to use instead of the network (e.g. a proxy mount).
        verify: TLS verification, as httpx takes it (True, False, or a CA bundle path).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url
        self._connect_s = min(timeout, 30.0)
        self._http = httpx.Client(
            base_url=base_url,
            headers={**auth_headers(api_key), "User-Agent": f"whisperx-client/{__version__}"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises its `ApiError`, a network failure `TransportError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise TransportError(f"{method} {path}: {e or type(e).__name__}", type(e).__name__) from e
        return check(response)

    def submit(
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
        """Upload audio or video as a job (`POST /v1/jobs`); streams the file from disk.

        Args:
            file: a path, a file object opened in binary mode (read from its start), or an
                http(s) URL as a `str`: the service fetches that file itself (nothing is uploaded;
                `filename` and `on_progress` are not used; a failed fetch ends the job `failed`
                with `url_unreachable`, `url_refused`, `url_too_large`, `unsupported_media`, ...).
            filename: the name sent with the file (default: the path's or file object's name).
            language: ISO 639-1 code, or None / `auto` to detect it.
            align, diarize: word timestamps and speaker labels (the service's default: both on).
            num_speakers, min_speakers, max_speakers: speaker count hints (1-64).
            initial_prompt, hotwords: text to condition or bias the decoder (<= 2,000 characters).
            idempotency_key: sent as `Idempotency-Key`, so a retried submission makes one job
                where the gateway supports it.
            on_progress: called as `(bytes_sent, total_bytes)` as the body goes out (total None
                when the file's size cannot be known without reading it); first with the bytes
                already on the gateway (0, or a resumed upload's offset).
            resume: continue this file's earlier resumable upload when the state file has one
                (same gateway, path, size and modification time).
            tus_threshold: a path larger than this (bytes) goes as a resumable upload (tus,
                `/v1/uploads`), retried from where it broke off; None = always one multipart POST.
            state: where resumable upload URLs are kept (default `tus.default_state_path()`).
        Returns:
            The accepted job (202): its id and URLs.
        Raises:
            BadRequest: `unsupported_media` (415, not audio/video), `payload_too_large` /
                `audio_too_long` (413), `invalid_request` / `empty_upload` (422), ...
            RateLimited: `quota_exceeded` or `rate_limited` (429), with `retry_after`.
            ServerError: `service_unavailable` (503), `insufficient_storage` (507), ...
            TransportError: the service could not be reached or the upload broke off.
            OSError: the file cannot be read.
        """
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
            fetched = self._request("POST", "/v1/jobs", json={"url": url, **fields}, headers=headers)
            return Accepted.from_json(json_body(fetched))
        name = upload_name(file, filename)
        if isinstance(file, str | os.PathLike) and tus_threshold is not None:
            path = Path(file)
            if path.stat().st_size > tus_threshold:
                return submit_sync(
                    self, path, name, fields, resume, state or UploadState(), on_progress, UPLOAD_TIMEOUT
                )
        with _opened(file) as f:
            reader = CountingReader(f, file_size(f), on_progress)
            if on_progress is not None:
                on_progress(0, reader.total)
            response = self._request(
                "POST",
                "/v1/jobs",
                data=fields,
                files={"file": (name, cast(IO[bytes], reader), content_type(name))},
                headers=headers,
                timeout=UPLOAD_TIMEOUT,
            )
        return Accepted.from_json(json_body(response))

    def status(self, job_id: str) -> Job:
        """The job's status (`GET /v1/jobs/{id}`). Raises NotFound (`job_not_found`)."""
        return Job.from_json(json_body(self._request("GET", f"/v1/jobs/{job_id}")))

    def events(self, job_id: str, *, last_event_id: str | None = None, max_reconnects: int = 10) -> Iterator[Event]:
        """The job's events (`GET /v1/jobs/{id}/events`), ending after the one terminal event.

        A fresh stream starts with a `snapshot` event (the job record, id `0-0`); with
        `last_event_id` it continues strictly after that event instead. A dropped connection, a
        stream the gateway closed early, a read that waits `STREAM_READ_TIMEOUT_S` without a byte
        (pings included), or a 429/502/503/504 answer is retried with `Last-Event-ID` set to the
        last id received, so no event is lost or repeated; back-off doubles from 0.5 s to 10 s
        (or `Retry-After`), and `max_reconnects` attempts in a row without an event give up. A
        `204` (resumed after the terminal event) ends the iteration at once.

        Raises:
            NotFound: no such job (or another key owns it).
            BadRequest: `invalid_event_id` (a malformed `last_event_id`).
            TransportError, RateLimited, ServerError: still failing after `max_reconnects` tries.
            ProtocolError: the answer is not an event stream.
        """
        return self._events(job_id, last_event_id, max_reconnects, None, 0.0)

    def _events(
        self, job_id: str, last_event_id: str | None, max_reconnects: int, deadline: float | None, timeout: float
    ) -> Iterator[Event]:
        """`events`, giving up with WaitTimeout at `deadline` (a `time.monotonic()` value) when set."""
        last = last_event_id
        policy = Reconnect(max_reconnects)
        path = f"/v1/jobs/{job_id}/events"
        while True:
            retry_after: float | None = None
            failure: Exception
            try:
                with connect_sse(
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
                        response.read()
                        error = error_from_response(response)
                        if response.status_code not in RETRY_STATUSES:
                            raise error
                        failure, retry_after = error, error.retry_after
                    else:
                        if deadline is not None:
                            response.stream = DeadlineStream(response.stream, deadline, job_id, timeout)
                        for sse in source.iter_sse():
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
            time.sleep(delay)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[Event], None] | None = None,
        max_reconnects: int = 10,
    ) -> Job:
        """Follow the job's events until it ends; return its final status (whatever it is).

        Args:
            timeout: seconds to wait at most (None: as long as it takes). A job that sends no
                event is given up on within one ping interval of the gateway (SSE_PING_S).
            on_event: called with every event as it arrives (for progress display).
        Raises:
            WaitTimeout: the job had not ended within `timeout` (it goes on).
            NotFound, TransportError, ...: as `events`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._events(job_id, None, max_reconnects, deadline, timeout or 0.0):
            if on_event is not None:
                on_event(event)
        return self.status(job_id)

    def result(self, job_id: str) -> Transcript:
        """The transcript of a succeeded job, typed.

        Raises:
            Conflict: `job_not_finished` (the job has not succeeded; the message names its status).
            NotFound: no such job. ServerError: `result_missing`.
        """
        response = self._request("GET", f"/v1/jobs/{job_id}/result", params={"format": "json"})
        return Transcript.from_json(json_body(response))

    def result_text(self, job_id: str, format: str = "srt") -> str:
        """The transcript rendered by the service: `srt`, `vtt`, `txt`, `tsv` (or `json`), as text.

        Raises:
            ValueError: an unknown format (nothing is sent).
            Conflict, NotFound, ServerError: as `result`.
        """
        fmt = check_format(format)
        response = self._request("GET", f"/v1/jobs/{job_id}/result", params={"format": fmt})
        return response.content.decode("utf-8")

    def cancel(self, job_id: str) -> Job:
        """Cancel the job (`DELETE /v1/jobs/{id}`): a queued one ends `cancelled` at once, a running
        one gets `cancel_requested` and ends `cancelled` at its next progress point.

        Raises:
            Conflict: `job_finished` (it already ended). NotFound: no such job.
        """
        return Job.from_json(json_body(self._request("DELETE", f"/v1/jobs/{job_id}")))

    def purge(self, job_id: str) -> None:
        """Delete an ended (or queued) job's files and state now (`DELETE ...?purge=true`).

        Raises:
            Conflict: `job_running` (cancel it first and purge once it ended). NotFound: no such job.
        """
        self._request("DELETE", f"/v1/jobs/{job_id}", params={"purge": "true"})

    def list(
        self,
        *,
        status: str | None = None,
        owner: str | None = None,
        page_size: int = 50,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """The key's jobs, newest first, fetching page after page (the API's `next_cursor`).

        Args:
            status: only jobs in this status.
            owner: (admin keys) only the jobs of the key with this name or id.
            page_size: jobs per request (1-500).
            limit: stop after this many jobs (None: all of them).
        Raises:
            PermissionDenied: `owner` without an admin key. BadRequest: a bad status or page size.
        """
        cursor: str | None = None
        count = 0
        while True:
            params = list_params(status, page_size, cursor, owner)
            body = json_body(self._request("GET", "/v1/jobs", params=params))
            jobs: builtins.list[Any] = body.get("jobs", []) if isinstance(body, dict) else []
            for item in jobs:
                if limit is not None and count >= limit:
                    return
                yield Job.from_json(item)
                count += 1
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            if not cursor or (limit is not None and count >= limit):
                return
