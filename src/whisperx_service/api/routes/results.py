"""`GET /v1/jobs/{id}/result?format=json|srt|vtt|txt|tsv[&speaker_names=...]`: the transcript of a
succeeded job, its speakers optionally renamed (`transcripts/speakers.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio.to_thread
import structlog
from fastapi import APIRouter, Query, Response

from whisperx_service.api.auth import PrincipalDep, visible_job
from whisperx_service.api.deps import JobIdDep, JobsDep, StorageDep
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.domain.transcript import Transcript
from whisperx_service.errors import InvalidSpeakerNames, JobNotFinished, ResultMissing
from whisperx_service.transcripts.formats import ResultFormat, render
from whisperx_service.transcripts.speakers import parse_speaker_names, rename_speakers

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def read_transcript(path: Path) -> Transcript:
    """The `Transcript` in a job's `result.json`.

    Raises:
        ResultMissing: the file is gone.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultMissing("the job succeeded but its result file is missing") from None
    return Transcript.model_validate_json(data)


@router.get(
    "/{job_id}/result",
    summary="Transcript of a succeeded job",
    responses={
        200: {
            "content": {
                "application/json": {},
                "text/plain": {},
                "text/vtt": {},
                "application/x-subrip": {},
                "text/tab-separated-values": {},
            },
            "description": "The transcript; non-JSON formats come as an attachment",
        },
        400: {"description": "invalid_speaker_names"},
        404: {"description": "job_not_found"},
        409: {"description": "job_not_finished"},
    },
)
async def job_result(
    job_id: JobIdDep,
    principal: PrincipalDep,
    jobs: JobsDep,
    storage: StorageDep,
    format: Annotated[ResultFormat, Query(description="Output format")] = ResultFormat.json,
    speaker_names: Annotated[
        str | None,
        Query(
            description='Names for the speakers, a JSON object of label -> name, e.g. {"SPEAKER_00": "Alice"}; '
            "every format then carries the names instead of the labels"
        ),
    ] = None,
) -> Response:
    """The transcript of a succeeded job, rendered in `format`, with `speaker_names` applied.

    Raises:
        InvalidSpeakerNames: `speaker_names` is malformed (checked first, before the job is looked
            up), or names a speaker the transcript lacks, or gives two speakers one name.
        JobNotFound: no such job, or another key owns it.
        JobNotFinished: the job has not succeeded (the message names its status).
        ResultMissing: the job succeeded but `result.json` is gone.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    names: dict[str, str] = {}
    if speaker_names is not None:
        try:
            names = parse_speaker_names(speaker_names)
        except ValueError as e:
            raise InvalidSpeakerNames(str(e)) from None
    record = await visible_job(jobs, job_id, principal)
    if record.status != JobStatus.succeeded:
        raise JobNotFinished(f"job {job_id} is {record.status.value}; the result exists once it has succeeded")
    transcript = await anyio.to_thread.run_sync(read_transcript, storage.result(job_id))
    try:
        transcript = rename_speakers(transcript, names)
    except ValueError as e:
        raise InvalidSpeakerNames(str(e)) from None
    body, media_type = render(transcript, format.value)
    headers = {}
    if format != ResultFormat.json:
        headers["Content-Disposition"] = f'attachment; filename="{job_id}.{format.value}"'
    return Response(body, media_type=media_type, headers=headers)
