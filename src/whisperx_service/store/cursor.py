"""The job list's cursor: an opaque position (created ms, job id), so pages neither skip nor repeat."""

from __future__ import annotations

import base64
import binascii

from whisperx_service.domain.jobs import is_job_id

#: Job ids read from the index per Redis round trip while listing.
LIST_BATCH = 200
#: Index entries one list request examines at most (a status filter may match few); a page that
#: hits it is short, and its `next_cursor` continues where it stopped.
LIST_SCAN_MAX = 5000


def encode_cursor(created_ms: int, job_id: str) -> str:
    """Opaque list cursor: the position (created ms, id) of the last job a page covered."""
    return base64.urlsafe_b64encode(f"{created_ms}:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of `encode_cursor`.

    Raises:
        ValueError: not a cursor this service made.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, job_id = raw.split(":")
        created_ms = int(ms)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"cursor {cursor[:64]!r} is not one this service returned") from None
    if created_ms < 0 or not is_job_id(job_id):
        raise ValueError(f"cursor {cursor[:64]!r} is not one this service returned")
    return created_ms, job_id
