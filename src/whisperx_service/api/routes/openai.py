"""OpenAI-compatible routes: `POST /v1/audio/transcriptions`, `POST /v1/audio/translations`,
`GET /v1/models`, `GET /v1/models/{id}`, so the official `openai` clients work against the service.

A request is a job like any other (same keys, quotas, queue, workers; listed by `GET /v1/jobs`):
the upload streams to storage (`api/submit.create_job`, the form of `api/openai_form.py`), then
the request waits on the job's events (`api/job_wait.py`) and answers in the requested
`response_format` (`transcripts/openai.py`). Each answer names its job in `x-job-id`.

- `stream=true`: `text/event-stream` of data-only events as OpenAI sends them. On a file of
  several chunks, chunk k's text is final once chunk k+1 is transcribed (its seam is decided,
  `pipeline/post/partial.py`): a `transcript.text.delta` with it is sent then
  (`transcripts.openai.LiveDeltas`). At the end come a delta with the rest of the text (one per
  segment when nothing was sent before: a one-chunk file, or a job that had already ended), the
  `transcript.text.segment` events when diarized (speakers are known only at the end) and one
  `transcript.text.done`; the deltas joined are its text. Between events, keep-alive comments. A
  job that fails sends one `{"error": {...}}` event (the SDK raises it).
- A client that disconnects before the end leaves its job to be cancelled after
  API_OPENAI_CANCEL_GRACE_S, unless another request (a retry with the same Idempotency-Key) waits
  on it.
- Errors take OpenAI's shape (`api/errors.py`); an answer about a job that already ran (it failed
  or was cancelled) carries `x-should-retry: false`, since a retry would run it again.
- `model`: there is no per-job model choice; every name runs the workers' ASR model.
- Translations: Whisper's `translate` task. An English-only model (`*.en`, `distil-*`; with an empty
  ASR_MODEL and ASR_DEVICE=cpu the packaged `tiny.en`) is refused with 400
  `translation_not_supported` before the upload; where the gateway cannot tell (ASR_DEVICE=auto),
  the job fails with that code in the worker and the answer is the same 400.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from whisperx_service.api.auth import Principal, PrincipalDep
from whisperx_service.api.deps import IdempotencyDep, JobsDep, SettingsDep, StorageDep
from whisperx_service.api.errors import openai_error_response
from whisperx_service.api.event_hub import EventHub
from whisperx_service.api.idempotency import Idempotent
from whisperx_service.api.job_wait import Waiters, ended_record, follow_job, wait_while_connected
from whisperx_service.api.openai_form import TRANSCRIBE_FORM, TRANSLATE_FORM, OpenAIRequest
from whisperx_service.api.routes.results import read_transcript
from whisperx_service.api.submit import create_job
from whisperx_service.api.upload import digest_upload
from whisperx_service.config import Device, Settings
from whisperx_service.domain.jobs import JobRecord, JobStatus
from whisperx_service.errors import (
    JobCancelled,
    JobFailure,
    ModelNotFound,
    ServiceError,
    TranslationNotSupported,
    all_codes,
)
from whisperx_service.logs import get_logger
from whisperx_service.storage.local import Storage
from whisperx_service.store import workers
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.idempotency import IdempotencyStore
from whisperx_service.transcripts.openai import LiveDeltas, Task, render_openai

log = get_logger(__name__)
router = APIRouter(tags=["openai"])

#: The ASR model a worker runs with an empty ASR_MODEL, by device (`pipeline/models/loaders.py`:
#: DEFAULT_GPU_ASR_MODEL on cuda, the packaged model, labelled PACKAGED_ASR_LABEL, on cpu).
DEFAULT_ASR_LABELS: dict[str, str] = {"cuda": "large-v3-turbo", "cpu": "tiny.en"}
#: The OpenAI model name every client knows; an alias of the workers' ASR model.
OPENAI_ALIAS = "whisper-1"
#: `owned_by` of the listed models.
OWNER = "whisperx-service"
#: `created` of the listed models: when this gateway process started (s since the epoch).
STARTED_S = int(time.time())
#: The header naming the job an answer comes from.
JOB_HEADER = "x-job-id"


def asr_labels(settings: Settings) -> list[str]:
    """The ASR model(s) the workers run, as clients see them: ASR_MODEL (a directory by its last
    component, never a path), else the default of ASR_DEVICE (both defaults when it is `auto`:
    the gateway does not see the workers' GPUs)."""
    name = settings.asr.model.strip()
    if name:
        local = name.startswith(("/", ".", "~"))
        return [name.rstrip("/").rsplit("/", 1)[-1] if local else name]
    if settings.asr.device == Device.auto:
        return sorted(DEFAULT_ASR_LABELS.values())
    return [DEFAULT_ASR_LABELS[settings.asr.device.value]]


def english_only(label: str) -> bool:
    """True for Whisper models that speak only English: `*.en` and distil-whisper's `distil-*`."""
    base = label.rsplit("/", 1)[-1].lower()
    return base.endswith(".en") or base.startswith("distil-")


def _model(label: str) -> dict[str, Any]:
    return {"id": label, "object": "model", "owned_by": OWNER, "created": STARTED_S}


async def served_asr_models(settings: Settings, jobs: AsyncJobStore) -> list[str]:
    """The ASR models the live workers hold warm (as `/readyz` lists them), sorted; when no live
    worker has reported one (none started yet, or Redis does not answer), `asr_labels(settings)`."""
    try:
        live = await workers.live_workers(jobs.r, jobs.keys, within_s=3 * settings.worker.heartbeat_s)
    except redis.RedisError:
        live = []
    names = {m.name for w in live for p in w.processes for m in p.models if m.stage == "asr" and m.warm}
    return sorted(names) or asr_labels(settings)


@router.get("/v1/models", summary="Models (OpenAI-compatible)")
async def list_models(_: PrincipalDep, settings: SettingsDep, jobs: JobsDep) -> dict[str, Any]:
    """`{object: "list", data: [{id, object: "model", owned_by, created}]}`: the ASR models the
    workers have loaded (see `served_asr_models`) and `whisper-1`, their alias."""
    served = await served_asr_models(settings, jobs)
    return {"object": "list", "data": [_model(m) for m in [*served, OPENAI_ALIAS]]}


@router.get("/v1/models/{model_id:path}", summary="One model (OpenAI-compatible)")
async def get_model(model_id: str, _: PrincipalDep, settings: SettingsDep, jobs: JobsDep) -> dict[str, Any]:
    """The model object of a listed model.

    Raises:
        ModelNotFound: not one of `GET /v1/models`.
    """
    if model_id not in [*await served_asr_models(settings, jobs), OPENAI_ALIAS]:
        raise ModelNotFound(f"model {model_id[:64]!r} is not served here; see GET /v1/models")
    return _model(model_id)


@router.post("/v1/audio/transcriptions", summary="Transcribe audio (OpenAI-compatible)", response_model=None)
async def transcriptions(
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    idempotency: IdempotencyDep,
) -> Response:
    """Run a job on the uploaded audio and answer with its transcript in OpenAI's shapes.

    Raises:
        InvalidParameter, Unsupported: a bad or unsupported parameter (400).
        And every error of POST /v1/jobs (`api/submit.create_job`), Idempotency-Key included.
    """
    return await _run(request, principal, settings, jobs, storage, idempotency, "transcribe")


@router.post("/v1/audio/translations", summary="Translate audio into English (OpenAI-compatible)", response_model=None)
async def translations(
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    jobs: JobsDep,
    storage: StorageDep,
    idempotency: IdempotencyDep,
) -> Response:
    """As `transcriptions`, with Whisper's `translate` task (English text).

    Raises:
        TranslationNotSupported: the ASR model is English-only (400).
        And the errors of `transcriptions`.
    """
    labels = asr_labels(settings)
    if labels and all(english_only(m) for m in labels):
        raise TranslationNotSupported(
            f"the ASR model ({', '.join(labels)}) is English-only; translation needs a multilingual model"
        )
    return await _run(request, principal, settings, jobs, storage, idempotency, "translate")


async def _run(
    request: Request,
    principal: Principal,
    settings: Settings,
    jobs: AsyncJobStore,
    storage: Storage,
    idempotency: IdempotencyStore,
    task: Task,
) -> Response:
    """Create the job (or find the Idempotency-Key's), then wait on it and answer."""
    spec = TRANSCRIBE_FORM if task == "transcribe" else TRANSLATE_FORM
    idem = await Idempotent.start(request, principal, idempotency, f"audio/{task}", settings.limits.idempotency_ttl_s)
    params: OpenAIRequest
    if idem is not None and idem.replay is not None:
        fingerprint, params = await digest_upload(request, settings.limits, spec)
        job_id = idem.check_replay(fingerprint).job_id
    else:
        async with idem.held() if idem is not None else contextlib.nullcontext():
            created = await create_job(request, principal, settings, jobs, storage, spec, lambda p: p.options)
            job_id, params = created.job_id, created.upload.form
            if idem is not None:
                await idem.complete(job_id, created.upload.fingerprint, 200, {"job_id": job_id})
    hub: EventHub = request.app.state.events
    if params.stream:
        return EventSourceResponse(
            _stream(request, hub, jobs, storage, job_id, params),
            ping=settings.api.sse_ping_s,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", JOB_HEADER: job_id},
        )
    record = await wait_while_connected(request, hub, job_id)
    if record is None:  # the client left; nobody reads an answer
        return Response(status_code=499)
    return await _answer(record, params, storage)


def _job_error(record: JobRecord) -> ServiceError:
    """The error of a job that ended without a result: its own code and message, or JobCancelled."""
    if record.status == JobStatus.cancelled:
        return JobCancelled(f"job {record.id} was cancelled before it ended")
    found = all_codes().get(record.error.code) if record.error is not None else None
    cls = found if found is not None and issubclass(found, JobFailure) else JobFailure
    return cls(record.error.message if record.error is not None else JobFailure.public_message)


def _error_answer(err: ServiceError, job_id: str) -> JSONResponse:
    """OpenAI's error body for a job that ran: a retry would run it again (`x-should-retry: false`)."""
    headers = {**err.headers, "x-should-retry": "false", JOB_HEADER: job_id}
    return openai_error_response(err.code, err.message, err.http_status, headers=headers)


async def _answer(record: JobRecord, params: OpenAIRequest, storage: Storage) -> Response:
    """The response for an ended job in `params.response_format`."""
    if record.status != JobStatus.succeeded:
        return _error_answer(_job_error(record), record.id)
    transcript = await anyio.to_thread.run_sync(read_transcript, storage.result(record.id))
    body, media_type = render_openai(
        transcript,
        params.response_format,
        task=params.task,
        granularities=params.granularities,
        temperature=params.temperature,
    )
    headers = {JOB_HEADER: record.id}
    if isinstance(body, dict):
        return JSONResponse(body, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def _stream(
    request: Request, hub: EventHub, jobs: AsyncJobStore, storage: Storage, job_id: str, params: OpenAIRequest
) -> AsyncIterator[ServerSentEvent]:
    """The stream's events (see the module docstring). A client that leaves first (the generator is
    cancelled) leaves the job to `Waiters.abandon`."""
    waiters = Waiters(request, job_id)
    await waiters.enter()
    live = LiveDeltas()
    try:
        async for event in follow_job(hub, jobs, job_id):
            delta = live.feed(event.fields)
            if delta is not None:
                yield ServerSentEvent(data=json.dumps(delta))
        record = await ended_record(jobs, job_id)
    except BaseException:
        waiters.abandon()
        raise
    await waiters.leave()
    if record.status != JobStatus.succeeded:
        err = _job_error(record)
        body = {"error": {"message": err.message, "type": "server_error", "param": None, "code": err.code}}
        yield ServerSentEvent(data=json.dumps(body))
        return
    transcript = await anyio.to_thread.run_sync(read_transcript, storage.result(job_id))
    events, whole = live.finish(transcript, diarized=params.diarized)
    if not whole:
        log.warning("stream_deltas_not_a_prefix", job_id=job_id)
    for event_body in events:
        yield ServerSentEvent(data=json.dumps(event_body))
