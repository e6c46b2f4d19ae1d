"""`GET /v1/jobs/{id}/events`: the job's progress as Server-Sent Events.

A fresh connection gets a `snapshot` event first (the job record, id `0-0`), then every event of
the job's Redis Stream in order (SSE id = stream entry id, SSE event = the entry's `type`, data =
the entry's fields as JSON), and ends after exactly one terminal event (succeeded, failed,
cancelled). A reconnect with `Last-Event-ID` (or `?last_event_id=`) skips the snapshot and
continues strictly after that id, so nothing is lost or repeated; the id must be a whole stream id
`<ms>-<seq>` not in the future (400 `invalid_event_id` otherwise). A reconnect after the terminal
event gets `204 No Content`, which tells an EventSource to stop reconnecting.

Live events come through `api/event_hub.EventHub` (one Redis reader per job per gateway process);
a stream that falls too far behind, or whose reader fails, ends without a terminal event and its
client resumes with Last-Event-ID. Streams are capped per key and in all (429 `too_many_streams`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep, SettingsDep
from whisperx_service.api.event_hub import (
    EventHub,
    EventId,
    StreamEnd,
    StreamSlot,
    format_event_id,
    parse_event_id,
)
from whisperx_service.domain.events import TERMINAL_EVENTS, EventType
from whisperx_service.domain.jobs import JobRecord
from whisperx_service.errors import InvalidEventId
from whisperx_service.store.async_jobs import AsyncJobStore

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

#: SSE id of the snapshot event.
SNAPSHOT_ID = "0-0"
#: Largest part of a stream id (Redis ids are two unsigned 64-bit numbers).
ID_PART_MAX = 2**64 - 1
#: How far (ms) a Last-Event-ID may lie ahead of this gateway's clock (Redis's clock may differ a little).
ID_CLOCK_SKEW_MS = 60_000


def parse_last_event_id(value: str, now_ms: int) -> EventId:
    """A client's Last-Event-ID as (ms, seq).

    Args:
        now_ms: this gateway's clock, ms since the epoch.
    Raises:
        InvalidEventId: the whole value is not `<ms>-<seq>`, a part is over 2^64-1, or the ms part is
            more than ID_CLOCK_SKEW_MS ahead of `now_ms` (no event can have that id yet).
    """
    key = parse_event_id(value)
    if key is None:
        raise InvalidEventId(f"Last-Event-ID {value[:64]!r} is not a stream id like 1700000000000-0")
    ms, seq = key
    if ms > ID_PART_MAX or seq > ID_PART_MAX:
        raise InvalidEventId("Last-Event-ID is out of range: each part is at most 2^64-1")
    if ms > now_ms + ID_CLOCK_SKEW_MS:
        raise InvalidEventId("Last-Event-ID lies in the future: no event has that id")
    return key


def _terminal_event(record: JobRecord, after: EventId) -> ServerSentEvent:
    """A terminal event built from the job record (the stream lost it, e.g. trimmed).

    Its id is the finish time in ms (where the real event would have been), kept above `after`.
    Its data has the stored terminal event's shape, numeric fields as JSON numbers (`percent`
    100.0 for a succeeded job).
    """
    finished = record.finished_at or record.created_at
    ms = int(finished.timestamp() * 1000)
    eid = (ms, 0) if (ms, 0) > after else (after[0], after[1] + 1)
    data: dict[str, str | float] = {"type": record.status.value, "status": record.status.value}
    if record.status.value == EventType.succeeded:
        data["percent"] = 100.0  # a number, as `event_payload` gives the stored events' numeric fields
    if record.error is not None:
        data |= {"code": record.error.code, "message": record.error.message}
    return ServerSentEvent(data=json.dumps(data), event=record.status.value, id=format_event_id(eid))


async def _last_terminal_id(jobs: AsyncJobStore, record: JobRecord) -> EventId:
    """The id of the terminal event of a terminal job: the stream's, or the one `_terminal_event` makes.

    The terminal event is always the stream's last entry (nothing follows it).
    """
    last = (0, 0)
    newest = await jobs.last_event(record.id)
    if newest is not None:
        last = parse_event_id(newest[0]) or last
        if newest[1].get("type") in TERMINAL_EVENTS:
            return last
    # No terminal event stored: the stream synthesizes one right after the last entry.
    return parse_event_id(_terminal_event(record, last).id or SNAPSHOT_ID) or last


async def _stream(
    hub: EventHub, jobs: AsyncJobStore, record: JobRecord, after: EventId | None, slot: StreamSlot
) -> AsyncIterator[ServerSentEvent | bytes]:
    """Snapshot (unless resuming), the events after the cursor, then stop after one terminal event."""
    try:
        if after is None:
            yield ServerSentEvent(data=record.model_dump_json(), event=EventType.snapshot.value, id=SNAPSHOT_ID)
            after = (0, 0)
        async with hub.subscribe(record.id, after, live=not record.status.terminal) as sub:
            async for event in sub.events():
                yield event.sse
                if event.terminal:
                    return
            cursor, end = sub.last, sub.end
        if end is not StreamEnd.ended:
            return  # behind, failed or closing: the client resumes with Last-Event-ID
        latest = record if record.status.terminal else await jobs.get(record.id)
        if latest is not None and latest.status.terminal:
            # The job ended but its stream holds no terminal event after the cursor (trimmed or
            # lost): tell the client from the record, once.
            yield _terminal_event(latest, cursor)
    finally:
        slot.release()


async def _release_slot(slot: StreamSlot) -> None:
    """`slot.release()` as a coroutine: Starlette runs a plain function background task in its thread
    pool, and 1,000 streams ending on one terminal event would queue 1,000 thread hops there."""
    slot.release()


@router.get(
    "/{job_id}/events",
    summary="Live progress (Server-Sent Events)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "snapshot, progress events, one terminal event",
        },
        204: {"description": "resumed after the terminal event: nothing more will come"},
        400: {"description": "invalid_event_id"},
        404: {"description": "job_not_found"},
        429: {"description": "too_many_streams"},
    },
)
async def job_events(
    request: Request,
    job_id: JobIdDep,
    principal: PrincipalDep,
    jobs: JobsDep,
    settings: SettingsDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(description="Resume after this event id (as Last-Event-ID)")] = None,
) -> Response:
    """Stream the job's events; see the module docstring for the protocol.

    Raises:
        JobNotFound: no such job, or another key owns it (answered as JSON before any stream starts).
        InvalidEventId: the Last-Event-ID is not a whole stream id, or is out of range.
        TooManyStreams: the key, or this gateway process, holds as many streams as allowed.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    record = await visible_job(jobs, job_id, principal)
    raw_after = last_event_id_header or last_event_id
    after = None if raw_after is None else parse_last_event_id(raw_after, int(time.time() * 1000))
    if after is not None and record.status.terminal and after >= await _last_terminal_id(jobs, record):
        return Response(status_code=204)
    hub: EventHub = request.app.state.events
    slot = hub.admit(principal.key.id if principal.key is not None else None)
    return EventSourceResponse(
        _stream(hub, jobs, record, after, slot),
        ping=settings.api.sse_ping_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Also releases the slot of a stream whose body never ran (a HEAD request, an early disconnect).
        background=BackgroundTask(_release_slot, slot),
    )
