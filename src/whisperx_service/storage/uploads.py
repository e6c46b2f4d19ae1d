"""Resumable uploads on storage: one directory per upload under `<root>/uploads`.

Layout:
    uploads/<id>/data       the bytes received so far, appended in order; its size is the
                            upload's offset (tus `Upload-Offset`)
    uploads/<id>/info.json  `UploadInfo`: owner, length, metadata, creation and expiry times, and
                            once a job was made of it, the job's id
The directory is on the same filesystem as `jobs/`, so a finished upload becomes a job's
`source` by a rename (`move_to`), never a copy. `info.json` is written atomically (temp file,
fsync, rename); `data` is only appended to, so every byte in it was received in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from whisperx_service.domain.jobs import is_job_id, new_job_id
from whisperx_service.storage.local import atomic_write_json, fsync_dir

#: Name of the uploads folder under the storage root.
UPLOADS_DIR = "uploads"


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """What is known of one upload besides its bytes.

    id: 32 lowercase hex characters (as job ids), the last segment of the upload's URL.
    owner: id of the API key that created it (None when auth is off).
    length: bytes the whole file has (tus `Upload-Length`).
    metadata: the decoded `Upload-Metadata` pairs (file name, job options).
    created_s, expires_s: seconds since the epoch; after `expires_s` the upload is refused (410)
        and retention removes it.
    job_id: the job made of the finished upload (its data was moved there), or None.
    """

    id: str
    owner: str | None
    length: int
    metadata: dict[str, str] = field(default_factory=dict)
    created_s: float = 0.0
    expires_s: float = 0.0
    job_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadInfo:
        """Rebuild from `info.json`. Raises KeyError/TypeError/ValueError on a malformed one."""
        return cls(
            id=str(data["id"]),
            owner=data.get("owner"),
            length=int(data["length"]),
            metadata={str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()},
            created_s=float(data["created_s"]),
            expires_s=float(data["expires_s"]),
            job_id=data.get("job_id"),
        )


class UploadStore:
    """Uploads under `<root>/uploads` (see the module docstring). Blocking: call from threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / UPLOADS_DIR

    def dir(self, upload_id: str) -> Path:
        """`<root>/uploads/<id>`.

        Raises:
            ValueError: `upload_id` is not 32 lowercase hex characters.
        """
        if not is_job_id(upload_id):
            raise ValueError(f"bad upload id {upload_id!r}")
        return self.root / upload_id

    def data(self, upload_id: str) -> Path:
        """The received bytes."""
        return self.dir(upload_id) / "data"

    def info_path(self, upload_id: str) -> Path:
        """The upload's `info.json`."""
        return self.dir(upload_id) / "info.json"

    def create(
        self, owner: str | None, length: int, metadata: dict[str, str], now_s: float, expiry_s: float
    ) -> UploadInfo:
        """Make a new upload with an empty `data` file.

        Raises:
            OSError: the directory or its files cannot be written.
        """
        info = UploadInfo(new_job_id(), owner, length, metadata, now_s, now_s + expiry_s)
        path = self.dir(info.id)
        path.mkdir(parents=True)
        try:
            self.data(info.id).touch(mode=0o640, exist_ok=False)
            self.write(info)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return info

    def write(self, info: UploadInfo) -> None:
        """Save `info` atomically. Raises OSError."""
        atomic_write_json(self.info_path(info.id), asdict(info))

    def read(self, upload_id: str) -> UploadInfo | None:
        """The upload's info, or None when there is no such upload (or the id cannot be one, or
        its `info.json` is unreadable)."""
        if not is_job_id(upload_id):
            return None
        try:
            return UploadInfo.from_json(json.loads(self.info_path(upload_id).read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def offset(self, info: UploadInfo) -> int:
        """Bytes received so far: the size of `data`, or the whole length once a job took it."""
        if info.job_id is not None:
            return info.length
        try:
            return self.data(info.id).stat().st_size
        except FileNotFoundError:
            return 0

    def move_to(self, upload_id: str, target: Path) -> None:
        """Rename `data` to `target` (same filesystem: no copy) and make the rename durable.

        Raises:
            OSError: the rename failed (e.g. `data` is gone).
        """
        os.replace(self.data(upload_id), target)
        fsync_dir(target.parent)
        fsync_dir(self.dir(upload_id))

    def take_back(self, upload_id: str, source: Path) -> None:
        """Undo `move_to`: rename `source` back to the upload's `data`. Raises OSError."""
        os.replace(source, self.data(upload_id))
        fsync_dir(self.dir(upload_id))

    def mark_job(self, info: UploadInfo, job_id: str) -> UploadInfo:
        """Record that `job_id` was made of the upload. Raises OSError."""
        done = replace(info, job_id=job_id)
        self.write(done)
        return done

    def remove(self, upload_id: str) -> None:
        """Delete the upload's directory (no error when it is gone)."""
        shutil.rmtree(self.dir(upload_id), ignore_errors=True)

    def all(self) -> list[UploadInfo]:
        """Every upload with a readable `info.json`, in id order."""
        out: list[UploadInfo] = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.root)):
                info = self.read(name)
                if info is not None:
                    out.append(info)
        return out

    def pending_bytes(self, owner: str | None) -> int:
        """Bytes `owner`'s uploads will hold once finished (their `length`), jobs not yet made."""
        return sum(u.length for u in self.all() if u.owner == owner and u.job_id is None)

    def expired(self, now_s: float) -> list[str]:
        """Ids of uploads whose expiry passed, and of directories without a readable `info.json`
        older than a day (an upload whose creation died half-way)."""
        out = [u.id for u in self.all() if u.expires_s <= now_s]
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                if is_job_id(name) and self.read(name) is None:
                    with contextlib.suppress(FileNotFoundError):
                        if (self.root / name).stat().st_mtime < now_s - 86_400:
                            out.append(name)
        return out
