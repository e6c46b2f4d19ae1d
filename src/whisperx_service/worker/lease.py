"""The lease keeper: a thread that renews a running job's lease and notices cancel requests."""

from __future__ import annotations

import contextvars
import threading

import redis
import structlog

from whisperx_service.store.jobs import JobStore, Renewal

log = structlog.get_logger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews the job's lease every `min(poll_s, lease_s / 3)` seconds until stopped.

    Each renewal also says whether DELETE asked the job to stop: then `cancel` is set (the
    `ProgressPublisher` watches it). `lost` is set when the renewal is refused (fenced).
    """

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease_s: float, poll_s: float) -> None:
        super().__init__(daemon=True, name=f"lease-{job_id[:8]}")
        self.store, self.job_id, self.attempt, self.lease_s = store, job_id, attempt, lease_s
        self.interval_s = min(poll_s, lease_s / 3)
        self.stopped = threading.Event()
        self.cancel = threading.Event()
        self.lost = False
        # The creating thread's log context (job_id, attempt): a thread does not inherit context vars.
        self.context = contextvars.copy_context()

    def run(self) -> None:
        self.context.run(self._renew_until_stopped)

    def _renew_until_stopped(self) -> None:
        while not self.stopped.wait(self.interval_s):
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
