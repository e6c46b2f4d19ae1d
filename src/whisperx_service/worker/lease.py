"""The lease keeper: a thread that renews a running job's lease, notices cancel requests, and gives
the job up when it stalls (the watchdog)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

import redis
import structlog

from whisperx_service.store.jobs import JobStore, Renewal
from whisperx_service.worker.stall import StallWatch, exit_process

log = structlog.get_logger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews the job's lease every `min(poll_s, lease_s / 3)` seconds until stopped.

    Each renewal also says whether DELETE asked the job to stop: then `cancel` is set (the
    `ProgressPublisher` watches it). `lost` is set when the renewal is refused (fenced).

    With a `watch` (the stall watchdog, `stall.py`), each tick first asks whether the job has gone
    WORKER_STALL_S without progress; then the keeper sets `gave_up` (the publisher and the task
    refuse to write anything more for the job), logs `job_stalled` (where the job stood, for how
    long), stops renewing and calls `on_stall` (default: `stall.exit_process`, which ends the pool
    process). The lease then runs out and the reconciler retries the job as for a lost worker.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        lease_s: float,
        poll_s: float,
        *,
        watch: StallWatch | None = None,
        on_stall: Callable[[], None] = exit_process,
    ) -> None:
        super().__init__(daemon=True, name=f"lease-{job_id[:8]}")
        self.store, self.job_id, self.attempt, self.lease_s = store, job_id, attempt, lease_s
        self.interval_s = min(poll_s, lease_s / 3)
        self.watch, self.on_stall = watch, on_stall
        self.stopped = threading.Event()
        self.cancel = threading.Event()
        self.gave_up = threading.Event()
        self.lost = False
        self.context = contextvars.copy_context()

    def start(self) -> None:
        """Start renewing, in the log context of the caller at this moment (job_id, attempt): a
        thread does not inherit context vars, and the attempt is bound after the keeper is made."""
        self.context = contextvars.copy_context()
        super().start()

    def run(self) -> None:
        """The thread's body: renew the lease every `interval_s` until stopped, lost or stalled."""
        self.context.run(self._renew_until_stopped)

    def _renew_until_stopped(self) -> None:
        while not self.stopped.wait(self.interval_s):
            if self.watch is not None and self.watch.stalled():
                self._give_up(self.watch)
                return
            try:
                renewal = self.store.renew(self.job_id, self.attempt, self.lease_s)
            except redis.RedisError:
                log.warning("lease_renew_failed", job_id=self.job_id)
                continue
            if renewal is Renewal.lost:
                self.lost = True
                return
            if renewal is Renewal.cancel_requested and not self.cancel.is_set():
                log.info("job_cancel_seen", job_id=self.job_id)
                self.cancel.set()

    def _give_up(self, watch: StallWatch) -> None:
        self.gave_up.set()
        stage, chunk, stage_percent = watch.where
        log.error(
            "job_stalled",
            job_id=self.job_id,
            attempt=self.attempt,
            stage=stage or None,
            chunk=chunk,
            stage_percent=stage_percent,
            idle_s=round(watch.idle_s(), 1),
            stall_s=watch.stall_s,
            action="lease no longer renewed; pool process exiting; the reconciler retries the job "
            "when the lease runs out",
        )
        self.on_stall()
