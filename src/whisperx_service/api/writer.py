"""Writing an upload's file part to disk: batched, positional, in threads, pipelined.

The multipart parser hands out zero-copy views of the received chunks; `SourceWriter` collects
them into batches of `WRITE_BATCH_BYTES` and writes each batch with `pwritev` in a worker thread
while the event loop keeps receiving (at most `WRITE_BATCHES_IN_FLIGHT` batches pending, so memory
stays bounded), and asks the kernel to start writeback of each written range at once
(`posix_fadvise(DONTNEED)`), so the final fsync finds little left to flush. `make bench` measures
the throughput against `dd ... conv=fsync` and the memory growth (bench/results.json).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread

from whisperx_service.storage.local import fsync_dir

#: The file is written in batches of about this many bytes (each batch: one pwritev in a thread).
WRITE_BATCH_BYTES = 1024 * 1024
#: Batches handed to threads and not yet written; when more are pending, receiving waits.
WRITE_BATCHES_IN_FLIGHT = 2
#: Most buffers in one batch (below IOV_MAX = 1024 of pwritev).
_MAX_IOV = 512


def _pwrite_all(fd: int, buffers: Sequence[memoryview], offset: int) -> None:
    """Write `buffers` at `offset` (bytes), retrying short writes; then start their writeback."""
    start, pending = offset, list(buffers)
    while pending:
        n = os.pwritev(fd, pending, offset)
        offset += n
        while pending and n >= len(pending[0]):
            n -= len(pending[0])
            pending.pop(0)
        if n:
            pending[0] = pending[0][n:]
    if hasattr(os, "posix_fadvise"):
        # On Linux, DONTNEED on dirty pages starts their writeback now instead of at the fsync.
        os.posix_fadvise(fd, start, offset - start, os.POSIX_FADV_DONTNEED)


class SourceWriter:
    """Writes the file part to one temp file: batched, positional, in threads, pipelined.

    `append` only queues a view (no copy, no I/O); `pump` hands a full batch to a thread and
    waits only when `WRITE_BATCHES_IN_FLIGHT` batches are still being written.
    """

    def __init__(self, path: Path, *, offset: int | None = None) -> None:
        """Open the file to write.

        Args:
            path: the file.
            offset: None = create `path` (it must not exist) and write from its start; a number of
                bytes = write into the existing file from there on (a resumable upload's append).
        Raises:
            OSError: the file exists (offset None) or does not (offset given), or cannot be opened.
        """
        self.path = path
        create = os.O_CREAT | os.O_EXCL if offset is None else 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | create, 0o640)
        self._offset = offset or 0  # where the next batch handed to a thread goes (bytes)
        self._batch: list[memoryview] = []
        self._batch_bytes = 0
        self._in_flight: deque[asyncio.Future[None]] = deque()

    def append(self, data: memoryview) -> None:
        """Queue bytes to be written after everything appended before."""
        self._batch.append(data)
        self._batch_bytes += len(data)

    async def pump(self, *, final: bool = False) -> None:
        """Start writing the batch when it is full (or `final`); wait if too many are in flight.

        Raises:
            OSError: an earlier batch failed to write.
        """
        if self._batch and (final or self._batch_bytes >= WRITE_BATCH_BYTES or len(self._batch) >= _MAX_IOV):
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, _pwrite_all, self.fd, self._batch, self._offset)
            self._in_flight.append(fut)
            self._offset += self._batch_bytes
            self._batch, self._batch_bytes = [], 0
        while self._in_flight and (final or len(self._in_flight) > WRITE_BATCHES_IN_FLIGHT):
            # Shielded and removed only once done: a write still running in its thread must stay
            # tracked until it ends, or `close` could close the descriptor under it.
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft()

    async def commit(self, target: Path) -> None:
        """Write what is left, fsync, close and rename the temp file to `target`.

        Raises:
            OSError: a write, the fsync or the rename failed.
        """
        await self.finish()
        os.replace(self.path, target)
        await anyio.to_thread.run_sync(fsync_dir, target.parent)

    async def finish(self) -> None:
        """Write what is left, fsync and close the file.

        Raises:
            OSError: a write or the fsync failed.
        """
        await self.pump(final=True)
        await anyio.to_thread.run_sync(os.fsync, self.fd)
        await self.close()

    async def close(self) -> None:
        """Wait for writes still running in threads (their errors are dropped), then close the file."""
        if self._in_flight:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(self._in_flight)  # never cancels them; errors stay in the futures
            for fut in self._in_flight:
                if not fut.cancelled():
                    fut.exception()  # retrieved: the first error already propagated, later ones are moot
            self._in_flight.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
