"""The stall watchdog's clock: when the running job last made progress, and whether it has stalled.

A job whose pool process keeps renewing its lease but makes no progress for WORKER_STALL_S (a
hang: a deadlock, a Redis call that never returns, a model that never ends its batch) would hold
its lease until the task's hard time limit, hours later. So the progress publisher (`progress.py`)
`beat`s a `StallWatch` at every progress point, and the lease keeper (`lease.py`) asks it on each
tick whether the job has stalled; when it has, the keeper stops renewing the lease and ends the
process (`exit_process`), and the reconciler retries the job as for a lost worker (it counts
towards WORKER_MAX_ATTEMPTS, so a file that stalls every worker ends `failed: worker_lost`).

A model's first load in a job makes no progress and does not count: the model cache wraps each
load in `not_counted()`, which holds the clock of the job this process runs (models loaded at
worker start run outside any job and have no clock at all); nor does the pool process's first
import of the ML stack, which the task holds the same way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Exit status of a pool process that gave its job up (EX_SOFTWARE, sysexits.h): Celery's main
#: process logs it with the WorkerLostError of the task and forks a new pool process.
STALL_EXIT_CODE = 70

_active: StallWatch | None = None  # the watch of the job this process runs, if any


class StallWatch:
    """When the job last made progress (monotonic seconds), and where it was then.

    Thread-safe: the job's thread beats and holds it, the lease keeper's thread reads it.

    Args:
        stall_s: seconds without progress after which the job has stalled (WORKER_STALL_S).
        clock: monotonic time in seconds (`time.monotonic`; tests pass their own).
    Raises:
        ValueError: `stall_s` is not positive.
    """

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.stall_s, self.clock = stall_s, clock
        self._lock = threading.Lock()
        self._last = clock()
        self._held = 0  # open `held()` blocks; the clock does not run while > 0
        #: The last progress point: (stage, chunk, stage percent); ("", 0, 0.0) before the first.
        self.where: tuple[str, int, float] = ("", 0, 0.0)

    def beat(self, stage: str, chunk: int, stage_percent: float) -> None:
        """The job made progress now: reached `stage_percent` (0-100) of `stage` in chunk `chunk`."""
        with self._lock:
            self._last = self.clock()
            self.where = (stage, chunk, stage_percent)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Stop the clock for the block (a step that publishes no progress and does not count);
        it runs on from zero when the block ends."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                self._last = self.clock()

    def idle_s(self) -> float:
        """Seconds since the last progress point (0 while held)."""
        with self._lock:
            return 0.0 if self._held else max(0.0, self.clock() - self._last)

    def stalled(self) -> bool:
        """True once the job has gone `stall_s` seconds without progress (outside held blocks)."""
        return self.idle_s() >= self.stall_s


@contextmanager
def watching(watch: StallWatch) -> Iterator[StallWatch]:
    """Make `watch` the one `not_counted` holds, for the job's duration in this process."""
    global _active
    _active = watch
    try:
        yield watch
    finally:
        _active = None


@contextmanager
def not_counted() -> Iterator[None]:
    """Hold the clock of the job this process runs (a model's first load); no-op outside a job."""
    watch = _active
    if watch is None:
        yield
        return
    with watch.held():
        yield


def exit_process() -> None:
    """End this pool process at once with `STALL_EXIT_CODE`, after flushing its logs.

    `os._exit` runs no exit handlers: the `worker_process_shutdown` hand-back (`shutdown.py`) must
    not run, since a released lease is a hand-back that does not count as an attempt, and a file
    that stalls every worker would then be retried for ever. The stalled thread cannot be
    stopped from outside, so the process goes with it.
    """
    sentry = sys.modules.get("sentry_sdk")
    if sentry is not None:
        sentry.flush(timeout=2.0)  # the error log line is Sentry's event, when Sentry is on
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(STALL_EXIT_CODE)
