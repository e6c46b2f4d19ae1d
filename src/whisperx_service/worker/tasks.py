"""The transcription task: claim the job, run the pipeline, write the result, end the job.

The task id is the job id. A delivery first claims the job's lease in Redis: a copy that finds
the job finished or leased by a live worker returns without touching any model. While it works,
the lease keeper (`lease.py`) renews the lease; every write carries the claimed attempt number
and is refused when it no longer matches (fencing), and then the task stops. The keeper also
learns that DELETE asked the job to stop; the next progress call (`progress.py`) then raises
`JobCancelled` and the task ends the job `cancelled`. The keeper is also the stall watchdog
(`stall.py`): a job that makes no progress for WORKER_STALL_S is given up, its lease no longer
renewed and its pool process ended, and the reconciler retries it as for a lost worker; an attempt
given up writes nothing more (its progress calls raise `JobLost`, and the result is written only
while this process still holds the job's lease). Whoever ends the job writes its terminal
record (`final.json`). Heartbeats (`heartbeat.py`) and the hand-back at shutdown (`shutdown.py`)
are connected to Celery's signals when this module is imported.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import sentry_sdk
import structlog
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from whisperx_service.broker.celery_app import TRANSCRIBE_TASK
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobStatus, Stage
from whisperx_service.domain.script import Script
from whisperx_service.errors import JobCrashed, JobFailure, TimeLimit
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.worker import exporter, heartbeat, shutdown, warm  # noqa: F401  (connects their signal handlers)
from whisperx_service.worker.announce import announce
from whisperx_service.worker.attempt import Attempt, write_final
from whisperx_service.worker.lease import LeaseKeeper
from whisperx_service.worker.models import get_model_cache
from whisperx_service.worker.observe import JobObserver, count_end
from whisperx_service.worker.progress import JobCancelled, JobLost, ProgressPublisher
from whisperx_service.worker.runtime import get_store, worker_name
from whisperx_service.worker.stall import StallWatch, watching

if TYPE_CHECKING:
    from whisperx_service.pipeline.stages.chunk import ChunkResult

log = structlog.get_logger(__name__)


@shared_task(name=TRANSCRIBE_TASK, bind=True, acks_late=True)
def transcribe(self: Task, job_id: str) -> str:
    """Run one job. Returns the job's final status (or `skipped:<why>` for a copy that does nothing)."""
    settings: Settings = self.app.wxs_settings
    store, storage = get_store(settings), Storage(settings.storage.root)
    bound = log.bind(job_id=job_id)
    claim = store.claim(job_id, worker_name(), settings.worker.lease_s, max_attempts=settings.worker.max_attempts)
    if claim.outcome == "ended":  # cancel requested, or its workers were lost WORKER_MAX_ATTEMPTS times
        write_final(store, storage, job_id, bound)
        announce(store, job_id, "ended", bound)
        ended = store.get(job_id)
        count_end(claim.status, ended.error.code if ended is not None and ended.error else "")
        shutil.rmtree(storage.work_dir(job_id), ignore_errors=True)
        bound.warning("job_ended_on_claim", status=claim.status, attempt=claim.attempt)
        return claim.status
    if claim.outcome != "claimed":
        bound.info("job_not_claimed", outcome=claim.outcome, status=claim.status)
        return f"skipped:{claim.outcome}"

    record = store.get(job_id)
    assert record is not None
    options, bound = record.options, bound.bind(attempt=claim.attempt)
    script_file = storage.script(job_id)
    script = Script.model_validate_json(script_file.read_bytes()) if script_file.exists() else None
    bound.info("job_started")
    watch = StallWatch(settings.worker.stall_s)
    keeper = LeaseKeeper(
        store, job_id, claim.attempt, settings.worker.lease_s, settings.worker.cancel_poll_s, watch=watch
    )
    attempt = Attempt(store, storage, job_id, claim.attempt, bound, gave_up=keeper.gave_up)
    observer = JobObserver(job_id, claim.attempt)
    observer.start()  # job_id and attempt on every log line and Sentry event from here on
    keeper.start()
    publish = observer.tracking(
        ProgressPublisher(
            store,
            job_id,
            claim.attempt,
            options,
            settings.worker.progress_min_interval_s,
            keeper.cancel,
            gave_up=keeper.gave_up,
            watch=watch,
            timed_script=script is not None and script.timed,
        )
    )

    def on_decoded(duration_s: float) -> None:
        store.update(job_id, claim.attempt, duration_s=round(duration_s, 3))

    aligns = options.align or options.task == "align"
    last_stage = Stage.diarize if options.diarize else Stage.align if aligns else Stage.transcribe

    plan_chunks = [1]  # the plan's number of chunks, as on_chunk last heard it

    def on_chunk(result: ChunkResult, reused: bool, chunks: int) -> None:
        plan_chunks[0] = chunks
        # One event per chunk says whether it was computed now or reused from its checkpoint.
        bound.info("chunk_done", chunk=result.chunk.index, reused=reused, computed_by_attempt=result.attempt)
        publish(last_stage, 100.0, result.chunk.index, chunks, checkpoint="reused" if reused else "saved")

    def on_final_text(k: int, text: str, language: str) -> None:
        # The text of chunk k is final once chunk k+1 is done: a progress event carries it, so a
        # stream (the OpenAI one's deltas) can send it before the job ends.
        publish(last_stage, 100.0, k + 1, plan_chunks[0], final_chunk=str(k), final_text=text, language=language)

    def still_ours() -> None:
        # Checked right before the result is written: given up by the watchdog, or the lease is no
        # longer this process's (it ran out and another attempt claimed the job), then stop here.
        status, owner, attempt_now = store.lease(job_id)
        if keeper.gave_up.is_set() or (status, owner, attempt_now) != ("running", worker_name(), claim.attempt):
            raise JobLost(f"job {job_id} attempt {claim.attempt} no longer holds the lease")

    try:
        # Imported here: the gateway imports this module's task name without the ML stack. The first
        # import in a pool process (torch, WhisperX: seconds, a minute on a busy machine) is the
        # process's start-up, not the job's progress: the stall watchdog does not count it.
        with watch.held():
            from whisperx_service.pipeline.plan import JobPaths
            from whisperx_service.pipeline.runner import run_pipeline

            models = get_model_cache(settings)
        with watching(watch):
            transcript = run_pipeline(
                storage.source(job_id),
                JobPaths(work=storage.work_dir(job_id), chunks=storage.chunks_dir(job_id)),
                options,
                models,
                settings,
                publish,
                attempt=claim.attempt,
                on_decoded=on_decoded,
                on_chunk=on_chunk,
                on_final_text=on_final_text,
                script=script,
            )
        publish(Stage.merge, 100.0, transcript.chunks - 1, transcript.chunks)
        still_ours()
        atomic_write_json(storage.result(job_id), transcript.model_dump(mode="json"))
        # What the job list shows of the result, kept in the job hash so listing reads no files.
        store.update(
            job_id, claim.attempt, result_language=transcript.language, result_speakers=len(transcript.speakers)
        )
        observer.succeeded(transcript.duration)
        bound.info("job_succeeded", duration_s=transcript.duration, timings=transcript.timings)
        return attempt.end(JobStatus.succeeded)
    except JobCancelled:
        bound.info("job_cancelled")
        return attempt.end(JobStatus.cancelled)
    except JobLost as e:
        bound.warning("job_lost", reason=str(e))
        return "skipped:lost"
    except JobFailure as e:
        bound.warning("job_failed", code=e.code, message=e.message)
        return attempt.end(JobStatus.failed, e)
    except SoftTimeLimitExceeded:
        limit = settings.worker.task_soft_time_limit_s
        return attempt.end(JobStatus.failed, TimeLimit(f"the job ran longer than {limit} s"))
    except Exception:
        # To Sentry with the job's tags (job_id, attempt, stage); Sentry's logging integration then
        # drops the same exception logged below (its dedupe).
        sentry_sdk.capture_exception()
        bound.exception("job_crashed")
        return attempt.end(
            JobStatus.failed, JobCrashed("the job failed unexpectedly; the worker's log has the details")
        )
    finally:
        keeper.stopped.set()
        attempt.close()
        observer.close()
