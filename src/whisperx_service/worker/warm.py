"""Warm start: each pool process loads every model a job needs before it takes its first job.

Celery's prefork pool forks its processes first (CUDA must not be initialised before the fork), then
each one runs the `worker_process_init` handlers and only after them tells the main process it is
up (billiard's `WORKER_UP`); the main process writes no task to a process before that. So the
models load here, in `worker_process_init`, and then run once on a short real recording (a model's
first inference is slower than the next); the first job finds them loaded (its result's
`models_loaded` is empty) and runs as fast as the second. Celery kills a process that is not up
within `worker_proc_alive_timeout` (4 s by default); `make_celery` raises it to
WORKER_WARM_TIMEOUT_S. Loading is not a job: it claims nothing and publishes no event.

While it loads, and once warm, the process records itself in Redis (`store/workers.py`: device,
each model and whether it is loaded), which `/readyz` reads: a worker counts as ready only when
a pool process of it is warm.

A model that cannot be loaded stops the worker: one `worker_start_failed` log line names the model
and says what to do, the failure is recorded in Redis (so `/readyz` shows the reason; never a
server path), the process sends its worker's main process SIGINT (Celery's warm shutdown, which
lets the main process exit with code 1) and exits. Retrying would fail the same way, and a
worker that is up without its models would fail every job it takes. A job message the worker
had taken meanwhile goes back to the queue when it closes its broker connection.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import redis
import structlog
from celery.signals import task_postrun, worker_process_init, worker_process_shutdown

from whisperx_service.config import Settings
from whisperx_service.domain.workers import DeviceInfo, ProcessState, WorkerFailure, WorkerProcess
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.languages import supported_languages
from whisperx_service.store import workers as worker_store
from whisperx_service.store.keys import Keys
from whisperx_service.worker.models import ModelCache, get_model_cache
from whisperx_service.worker.needs import NeededModel, StartFailed, failure_reason, load, needed_models
from whisperx_service.worker.runtime import parent_worker_name, worker_name

log = structlog.get_logger(__name__)

#: Exit code of a pool process whose models cannot be loaded (its worker exits 1 too).
EXIT_MODEL_LOAD_FAILED = 1
#: Seconds of pyannote.audio's packaged sample (a two-speaker phone call, 16 kHz mono; speech from
#: 6.7 s, both speakers by 10 s, per its sample.rttm) that go through the whole pipeline at start.
WARMUP_S = 12.0


def device_info(device: str) -> DeviceInfo:
    """The device the models run on: CPU, or the current CUDA GPU's name and its memory in all and in use.

    The CUDA branch (`torch.cuda.get_device_name`, `torch.cuda.mem_get_info`, which counts every
    process on the GPU) cannot run on the CPU-only test machines; it is untested here.
    """
    if device != "cuda":
        return DeviceInfo(type="cpu")
    import torch

    index = int(torch.cuda.current_device())
    free, total = torch.cuda.mem_get_info(index)
    return DeviceInfo(
        type="cuda",
        index=index,
        name=str(torch.cuda.get_device_name(index)),
        memory_total_bytes=int(total),
        memory_used_bytes=int(total - free),
    )


def warmup_clip(directory: Path, seconds: float = WARMUP_S) -> Path | None:
    """Write the first `seconds` of pyannote.audio's sample recording to `directory/warmup.wav`.

    Returns:
        The clip's path, or None when the sample is not installed (pyannote.audio without it).
    """
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or spec.origin is None:
        return None
    sample = Path(spec.origin).parent / "sample" / "sample.wav"
    if not sample.is_file():
        return None
    clip = directory / "warmup.wav"
    with wave.open(str(sample), "rb") as src, wave.open(str(clip), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(int(seconds * src.getframerate())))
    return clip


def warm_up_inference(settings: Settings, cache: ModelCache) -> float | None:
    """Run the whole pipeline once on a short real recording (`warmup_clip`), in a temp directory.

    A model's first inference costs more than its later ones (measured on CPU here: the first 30 s
    job's VAD pass took 45-49 s, later ones 2.5-5 s; on CUDA, kernels load on first use), so without
    it the first job is several times slower than the second. Nothing is written to Redis or storage.

    Returns:
        The run's seconds, or None when no sample clip is installed (then nothing runs).
    Raises:
        Exception: whatever the pipeline raises (the caller logs it; the models are loaded anyway).
    """
    from whisperx_service.domain.jobs import JobOptions
    from whisperx_service.pipeline.plan import JobPaths
    from whisperx_service.pipeline.runner import run_pipeline

    with tempfile.TemporaryDirectory(prefix="wxs-warmup-") as tmp:
        clip = warmup_clip(Path(tmp))
        if clip is None:
            return None
        t = time.perf_counter()
        run_pipeline(
            clip,
            JobPaths(work=Path(tmp) / "work", chunks=Path(tmp) / "chunks"),
            JobOptions(language=settings.asr.language),
            cache,
            settings,
            lambda *_: None,
        )
        return round(time.perf_counter() - t, 2)


def warm_models(
    settings: Settings, cache: ModelCache | None = None, on_change: Callable[[WorkerProcess], None] | None = None
) -> WorkerProcess:
    """Load every model in `needed_models(settings)` into the process's cache (or `cache`), hub models
    first, then run each once (`warm_up_inference`).

    Args:
        on_change: called with this process's record before the first load, after each model, and
            once warm (after the warm-up run); the warm record lists the languages its ASR model
            transcribes (`pipeline/models/languages.py`, for `GET /v1/languages`).
    Returns:
        The process's record, `warm`, with its device and models.
    Raises:
        StartFailed: a model cannot be loaded (its reason names the model and what to do).
    """
    needed = needed_models(settings)
    try:
        cache = cache or get_model_cache(settings)
    except ModelLoadFailed as exc:  # the device cannot be resolved; the message names settings only
        raise StartFailed("settings", f"the worker cannot start: {exc.message}", exc.message) from exc
    record = WorkerProcess(
        name=worker_name(),
        state=ProcessState.loading,
        device=device_info(cache.device),
        models=[m.status(warm=False) for m in needed],
    )
    notify = on_change or (lambda _: None)
    notify(record)
    t = time.perf_counter()
    # Hub models first: one that is missing fails within a second instead of after the local loads.
    order = sorted(range(len(needed)), key=lambda i: needed[i].local)
    for i in order:
        model = needed[i]
        try:
            load(cache, model)
        except ModelLoadFailed as exc:
            record.state = ProcessState.failed
            notify(record)
            raise StartFailed(f"{model.stage}:{model.label}", failure_reason(model, settings), exc.message) from exc
        record.models[i] = model.status(warm=True)
        notify(record)
    record.load_s = round(time.perf_counter() - t, 2)
    try:
        record.languages = supported_languages(cache.asr(), settings)
    except Exception:  # GET /v1/languages then lacks this process; jobs are not affected
        log.exception("languages_unknown")
    try:
        record.warmup_s = warm_up_inference(settings, cache)
    except Exception:  # the models are loaded; a job would show the same error, with its id
        log.exception("warmup_failed")
    record.state = ProcessState.warm
    record.device = device_info(cache.device)
    notify(record)
    return record


_record: WorkerProcess | None = None  # this pool process's record once warm


def _settings() -> Settings | None:
    from celery import current_app

    settings: Settings | None = getattr(current_app, "wxs_settings", None)
    return settings


def _client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)


def _publish(settings: Settings, client: redis.Redis, record: WorkerProcess) -> None:
    """Record this pool process in its worker's hash; a Redis failure is logged, never raised (the
    worker still works; `/readyz` says not ready while Redis is down anyway)."""
    try:
        ttl = worker_store.state_ttl_s(settings.worker.heartbeat_s)
        worker_store.record_process(client, Keys.of(settings), parent_worker_name(), record, ttl)
    except redis.RedisError as exc:
        log.warning("worker_state_write_failed", error=str(exc))


@worker_process_init.connect
def _warm_at_start(**_: Any) -> None:
    """In each new pool process, before it tells the main process it is up: load the models."""
    global _record
    settings = _settings()
    if settings is None:  # an app that is not the service's (a test's own Celery app)
        return
    client = _client(settings)
    keys, worker = Keys.of(settings), parent_worker_name()
    try:
        log.info("models_loading", models=[m.label for m in _needed_or_empty(settings)])
        record = warm_models(settings, on_change=lambda r: _publish(settings, client, r))
    except StartFailed as exc:
        _stop_worker(client, keys, worker, exc)
    except Exception as exc:
        # Celery logs and drops a signal handler's exception and reports the process up: a pool
        # process that failed here for another reason would take jobs while listed as loading.
        unexpected = StartFailed(
            "start", "the worker cannot start: an unexpected error while loading its models; see the worker's log",
            repr(exc),
        )  # fmt: skip
        log.exception("worker_start_unexpected_error")
        _stop_worker(client, keys, worker, unexpected)
    _record = record
    log.info("models_warm", seconds=record.load_s, warmup_s=record.warmup_s, models=[m.name for m in record.models])
    try:
        worker_store.clear_failure(client, keys, worker)
    except redis.RedisError:
        pass
    finally:
        client.close()


def _needed_or_empty(settings: Settings) -> list[NeededModel]:
    try:
        return needed_models(settings)
    except StartFailed:
        return []


def _stop_worker(client: redis.Redis, keys: Keys, worker: str, exc: StartFailed) -> NoReturn:
    """Log the one line, record the failure, stop the worker (SIGINT: Celery's warm shutdown, exit 1), exit."""
    log.error("worker_start_failed", model=exc.model, reason=exc.reason, detail=exc.detail)
    try:
        failure = WorkerFailure(worker=worker, model=exc.model, reason=exc.reason, at=time.time())
        worker_store.record_failure(client, keys, failure)
    except redis.RedisError as err:
        log.warning("worker_failure_write_failed", error=str(err))
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        if stream is not None:
            stream.flush()
    # The main process's handler closes the pool (no new pool process is started) before this
    # process is gone: the signal goes first, the exit after a moment.
    os.kill(os.getppid(), signal.SIGINT)
    time.sleep(1.0)
    os._exit(EXIT_MODEL_LOAD_FAILED)


@task_postrun.connect
def _refresh_device(**_: Any) -> None:
    """After each job on a GPU: record the GPU's memory in use now (CUDA only; untested here)."""
    settings = _settings()
    if _record is None or settings is None or _record.device is None or _record.device.type != "cuda":
        return
    _record.device = device_info("cuda")
    client = _client(settings)
    try:
        _publish(settings, client, _record)
    finally:
        client.close()


@worker_process_shutdown.connect
def _forget_process(**_: Any) -> None:
    """As a pool process exits (recycled, or the worker stops): remove its record."""
    settings = _settings()
    if settings is None:
        return
    client = _client(settings)
    try:
        worker_store.remove_process(client, Keys.of(settings), parent_worker_name(), worker_name())
    except redis.RedisError:
        pass
    finally:
        client.close()
