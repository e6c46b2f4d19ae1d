"""Progress publishing: stage progress mapped into job percent, throttled, fenced by attempt."""

from __future__ import annotations

import threading
import time

from whisperx_service.domain.jobs import CHUNK_STAGES, JobOptions, Stage, job_percent, skipped_stages
from whisperx_service.logs import get_logger
from whisperx_service.store.jobs import JobStore
from whisperx_service.worker.announce import announce
from whisperx_service.worker.stall import StallWatch

log = get_logger(__name__)


class JobLost(Exception):
    """This worker no longer owns the job (lease taken over, cancelled, finished elsewhere, or
    given up by the stall watchdog)."""


class JobCancelled(Exception):
    """DELETE asked the running job to stop; raised at the next progress point."""


class ProgressPublisher:
    """Maps stage progress into job percent and publishes it, throttled, fenced by attempt.

    Publishes at every stage or chunk start and at the end (100) of each, then when the job
    percent rose by >= 1, or the stage percent of a stage run once per job (decode, vad, merge) rose
    by >= 1, and at least `min_interval_s` passed (docs/ARCHITECTURE.md: about one event per second
    or per percent). Each event carries `chunk`, `chunks` and `eta_s`: the remaining time estimated
    from the rate of progress made by this attempt so far (work reused from checkpoints does not
    count).

    Every call first checks `cancel` (set by the `LeaseKeeper`; no Redis round trip), so a
    cancelled job stops at its next progress point, throttled or not; and `gave_up` (the keeper's
    stall watchdog gave the job up), so a given-up attempt writes nothing more. A call that moves
    the job on (a new stage or chunk, or a higher stage percent) beats `watch`, the watchdog's clock.
    The stages the job does not run (`skipped_stages`; `timed_script`: an `align` job whose
    transcript has segment times) take no share of the percent.

    Raises (from `__call__`):
        JobCancelled: the job was asked to stop.
        JobLost: the store refused the write (another attempt owns the job, or it is terminal), or
            the watchdog gave the job up.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        options: JobOptions,
        min_interval_s: float,
        cancel: threading.Event | None = None,
        *,
        gave_up: threading.Event | None = None,
        watch: StallWatch | None = None,
        timed_script: bool = False,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.min_interval_s = min_interval_s
        self.cancel = cancel or threading.Event()
        self.gave_up = gave_up or threading.Event()
        self.watch = watch
        self.skipped = skipped_stages(options, timed_script=timed_script)
        self.last_key: tuple[Stage, int] | None = None
        self.last_percent = -1.0
        self.last_stage_percent = -1.0  # of `last_key`, as last published
        self.last_time = 0.0
        self.beat_at: tuple[Stage, int, float] | None = None  # the last progress point the watch was told of
        self.rate_origin: tuple[float, float] | None = None  # (monotonic s, percent) when work began
        # webhook_events=progress: one `stage.<name>` webhook event per stage the job enters
        self.stage_events = options.webhook_events == "progress"
        self.announced: set[Stage] = set()

    def eta_s(self, percent: float, now: float) -> float | None:
        """Seconds left at the rate this attempt has made progress (None until it can tell)."""
        if self.rate_origin is None:
            self.rate_origin = (now, percent)
            return None
        t0, p0 = self.rate_origin
        if percent - p0 < 1.0 or now - t0 < 1.0:
            return None
        return round((now - t0) * (100.0 - percent) / (percent - p0), 1)

    def __call__(self, stage: Stage, stage_percent: float, chunk: int = 0, chunks: int = 1, **extra: str) -> None:
        if self.gave_up.is_set():
            raise JobLost(f"job {self.job_id} attempt {self.attempt} was given up here (stalled)")
        if self.cancel.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")
        stage_percent = min(max(float(stage_percent), 0.0), 100.0)  # callbacks may pass numpy scalars
        self._beat(stage, chunk, stage_percent)
        pct = job_percent(stage, stage_percent, self.skipped, chunk=chunk, chunks=chunks)
        now = time.monotonic()
        key = (stage, chunk)
        new_step = key != self.last_key or bool(extra)
        ended = stage_percent >= 100.0 > self.last_stage_percent
        risen = pct >= self.last_percent + 1.0 or (
            stage not in CHUNK_STAGES and stage_percent >= self.last_stage_percent + 1.0
        )
        if not (new_step or ended) and (not risen or now - self.last_time < self.min_interval_s):
            return
        eta = self.eta_s(pct, now) if stage != Stage.decode else None
        ok = self.store.progress(
            self.job_id,
            self.attempt,
            stage,
            pct,
            stage_percent=round(stage_percent, 1),
            chunk=chunk,
            chunks=chunks,
            eta_s=eta,
            **extra,
        )
        if not ok:
            raise JobLost(f"job {self.job_id} attempt {self.attempt} is no longer running here")
        self.last_key, self.last_percent, self.last_time = key, pct, now
        self.last_stage_percent = stage_percent
        if self.stage_events and stage not in self.announced:
            self.announced.add(stage)
            announce(self.store, self.job_id, f"stage.{stage.value}", log)

    def _beat(self, stage: Stage, chunk: int, stage_percent: float) -> None:
        """Tell the watch when the job moved on: a new stage or chunk, or a higher stage percent."""
        if self.watch is None:
            return
        at = self.beat_at
        if at is None or (at[0], at[1]) != (stage, chunk) or stage_percent > at[2]:
            self.beat_at = (stage, chunk, stage_percent)
            self.watch.beat(stage.value, chunk, stage_percent)
