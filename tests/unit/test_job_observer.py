"""JobObserver: stage timings from progress reports, RTF, running gauge, log context.

Real prometheus-client metrics on a registry of their own and real structlog context vars; the
clock is the test's (seconds it chooses), so every observed duration is known exactly.
"""

from __future__ import annotations

import pytest
import structlog
from prometheus_client import CollectorRegistry

from whisperx_service.domain.jobs import Stage
from whisperx_service.worker.metrics import WorkerMetrics
from whisperx_service.worker.observe import JobObserver, count_end


class Clock:
    """Seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def _run_one_chunk_job(obs: JobObserver, clock: Clock, published: list[tuple[Stage, float, int]]) -> None:
    def publish(stage: Stage, pct: float, chunk: int = 0, chunks: int = 1, **extra: str) -> None:
        published.append((stage, pct, chunk))

    progress = obs.tracking(publish)
    obs.start()
    for stage, seconds in ((Stage.decode, 2.0), (Stage.transcribe, 5.0), (Stage.align, 1.0), (Stage.diarize, 3.0)):
        progress(stage, 0.0, 0, 1)
        progress(stage, 50.0, 0, 1)  # same stage and chunk: no new timing
        clock.now += seconds
    progress(Stage.diarize, 100.0, 0, 1, checkpoint="saved")  # the chunk's checkpoint ends diarize
    clock.now += 0.5  # between checkpoint and merge: no stage
    progress(Stage.merge, 0.0, 0, 1)
    clock.now += 0.25


def test_stage_durations_rtf_and_running(registry: CollectorRegistry) -> None:
    clock, published = Clock(), []
    obs = JobObserver("job-1", 1, WorkerMetrics(registry), clock)
    _run_one_chunk_job(obs, clock, published)
    assert _value(registry, "wxs_worker_jobs_running") == 1
    obs.succeeded(audio_s=23.5)
    obs.close()
    expected = {"decode": 2.0, "transcribe": 5.0, "align": 1.0, "diarize": 3.0, "merge": 0.25}
    for stage, seconds in expected.items():
        assert _value(registry, "wxs_stage_duration_seconds_count", stage=stage) == 1, stage
        assert _value(registry, "wxs_stage_duration_seconds_sum", stage=stage) == pytest.approx(seconds), stage
    assert _value(registry, "wxs_job_rtf_count") == 1
    assert _value(registry, "wxs_job_rtf_sum") == pytest.approx(11.75 / 23.5)
    assert _value(registry, "wxs_worker_audio_seconds_total") == 23.5
    assert _value(registry, "wxs_worker_jobs_running") == 0
    assert len(published) == 10, "every report still reaches the publisher"


def test_reused_work_is_not_timed_and_gives_no_rtf(registry: CollectorRegistry) -> None:
    clock = Clock()
    obs = JobObserver("job-2", 2, WorkerMetrics(registry), clock)
    progress = obs.tracking(lambda *a, **k: None)
    obs.start()
    progress(Stage.decode, 100.0, 0, 2)  # decoded audio of an earlier attempt
    clock.now += 1
    progress(Stage.transcribe, 0.0, 0, 2)  # the plan's VAD
    clock.now += 4
    progress(Stage.diarize, 100.0, 0, 2, checkpoint="reused")  # chunk 0 from its checkpoint
    progress(Stage.transcribe, 0.0, 1, 2)
    clock.now += 6
    obs.succeeded(audio_s=60)
    obs.close()
    assert _value(registry, "wxs_stage_duration_seconds_count", stage="decode") == 0
    assert _value(registry, "wxs_stage_duration_seconds_count", stage="transcribe") == 2
    assert _value(registry, "wxs_stage_duration_seconds_sum", stage="transcribe") == pytest.approx(10.0)
    assert _value(registry, "wxs_job_rtf_count") == 0, "a resumed attempt's time is not the job's"
    assert _value(registry, "wxs_worker_audio_seconds_total") == 60


def test_a_failing_job_ends_its_stage_and_stops_counting(registry: CollectorRegistry) -> None:
    clock = Clock()
    metrics = WorkerMetrics(registry)
    obs = JobObserver("job-3", 1, metrics, clock)
    progress = obs.tracking(lambda *a, **k: None)
    obs.start()
    progress(Stage.decode, 0.0)
    clock.now += 3
    obs.close()
    count_end("failed", "audio_decode_failed", metrics)
    count_end("succeeded", "", metrics)
    assert _value(registry, "wxs_stage_duration_seconds_sum", stage="decode") == 3
    assert _value(registry, "wxs_worker_jobs_running") == 0
    assert _value(registry, "wxs_worker_jobs_ended_total", status="failed", code="audio_decode_failed") == 1
    assert _value(registry, "wxs_worker_jobs_ended_total", status="succeeded", code="none") == 1


def test_log_context_follows_the_job(registry: CollectorRegistry) -> None:
    clock = Clock()
    obs = JobObserver("job-4", 3, WorkerMetrics(registry), clock)
    progress = obs.tracking(lambda *a, **k: None)
    obs.start()
    assert structlog.contextvars.get_contextvars() == {"job_id": "job-4", "attempt": 3}
    progress(Stage.align, 0.0, 2, 3)
    assert structlog.contextvars.get_contextvars()["stage"] == "align"
    obs.close()
    assert structlog.contextvars.get_contextvars() == {}
