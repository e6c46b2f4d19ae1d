"""Local (or shared-volume) storage: job directories and atomic writes.

Layout under the storage root:
    jobs/<id>/source        the upload, exactly as received
    jobs/<id>/job.json      the manifest (id, owner, options, filename, size, created)
    jobs/<id>/transcript.json  an `align` job's transcript (`domain.script.Script`)
    jobs/<id>/chunks/       the chunk plan and one checkpoint per finished chunk
    jobs/<id>/work/         the decoded PCM (removed when the job ends)
    jobs/<id>/result.json   the transcript, written once the job succeeds
    jobs/<id>/final.json    the job's terminal state (status, error, finished_at, attempt),
                            written by whoever ended it; lets Redis be rebuilt from storage
    keys/<key id>.json      an API key's record (its SHA-256, never the key; see storage/keys.py)
    admin.key               the admin key made on first start (mode 0600)
Every file is written as temp file in the same directory, fsync, rename, so a reader sees the
whole file or none of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisperx_service.domain.jobs import is_job_id

TMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class JobDir:
    """One directory under `<root>/jobs`, as `Storage.list_job_dirs` found it.

    mtime: newest modification time (s since the epoch) of the directory and its direct entries.
    has_manifest: `job.json` exists (without it the directory belongs to no job: an upload that
    never finished).
    """

    job_id: str
    path: Path
    mtime: float
    has_manifest: bool


class Storage:
    """Job files under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        """`<root>/jobs/<id>`. Ids are server-made hex strings; anything else is refused.

        Raises:
            ValueError: `job_id` is not a 32-character lowercase hex string.
        """
        if not is_job_id(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / "jobs" / job_id

    def source(self, job_id: str) -> Path:
        """The uploaded file."""
        return self.job_dir(job_id) / "source"

    def manifest(self, job_id: str) -> Path:
        """The job manifest (`job.json`)."""
        return self.job_dir(job_id) / "job.json"

    def script(self, job_id: str) -> Path:
        """The transcript an `align` job places (`transcript.json`, a `domain.script.Script`)."""
        return self.job_dir(job_id) / "transcript.json"

    def seed_rediarization(self, earlier_id: str, job_id: str) -> bool:
        """Give a new job the earlier job's audio and words: its source (a hard link where the
        file system allows, else a copy), its chunk plan as the new job's, and each chunk's
        result as `chunks/<n>.reuse.json` (the worker keeps their words and diarizes again).

        Returns:
            False when the earlier job has no source or plan left (nothing is written then).
        Raises:
            OSError: a copy failed (the caller removes the new job's directory).
        """
        source, chunks = self.source(earlier_id), self.chunks_dir(earlier_id)
        if not source.is_file() or not (chunks / "plan.json").is_file():
            return False
        target = self.chunks_dir(job_id)
        target.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, self.source(job_id))
        except OSError:
            shutil.copyfile(source, self.source(job_id))
        atomic_write_bytes(target / "plan.json", (chunks / "plan.json").read_bytes())
        for ckpt in chunks.iterdir():
            if ckpt.suffix == ".json" and ckpt.stem.isdigit():
                atomic_write_bytes(target / f"{ckpt.stem}.reuse.json", ckpt.read_bytes())
        fsync_dir(self.job_dir(job_id))
        return True

    def result(self, job_id: str) -> Path:
        """The transcript (`result.json`)."""
        return self.job_dir(job_id) / "result.json"

    def final(self, job_id: str) -> Path:
        """The job's terminal state (`final.json`): `{status, error_code, error_message, finished_at, attempt}`."""
        return self.job_dir(job_id) / "final.json"

    def write_final(
        self, job_id: str, *, status: str, finished_at: str, attempt: int, error_code: str = "", error_message: str = ""
    ) -> None:
        """Record the job's terminal state atomically, after the Redis transition to it succeeded.

        Skipped (no error) when the job's directory is gone (purged). Storage is the record
        (docs/ARCHITECTURE.md): the reconciler rebuilds a lost Redis job hash from `job.json` and this.

        Raises:
            OSError: the write failed.
        """
        if not self.job_dir(job_id).is_dir():
            return
        atomic_write_json(
            self.final(job_id),
            {
                "status": status,
                "finished_at": finished_at,
                "attempt": attempt,
                "error_code": error_code,
                "error_message": error_message,
            },
        )

    def work_dir(self, job_id: str) -> Path:
        """Scratch space of the worker for this job (decoded audio and the like)."""
        return self.job_dir(job_id) / "work"

    def chunks_dir(self, job_id: str) -> Path:
        """The chunk plan and per-chunk checkpoints (`plan.json`, `<n>.json`)."""
        return self.job_dir(job_id) / "chunks"

    def remove_job(self, job_id: str) -> None:
        """Delete everything stored for the job (no error if nothing is there)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def list_job_dirs(self) -> list[JobDir]:
        """Every job directory under `<root>/jobs` (names that cannot be job ids are left out).

        Returns:
            One `JobDir` per directory, in name order; a directory removed while listing is left out.
        """
        out: list[JobDir] = []
        try:
            entries = sorted(os.scandir(self.root / "jobs"), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for entry in entries:
            if not is_job_id(entry.name):
                continue
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
                names = set()
                with os.scandir(entry.path) as inner:
                    for e in inner:
                        names.add(e.name)
                        mtime = max(mtime, e.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
            out.append(JobDir(entry.name, Path(entry.path), mtime, "job.json" in names))
        return out

    def tmp_files(self) -> list[Path]:
        """Temp files of unfinished atomic writes (`.tmp-*`) in the root and in every job directory."""
        found = list(self.root.glob(f"{TMP_PREFIX}*"))
        found += self.root.glob(f"jobs/*/{TMP_PREFIX}*")
        found += self.root.glob(f"jobs/*/*/{TMP_PREFIX}*")
        return found

    def writable(self) -> bool:
        """True if a file can be created, synced and removed under the root."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=TMP_PREFIX) as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError:
            return False


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file in the same directory, fsync, rename.

    Raises:
        OSError: the write failed (the temp file is removed; `path` is untouched).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """`atomic_write_bytes` of compact UTF-8 JSON."""
    atomic_write_bytes(path, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
