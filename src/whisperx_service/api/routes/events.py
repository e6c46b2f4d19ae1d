"""`GET /v1/jobs/{id}/events`: the job's progress as Server-Sent Events.

A fresh connection gets a `snapshot` event first (the job record, id `0-0`), then every event of
the job's Redis Stream in order (SSE id = stream entry id, SSE event = the entry's `type`, data =
the entry's fields as JSON), and ends after exactly one terminal event (succeeded, failed,
cancelled). A reconnect with `Last-Event-ID` (or `?last_event_id=`) skips the snapshot and
continues strictly after that id, so nothing is lost or repeated. A reconnect after the terminal
event gets `204 No Content`, which tells an EventSource to stop reconnecting.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep, SettingsDep
from whisperx_service.domain.events import TERMINAL_EVENTS, EventType
from whisperx_service.domain.jobs import JobRecord
from whisperx_service.errors import InvalidRequest
from whisperx_service.store.async_jobs import AsyncJobStore

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
#: Block time (ms) of a stream read once the job is known to be terminal: just a quick look.
_DRAIN_BLOCK_MS = 1
#: SSE id of the snapshot event.
SNAPSHOT_ID = "0-0"


def _parse_id(event_id: str) -> tuple[int, int]:
    m = _STREAM_ID.match(event_id)
    if m is None:
        raise InvalidRequest(f"Last-Event-ID {event_id[:64]!r} is not a stream id like 1700000000000-0")
    return int(m.group(1)), int(m.group(2))


def _terminal_event(record: JobRecord, after: tuple[int, int]) -> ServerSentEvent:
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
    return ServerSentEvent(data=json.dumps(data), event=record.status.value, id=f"{eid[0]}-{eid[1]}")


#: Stream fields that carry numbers (Redis stores every field as a string).
NUMERIC_FIELDS = {"percent": float, "stage_percent": float, "eta_s": float, "attempt": int, "chunk": int, "chunks": int}


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


async def _last_terminal_id(jobs: AsyncJobStore, record: JobRecord) -> tuple[int, int]:
    """The id of the terminal event of a terminal job: the stream's, or the one `_terminal_event` makes.

    The terminal event is always the stream's last entry (nothing follows it).
    """
    last = (0, 0)
    newest = await jobs.last_event(record.id)
    if newest is not None:
        last = _parse_id(newest[0])
        if newest[1].get("type") in TERMINAL_EVENTS:
            return last
    # No terminal event stored: the stream loop synthesizes one right after the last entry.
    return _parse_id(_terminal_event(record, last).id or SNAPSHOT_ID)


async def _stream(
    request: Request, jobs: AsyncJobStore, record: JobRecord, after: str | None, block_ms: int
) -> AsyncIterator[ServerSentEvent]:
    """Snapshot (unless resuming), stored events after the cursor, then stop after one terminal event."""
    job_id = record.id
    state = request.app.state
    state.sse_clients += 1
    try:
        if after is None:
            yield ServerSentEvent(data=record.model_dump_json(), event=EventType.snapshot.value, id=SNAPSHOT_ID)
            cursor = SNAPSHOT_ID
        else:
            cursor = after
        terminal = record.status.terminal
        while True:
            batch = await jobs.read_events(job_id, cursor, _DRAIN_BLOCK_MS if terminal else block_ms)
            for event_id, fields in batch:
                cursor = event_id
                kind = fields.get("type", "message")
                yield ServerSentEvent(data=json.dumps(event_payload(fields)), event=kind, id=event_id)
                if kind in TERMINAL_EVENTS:
                    return
            if batch:
                continue
            if terminal:
                # The job ended but its stream holds no terminal event after the cursor (trimmed
                # or lost): tell the client from the record, once.
                yield _terminal_event(record, _parse_id(cursor))
                return
            latest = await jobs.get(job_id)
            if latest is None:  # deleted while watched
                return
            # A terminal status and its event are written in one step (Lua), so one more read
            # finds the event unless the stream lost it.
            record, terminal = latest, latest.status.terminal
    finally:
        state.sse_clients -= 1


@router.get(
    "/{job_id}/events",
    summary="Live progress (Server-Sent Events)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "snapshot, progress events, one terminal event",
        },
        204: {"description": "resumed after the terminal event: nothing more will come"},
        404: {"description": "job_not_found"},
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
        InvalidRequest: the Last-Event-ID is not a stream id.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    record = await visible_job(jobs, job_id, principal)
    after = last_event_id_header or last_event_id
    if after is not None:
        after_key = _parse_id(after)
        if record.status.terminal and after_key >= await _last_terminal_id(jobs, record):
            return Response(status_code=204)
    return EventSourceResponse(
        _stream(request, jobs, record, after, settings.api.sse_block_ms),
        ping=settings.api.sse_ping_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
