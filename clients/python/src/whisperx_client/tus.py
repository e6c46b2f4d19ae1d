"""Resumable uploads (tus 1.0, the gateway's `/v1/uploads`): what `Client` and `AsyncClient` share.

A file over `TUS_THRESHOLD_BYTES` is sent as a tus upload instead of one multipart body: created
with its length and metadata (file name, job options, `job`, so the gateway makes the job at the
last byte), then PATCHed in parts of `PART_BYTES`. A dropped connection, a 408/409/423/429/5xx
answer is retried after asking the gateway for its offset (HEAD), with the event streams' back-off;
the gateway keeps every byte it received, so only the part in flight is sent again.

The upload's URL is kept in a small state file (`default_state_path()`), under a key of the
gateway's URL and the file's absolute path, size and modification time, so a later run with
`resume=True` (`whisperx-client transcribe --resume`) continues the same upload. The entry is
removed when the upload is complete.

Not tuspy (PyPI): it needs requests, aiohttp and tinydb; this package stays on httpx.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO

from whisperx_client.models import Accepted

#: Files larger than this (bytes) go as resumable uploads; smaller ones as one multipart POST.
TUS_THRESHOLD_BYTES = 64 * 1024 * 1024
#: Bytes per PATCH request: a proxy's body limit or a long request never stalls the upload whole.
PART_BYTES = 64 * 1024 * 1024
#: Bytes read from the file per block of a PATCH body.
READ_BYTES = 1024 * 1024
#: The tus version spoken (https://tus.io/protocols/resumable-upload).
TUS_VERSION = "1.0.0"
#: Statuses after which the upload asks HEAD for the offset and goes on (after `Retry-After`).
RETRY_STATUSES = frozenset({408, 409, 423, 429, 502, 503, 504})
#: Failed attempts in a row (no byte accepted between them) before the upload gives up.
MAX_TRIES = 10


def default_state_path() -> Path:
    """Where upload URLs are kept: `$XDG_STATE_HOME/whisperx-client/uploads.json`
    (`~/.local/state/...` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "whisperx-client" / "uploads.json"


def state_key(base_url: str, path: Path, size: int, mtime_ns: int) -> str:
    """The state file key of one file on one gateway (its path, size and mtime: a changed file
    is a new upload)."""
    raw = json.dumps([base_url.rstrip("/"), str(path.resolve()), size, mtime_ns])
    return hashlib.sha256(raw.encode()).hexdigest()


class UploadState:
    """The state file: key -> upload URL, written whole (temp file, fsync, rename) on each change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_state_path()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        """The upload URL stored under `key`, if any."""
        return self._load().get(key)

    def put(self, key: str, url: str | None) -> None:
        """Store `url` under `key` (None removes it). A state file that cannot be written is
        skipped: the upload goes on, only a later `--resume` cannot find it."""
        data = self._load()
        if url is None and key not in data:
            return
        if url is None:
            del data[key]
        else:
            data[key] = url
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def metadata_header(filename: str, fields: Mapping[str, str]) -> str:
    """`Upload-Metadata`: the file name, the job options and `job` (make the job at the last byte)."""
    pairs = {"filename": filename, **fields}
    encoded = [f"{k} {base64.b64encode(v.encode('utf-8')).decode('ascii')}" for k, v in pairs.items()]
    return ",".join([*encoded, "job"])


def creation_headers(length: int, filename: str, fields: Mapping[str, str]) -> dict[str, str]:
    """Headers of the creation POST."""
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": str(length),
        "Upload-Metadata": metadata_header(filename, fields),
    }


def patch_headers(offset: int, length: int) -> dict[str, str]:
    """Headers of a PATCH of `length` bytes at `offset`."""
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }


HEAD_HEADERS = {"Tus-Resumable": TUS_VERSION}


def read_range(f: IO[bytes], start: int, end: int, total: int, progress: object) -> Iterator[bytes]:
    """The file's bytes from `start` to `end` in `READ_BYTES` blocks, reporting `(position,
    total)` to `progress` (a `ProgressCallback` or None) as each block goes out.

    Raises:
        OSError: the file ended before `end` (it changed while uploading).
    """
    f.seek(start)
    pos = start
    while pos < end:
        block = f.read(min(READ_BYTES, end - pos))
        if not block:
            raise OSError(f"the file ended at byte {pos}, before {end}: did it change?")
        pos += len(block)
        if callable(progress):
            progress(pos, total)
        yield block


async def aread_range(f: IO[bytes], start: int, end: int, total: int, progress: object) -> AsyncIterator[bytes]:
    """`read_range` as an async iterator (an httpx.AsyncClient body); reads on the loop's thread."""
    for block in read_range(f, start, end, total, progress):
        yield block


def accepted(job_id: str, status_url: str | None) -> Accepted:
    """The accepted job made at the upload's last byte (from its `Job-Id`, `Job-Status-Url`)."""
    base = status_url or f"/v1/jobs/{job_id}"
    return Accepted(
        id=job_id, status="queued", status_url=base, events_url=f"{base}/events", result_url=f"{base}/result"
    )
