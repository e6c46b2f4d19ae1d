"""Event fan-out: one Redis reader per watched job in this gateway process, shared by its streams.

`EventHub` reads through job stores on Redis clients of its own (their own connection pools), so
open event streams never hold the connections that request handling needs. For each job with at
least one open stream it runs one reader task, on one pooled connection: it reads the stream's
newest `HISTORY` events, then `XREAD BLOCK`s from the newest id it has seen and hands each batch,
encoded to SSE bytes once, to every subscriber of the job.

A subscriber first gets the events it missed (after its cursor, up to the id the job's reader had
reached when it joined): from the reader's history of recent events when that reaches back far
enough, else with non-blocking `XRANGE` pages on a bounded pool. Then it gets the live batches,
skipping any id it has already passed: no gap, no repeat. A subscriber more than `PENDING_MAX`
events behind the reader is ended (`StreamEnd.behind`; its client resumes with Last-Event-ID).

A reader stops after its job's terminal event, when the job ended without one or is gone (checked
after each silent block), on a Redis error, or when its last subscriber has left (at the end of
its current block, so its pooled connection is never cut mid-command).

Open streams are counted per key and in all (`admit`); beyond SSE_MAX_STREAMS_PER_KEY or
SSE_MAX_STREAMS the request answers 429 `too_many_streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from sse_starlette import ServerSentEvent

from whisperx_service.domain.events import TERMINAL_EVENTS
from whisperx_service.errors import TooManyStreams
from whisperx_service.logs import get_logger
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.records import TERMINAL_VALUES

log = get_logger(__name__)

#: A stream entry id `<ms>-<seq>` as a sortable pair.
EventId = tuple[int, int]
#: A whole stream entry id: two decimal numbers of at most 20 digits.
STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
#: Live events a subscriber may hold unsent before it is ended as too far behind.
PENDING_MAX = 1000
#: Entries per XREAD / XRANGE call.
PAGE = 500
#: Newest events each job's reader keeps, so most new subscribers need no Redis read for their backlog.
HISTORY = 256
#: Seconds a client refused for too many streams is told to wait (`Retry-After`).
STREAMS_RETRY_AFTER_S = 10
#: What `admit` counts streams under when auth is off (every caller is the same one).
ANONYMOUS = "-"
#: Stream fields that carry numbers (Redis stores every field as a string).
NUMERIC_FIELDS = {
    "percent": float,
    "stage_percent": float,
    "eta_s": float,
    "attempt": int,
    "chunk": int,
    "chunks": int,
    "final_chunk": int,
    "bytes": int,  # the `fetch` stage: bytes of the source fetched so far
    "total_bytes": int,  # and the size its server announced
}


def parse_event_id(value: str) -> EventId | None:
    """`<ms>-<seq>` as (ms, seq) when the whole value has that form, else None (no range check)."""
    m = STREAM_ID.fullmatch(value)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def format_event_id(key: EventId) -> str:
    """(ms, seq) as the stream id `<ms>-<seq>`."""
    return f"{key[0]}-{key[1]}"


def event_payload(fields: dict[str, str]) -> dict[str, str | int | float]:
    """A stored event's fields as the SSE data object, with numeric fields as JSON numbers."""
    out: dict[str, str | int | float] = {}
    for k, v in fields.items():
        conv = NUMERIC_FIELDS.get(k)
        try:
            out[k] = conv(v) if conv else v
        except ValueError:
            out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class HubEvent:
    """One stored event, ready to send: its id, its type, its SSE message (UTF-8 bytes) and its
    stored fields (flat strings, as in the stream)."""

    id: str
    key: EventId
    type: str
    sse: bytes
    fields: dict[str, str]

    @classmethod
    def of(cls, event_id: str, fields: dict[str, str]) -> HubEvent:
        """The event of a stream entry (SSE id = entry id, event = its `type`, data = its fields as JSON)."""
        kind = fields.get("type", "message")
        sse = ServerSentEvent(data=json.dumps(event_payload(fields)), event=kind, id=event_id).encode()
        return cls(event_id, parse_event_id(event_id) or (0, 0), kind, sse, fields)

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled: nothing follows it in the stream."""
        return self.type in TERMINAL_EVENTS


class StreamEnd(enum.Enum):
    """Why a subscription delivers nothing more (after what it holds)."""

    #: The job's reader is done: after the terminal event, or the job ended without one or is gone.
    ended = "ended"
    #: The subscriber fell more than PENDING_MAX events behind; its client resumes with Last-Event-ID.
    behind = "behind"
    #: Redis failed under the job's reader.
    failed = "failed"
    #: The gateway is shutting down.
    closed = "closed"


class StreamSlot:
    """One admitted stream, counted against its key and the total until `release` (idempotent)."""

    def __init__(self, hub: EventHub, owner: str) -> None:
        self._hub, self.owner, self._held = hub, owner, True

    def release(self) -> None:
        """Stop counting this stream (the second and later calls do nothing)."""
        if self._held:
            self._held = False
            self._hub._release(self.owner)


class Subscription:
    """One stream's view of a job's events: its backlog, then (when live) the reader's batches.

    `end` says why it stopped when `events()` finishes without a terminal event.
    """

    def __init__(self, hub: EventHub, job_id: str, after: EventId, reader: _Reader | None) -> None:
        self._hub, self.job_id, self.last = hub, job_id, after
        self._reader = reader  # None: only the events stored now, read to the stream's end
        #: The last id of the backlog still to read from Redis; None = nothing to read there.
        self.backlog_upto: EventId | None = None
        self._pending: deque[HubEvent] = deque()
        self._wake = asyncio.Event()
        self.end: StreamEnd | None = None

    def _join(self, reader: _Reader) -> None:
        """Take the backlog up to the reader's cursor: from its history when it reaches back far enough."""
        history, cursor = reader.history, reader.cursor
        if cursor is None or cursor <= self.last:
            return
        if reader.complete or (history and history[0].key <= self.last):
            self._pending.extend(event for event in history if event.key > self.last)
            self._wake.set()
        else:
            self.backlog_upto = cursor

    def _deliver(self, batch: Sequence[HubEvent]) -> None:
        if self.end is not None:
            return
        if len(self._pending) + len(batch) > PENDING_MAX:
            self._pending.clear()
            self._finish(StreamEnd.behind)
            return
        self._pending.extend(batch)
        self._wake.set()

    def _finish(self, end: StreamEnd) -> None:
        if self.end is None:
            self.end = end
            self._wake.set()

    async def events(self) -> AsyncIterator[HubEvent]:
        """Every event after the cursor, in order, each once, until the subscription ends.

        Raises:
            redis.RedisError: reading the backlog failed.
        """
        if self._reader is None:
            async for event in self._hub._backlog(self.job_id, self.last, None):
                self.last = event.key
                yield event
            self.end = StreamEnd.ended
            return
        await self._reader.ready.wait()
        if self.backlog_upto is not None:
            async for event in self._hub._backlog(self.job_id, self.last, self.backlog_upto):
                self.last = event.key
                yield event
        while True:
            while self._pending:
                event = self._pending.popleft()
                if event.key > self.last:
                    self.last = event.key
                    yield event
            if self.end is not None:
                return
            self._wake.clear()
            await self._wake.wait()


