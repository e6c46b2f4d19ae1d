"""What `Client` and `AsyncClient` share: request building, answer parsing, the counted upload,
the event decoding and the reconnect policy. No I/O of its own."""

from __future__ import annotations

import json
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from httpx_sse import ServerSentEvent

from whisperx_client.errors import ProtocolError, WaitTimeout, error_from_response
from whisperx_client.models import FORMATS, Event

#: A progress callback of an upload: (bytes read for sending so far, total bytes or None).
ProgressCallback = Callable[[int, int | None], None]

#: Seconds to wait for bytes on an event stream before taking the connection as dead. The
#: gateway pings every SSE_PING_S (15 s by default), so 60 s is four pings missed.
STREAM_READ_TIMEOUT_S = 60.0
#: Reconnect back-off of event streams: first delay, factor, largest delay (seconds).
BACKOFF_FIRST_S, BACKOFF_FACTOR, BACKOFF_MAX_S = 0.5, 2.0, 10.0
#: Statuses on which an event stream is retried (after `Retry-After` when given).
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The `Authorization: Bearer` header of a key (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def job_fields(
    *,
    language: str | None,
    align: bool | None,
    diarize: bool | None,
    num_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
    initial_prompt: str | None,
    hotwords: str | None,
) -> dict[str, str]:
    """The multipart form fields of the job options that are set (booleans as `true`/`false`)."""
    raw: dict[str, object] = {
        "language": language,
        "align": align,
        "diarize": diarize,
        "num_speakers": num_speakers,
        "min_speakers": min_speakers,
        "max_speakers": max_speakers,
        "initial_prompt": initial_prompt,
        "hotwords": hotwords,
    }
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


class CountingReader:
    """A binary file wrapper that reports how many bytes were read from it for sending.

    httpx's multipart encoder reads the file in 64 KiB chunks as the request body goes out, so
    the count follows the upload. `fileno`, `seek` and `tell` pass through, which lets httpx size
    the body (`Content-Length`) without reading it; a `seek(0)` (httpx rewinds before sending)
    restarts the count.
    """

    def __init__(self, raw: IO[bytes], total: int | None, callback: ProgressCallback | None) -> None:
        self._raw = raw
        self.total = total
        self.sent = 0
        self._callback = callback

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes and report the running count."""
        chunk = self._raw.read(size)
        self.sent += len(chunk)
        if self._callback is not None and chunk:
            self._callback(self.sent, self.total)
        return chunk

    def fileno(self) -> int:
        """The wrapped file's descriptor (raises OSError when it has none, as files do)."""
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Seek the wrapped file; back to the start resets the count."""
        pos = self._raw.seek(offset, whence)
        if pos == 0:
            self.sent = 0
        return pos

    def tell(self) -> int:
        """The wrapped file's position."""
        return self._raw.tell()


def file_size(f: IO[bytes]) -> int | None:
    """Bytes of a file object from its position to its end, without reading (None when unknown)."""
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        try:
            pos = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(pos)
            return end
        except (AttributeError, OSError, ValueError):
            return None


def source_url(file: object) -> str | None:
    """`file` when it is an http:// or https:// URL (a job the service fetches itself), else None."""
    if isinstance(file, str) and file.strip().lower().startswith(("http://", "https://")):
        return file.strip()
    return None


def upload_name(file: Any, filename: str | None) -> str:
    """The file name sent with the upload: `filename`, else the path's or file object's name."""
    if filename:
        return filename
    name = file if isinstance(file, str | os.PathLike) else getattr(file, "name", None)
    return Path(str(name)).name if isinstance(name, str | os.PathLike) and str(name) else "upload"


def content_type(name: str) -> str:
    """A media type guessed from the file name (the gateway checks the bytes itself)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def check(response: httpx.Response) -> httpx.Response:
    """The response when its status is below 400; else its typed `ApiError` (body read first)."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def json_body(response: httpx.Response) -> Any:
    """The response's JSON body. Raises ProtocolError when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"expected JSON from {response.request.url.path}, got {response.text[:80]!r}") from None


def check_format(fmt: str) -> str:
    """`fmt` lower-cased when it is one of `FORMATS`. Raises ValueError otherwise."""
    f = fmt.strip().lower()
    if f not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return f


def to_event(sse: ServerSentEvent) -> Event | None:
    """A job event from a decoded SSE message (None for a message without data)."""
    if not sse.data:
        return None
    try:
        data = json.loads(sse.data)
    except ValueError:
        raise ProtocolError(f"event {sse.id!r}: data is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"event {sse.id!r}: data is not a JSON object")
    return Event(id=sse.id or None, type=sse.event or str(data.get("type", "message")), data=data)


def stream_timeout(deadline: float | None, connect_s: float) -> httpx.Timeout:
    """Timeouts of one event stream connection: reads wait at most STREAM_READ_TIMEOUT_S, and
    never much past `deadline` (a `time.monotonic()` value)."""
    read = STREAM_READ_TIMEOUT_S
    if deadline is not None:
        read = max(0.05, min(read, deadline - time.monotonic() + 0.05))
    return httpx.Timeout(connect_s, read=read)


@dataclass
class Reconnect:
    """The reconnect policy of an event stream: exponential back-off (`BACKOFF_*`), at most
    `max_tries` attempts in a row that bring no event; an event resets the count."""

    max_tries: int
    tries: int = 0

    def failed(self, retry_after: float | None = None) -> float | None:
        """Count a failed attempt; the seconds to wait before the next one, or None to give up."""
        self.tries += 1
        if self.tries > self.max_tries:
            return None
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * BACKOFF_FACTOR ** (self.tries - 1))
        return max(delay, retry_after or 0.0)

    def progressed(self) -> None:
        """An event arrived: the next failure starts the back-off afresh."""
        self.tries = 0


class DeadlineStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body stream that raises `WaitTimeout` once `deadline` (monotonic s) has passed.

    It wraps `response.stream` of an event stream: every chunk, the gateway's keep-alive pings
    included, passes here, so a job that sends no event is still given up on within one ping
    interval (SSE_PING_S) of the deadline, or the read timeout (`stream_timeout`) when pings stop.
    """

    def __init__(
        self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, deadline: float, job_id: str, timeout: float
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._job_id = job_id
        self._timeout = timeout

    def _check(self) -> None:
        if time.monotonic() > self._deadline:
            raise WaitTimeout(self._job_id, self._timeout)

    def __iter__(self) -> Iterator[bytes]:
        """The inner stream's chunks, checking the deadline before each."""
        assert isinstance(self._inner, httpx.SyncByteStream)
        for chunk in self._inner:
            self._check()
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The inner stream's chunks, checking the deadline before each."""
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            self._check()
            yield chunk

    def close(self) -> None:
        """Close the inner stream."""
        if isinstance(self._inner, httpx.SyncByteStream):
            self._inner.close()

    async def aclose(self) -> None:
        """Close the inner stream."""
        if isinstance(self._inner, httpx.AsyncByteStream):
            await self._inner.aclose()


def list_params(status: str | None, page_size: int, cursor: str | None, owner: str | None) -> dict[str, str]:
    """Query parameters of one `GET /v1/jobs` page."""
    params: dict[str, str] = {"limit": str(page_size)}
    for key, value in (("status", status), ("cursor", cursor), ("owner", owner)):
        if value is not None:
            params[key] = value
    return params


def resume_headers(last_event_id: str | None) -> Mapping[str, str]:
    """The `Last-Event-ID` header that resumes a stream after `last_event_id` (none to start afresh)."""
    return {"Last-Event-ID": last_event_id} if last_event_id else {}
