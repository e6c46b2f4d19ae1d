"""Progress events: what workers publish and the SSE route serves.

Each event is one entry in the job's Redis Stream; the entry id is the SSE `id`. The fields are
flat strings (Redis Stream entries are string maps): `type` plus the type's fields below.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Kinds of events in a job's stream."""

    snapshot = "snapshot"  # SSE only: the job's state when the client connected (never stored)
    queued = "queued"  # the job was accepted
    started = "started"  # a worker claimed it (fields: attempt)
    progress = "progress"  # fields: stage, stage_percent, percent, (chunk, chunks, eta_s)
    released = "released"  # the worker was shut down (SIGTERM) and handed the job back (fields: attempt)
    cancelling = "cancelling"  # DELETE asked the running job to stop; `cancelled` follows
    restored = "restored"  # Redis lost the job and the reconciler rebuilt it from storage (fields: attempt)
    succeeded = "succeeded"  # terminal
    failed = "failed"  # terminal; fields: code, message
    cancelled = "cancelled"  # terminal


TERMINAL_EVENTS = frozenset({EventType.succeeded, EventType.failed, EventType.cancelled})
