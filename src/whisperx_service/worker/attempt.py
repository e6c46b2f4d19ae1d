"""One claimed attempt at a job: how it ends (fenced), what it writes when it does, what it cleans up."""

from __future__ import annotations

import shutil
import threading

from structlog.typing import FilteringBoundLogger

from whisperx_service.domain.jobs import JobStatus
from whisperx_service.errors import JobFailure
from whisperx_service.storage.local import Storage
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.records import final_record
from whisperx_service.worker.announce import announce
from whisperx_service.worker.observe import count_end
from whisperx_service.worker.shutdown import free_working_memory

#: What the task returns for a copy that found the job no longer its own.
FENCED = "skipped:fenced"


def write_final(store: JobStore, storage: Storage, job_id: str, log: FilteringBoundLogger) -> None:
    """Write the terminal record `final.json` of an ended job from its Redis record; never raises OSError.

    Redis has the state either way; a missing final.json only matters to a rebuild from storage,
    and retention writes it later.
    """
    final = store.get(job_id)
    if final is None or not final.status.terminal:
        return
    try:
        storage.write_final(job_id, **final_record(final))
    except OSError as e:
        log.error("final_write_failed", error=str(e))


class Attempt:
    """The attempt `attempt` of job `job_id`, claimed by this process.

    `end` finishes the job as this attempt (refused when another attempt owns it: fencing, or
    when `gave_up` is set: the stall watchdog gave the attempt up, and the job is the reconciler's),
    writes `final.json` and counts the job in `wxs_worker_jobs_ended_total`; `close` removes the
    decoded audio once the job ended here (it is only kept for a rerun) and gives back the memory of
    a cancelled pipeline.
    """

    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        job_id: str,
        attempt: int,
        log: FilteringBoundLogger,
        gave_up: threading.Event | None = None,
    ) -> None:
        self.store, self.storage, self.job_id, self.attempt, self.log = store, storage, job_id, attempt, log
        self.gave_up = gave_up or threading.Event()
        self.ended = False
        self.cancelled = False

    def end(self, status: JobStatus, error: JobFailure | None = None) -> str:
        """Finish the job with `status` (and `error` when failed).

        Returns:
            `status`'s value, or `FENCED` when the store refused (the job is not this attempt's)
            or the attempt was given up.
        """
        if self.gave_up.is_set():
            self.log.warning("job_finish_refused", status=status.value, reason="given up (stalled)")
            return FENCED
        self.ended = self.store.finish(
            self.job_id,
            status,
            attempt=self.attempt,
            error_code=error.code if error else "",
            # Fixed per code: the raise site's message (paths, exception text) is only logged.
            error_message=error.public_message if error else "",
        )
        self.cancelled = status == JobStatus.cancelled
        if not self.ended:
            self.log.warning("job_finish_refused", status=status.value)
            return FENCED
        count_end(status.value, error.code if error else "")
        write_final(self.store, self.storage, self.job_id, self.log)
        announce(self.store, self.job_id, "ended", self.log)
        return status.value

    def close(self) -> None:
        """Clean up after the attempt, however it stopped."""
        if self.ended:
            shutil.rmtree(self.storage.work_dir(self.job_id), ignore_errors=True)
        if self.cancelled:
            free_working_memory()