@dataclass(eq=False)
class _Reader:
    """The one reader of one job's stream: its cursor (newest id read), its recent events, its subscribers."""

    job_id: str
    cursor: EventId | None = None  # None until the reader has read the stream's newest events
    #: The newest events read (at most HISTORY), oldest first: new subscribers' backlogs come from here.
    history: deque[HubEvent] = field(default_factory=lambda: deque(maxlen=HISTORY))
    complete: bool = False  # `history` holds every event of the stream
    subscribers: set[Subscription] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once `cursor` is known
    task: asyncio.Task[None] | None = None


class EventHub:
    """The event streams of this gateway process; see the module docstring.

    Args (constructor):
        blocking: a job store on a Redis client of the hub's own for the readers' XREAD BLOCK (one
            connection per watched job; its socket timeout above `block_ms`).
        jobs: a job store on another client of the hub's own, for short reads (backlogs, status),
            whose pool makes a burst of new streams wait for a connection rather than fail.
        block_ms: XREAD BLOCK time of each reader (API_SSE_BLOCK_MS).
        max_streams: open streams allowed in all (SSE_MAX_STREAMS).
        max_streams_per_key: open streams allowed per key (SSE_MAX_STREAMS_PER_KEY).
    """

    def __init__(
        self,
        blocking: AsyncJobStore,
        jobs: AsyncJobStore,
        *,
        block_ms: int,
        max_streams: int,
        max_streams_per_key: int,
    ) -> None:
        self.blocking, self.jobs = blocking, jobs
        self.block_ms = block_ms
        self.max_streams = max_streams
        self.max_streams_per_key = max_streams_per_key
        self.streams = 0  # open streams now, in all
        self._per_key: Counter[str] = Counter()
        self._readers: dict[str, _Reader] = {}

    @property
    def readers(self) -> int:
        """Jobs with a running reader now."""
        return len(self._readers)

    def admit(self, owner: str | None) -> StreamSlot:
        """Count one more open stream for `owner` (a key id; None when auth is off).

        Raises:
            TooManyStreams: the key holds `max_streams_per_key` streams, or the process `max_streams`.
        """
        key = owner or ANONYMOUS
        if self.streams >= self.max_streams:
            raise TooManyStreams(
                "this gateway holds as many event streams as it allows; try again later",
                retry_after_s=STREAMS_RETRY_AFTER_S,
            )
        if self._per_key[key] >= self.max_streams_per_key:
            raise TooManyStreams(
                "this API key holds as many event streams as it may; close one or try again later",
                retry_after_s=STREAMS_RETRY_AFTER_S,
            )
        self.streams += 1
        self._per_key[key] += 1
        return StreamSlot(self, key)

    def _release(self, key: str) -> None:
        self.streams -= 1
        self._per_key[key] -= 1
        if self._per_key[key] <= 0:
            del self._per_key[key]

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str, after: EventId, *, live: bool) -> AsyncIterator[Subscription]:
        """A subscription to the job's events after `after`, left when the block exits.

        Args:
            live: False = only the events stored now (a job that already ended); True = then every
                new event, through the job's one reader (started here when it has none).
        Raises:
            redis.RedisError: Redis does not answer.
        """
        reader = None
        if live:
            reader = self._readers.get(job_id)
            if reader is None:
                reader = self._readers[job_id] = _Reader(job_id)
                reader.task = asyncio.create_task(self._run(reader), name=f"events:{job_id}")
        sub = Subscription(self, job_id, after, reader)
        if reader is None:
            yield sub
            return
        if reader.ready.is_set():
            sub._join(reader)
        reader.subscribers.add(sub)
        try:
            yield sub
        finally:
            reader.subscribers.discard(sub)

    async def _backlog(self, job_id: str, after: EventId, upto: EventId | None) -> AsyncIterator[HubEvent]:
        """Stored events with `after` < id <= `upto` (None = to the newest), oldest first, in pages."""
        if upto is not None and upto <= after:
            return
        cursor, end = format_event_id(after), None if upto is None else format_event_id(upto)
        while True:
            page = await self.jobs.events_between(job_id, cursor, end, PAGE)
            for event_id, fields in page:
                yield HubEvent.of(event_id, fields)
            if len(page) < PAGE:
                return
            cursor = page[-1][0]

    def _fan_out(self, reader: _Reader, entries: Sequence[tuple[str, dict[str, str]]]) -> bool:
        """Hand a batch to every subscriber; True when it holds the terminal event."""
        batch = [HubEvent.of(event_id, fields) for event_id, fields in entries]
        if not batch:
            return False
        reader.cursor = batch[-1].key
        if len(reader.history) + len(batch) > HISTORY:
            reader.complete = False
        reader.history.extend(batch)
        for sub in list(reader.subscribers):
            sub._deliver(batch)
        return any(event.terminal for event in batch)

    async def _run(self, reader: _Reader) -> None:
        """The reader task of one job (see the module docstring)."""
        end = StreamEnd.ended
        job_id = reader.job_id
        try:
            # Start after the newest stored events, kept as history for the subscribers' backlogs.
            newest = [HubEvent.of(i, f) for i, f in await self.blocking.newest_events(job_id, HISTORY)]
            reader.history.extend(newest)
            reader.complete = len(newest) < HISTORY
            reader.cursor = newest[-1].key if newest else (0, 0)
            for sub in reader.subscribers:
                sub._join(reader)
            reader.ready.set()
            while reader.subscribers:
                cursor = format_event_id(reader.cursor or (0, 0))
                entries = await self.blocking.read_events(job_id, cursor, self.block_ms, PAGE)
                if entries:
                    if self._fan_out(reader, entries):
                        break
                    continue
                status = await self.blocking.status(job_id)
                if status is not None and status not in TERMINAL_VALUES:
                    continue
                # Ended or gone. A terminal status and its event are written in one step (Lua), so
                # one more read finds the event unless the stream lost it.
                cursor = format_event_id(reader.cursor or (0, 0))
                self._fan_out(reader, await self.blocking.read_events(job_id, cursor, None, PAGE))
                break
        except asyncio.CancelledError:
            end = StreamEnd.closed
            raise
        except Exception as e:  # a Redis error or a bug: end the streams, their clients resume
            log.warning("event_reader_failed", job_id=job_id, error=repr(e))
            end = StreamEnd.failed
        finally:
            if self._readers.get(job_id) is reader:
                del self._readers[job_id]
            for sub in reader.subscribers:
                sub._finish(end)
            reader.ready.set()

    async def close(self) -> None:
        """Stop every reader; their subscriptions end (`StreamEnd.closed`)."""
        tasks = [r.task for r in self._readers.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
