"""The job hash and its codec: how a job is written to and read from Redis (every value a string).

Also the terminal record written to storage (`final.json`) and the helpers that decode Redis
replies (bytes or str, RESP2 or RESP3) into plain strings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from whisperx_service.domain.jobs import JobOptions, JobRecord, JobStatus, utcnow
from whisperx_service.domain.keys import KeyOwner

#: A stream entry: (entry id, {field: value}).
Event = tuple[str, dict[str, str]]
#: Values of the terminal statuses, as stored.
TERMINAL_VALUES = frozenset(s.value for s in JobStatus if s.terminal)


def flat_args(fields: Mapping[str, Any]) -> list[str]:
    """`{k: v}` as `[k, str(v), ...]` for a Lua script's ARGV; None values are left out."""
    out: list[str] = []
    for k, v in fields.items():
        if v is None:
            continue
        out += [k, str(v.item() if hasattr(v, "item") else v)]  # numpy scalars as plain numbers
    return out


def new_job_hash(
    job_id: str,
    options: JobOptions,
    *,
    filename: str | None,
    size_bytes: int,
    created_ms: int,
    owner: KeyOwner | None = None,
    duration_s: float | None = None,
) -> dict[str, str]:
    """The initial Redis hash of a queued job (every value a string); `owner` is the key that created it."""
    return {
        "id": job_id,
        "status": JobStatus.queued.value,
        "stage": "",
        "percent": "0",
        "attempt": "0",
        "created_at": utcnow().isoformat(),
        "created_ms": str(created_ms),
        "started_at": "",
        "finished_at": "",
        "filename": filename or "",
        "size_bytes": str(size_bytes),
        "options": options.model_dump_json(),
        "lease_owner": "",
        "lease_expires_ms": "0",
        "owner_id": owner.id if owner else "",
        "owner_name": owner.name if owner else "",
        "duration_s": f"{duration_s:.3f}" if duration_s is not None else "",
    }


class FinalRecord(TypedDict):
    """The keyword arguments of `Storage.write_final` (the job's terminal state)."""

    status: str
    finished_at: str
    attempt: int
    error_code: str
    error_message: str


def final_record(record: JobRecord) -> FinalRecord:
    """A terminal job's record as `Storage.write_final` takes it: `storage.write_final(id, **final_record(rec))`."""
    finished = record.finished_at or utcnow()
    return FinalRecord(
        status=record.status.value,
        finished_at=finished.isoformat(),
        attempt=record.attempt,
        error_code=record.error.code if record.error else "",
        error_message=record.error.message if record.error else "",
    )


def now_ms() -> int:
    """Now, in ms since the epoch."""
    return int(time.time() * 1000)


def as_str(x: bytes | str | int) -> str:
    """A Redis reply value as str."""
    return x.decode() if isinstance(x, bytes) else str(x)


def decode_hash(h: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply as `{str: str}`."""
    return {as_str(k): as_str(v) for k, v in h.items()}


def stream_entries(raw: Any) -> list[Event]:
    """Stream entries `[(id, {field: value})]` as strings."""
    return [(as_str(i), decode_hash(f)) for i, f in raw or []]


def score_pairs(raw: Any) -> list[tuple[Any, Any]]:
    """`(member, score)` pairs from a WITHSCORES reply (RESP2 flat list or RESP3 pairs)."""
    items = list(raw or [])
    if items and isinstance(items[0], (list, tuple)):
        return [(m, sc) for m, sc in items]
    return list(zip(items[::2], items[1::2], strict=True))


def iso_to_ms(value: object) -> int | None:
    """ms since the epoch of an ISO-8601 time, or None when it is not a non-empty, well-formed string."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None
