"""`GET /v1/jobs/{id}/result?format=json|srt|vtt|txt|tsv`: the transcript of a succeeded job."""

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
from whisperx_service.errors import JobNotFinished, ResultMissing
from whisperx_service.transcripts.formats import ResultFormat, render

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
) -> Response:
    """The transcript of a succeeded job, rendered in `format`.

    Raises:
        JobNotFound: no such job, or another key owns it.
        JobNotFinished: the job has not succeeded (the message names its status).
        ResultMissing: the job succeeded but `result.json` is gone.
    """
    structlog.contextvars.bind_contextvars(job_id=job_id)
    record = await visible_job(jobs, job_id, principal)
    if record.status != JobStatus.succeeded:
        raise JobNotFinished(f"job {job_id} is {record.status.value}; the result exists once it has succeeded")
    transcript = await anyio.to_thread.run_sync(read_transcript, storage.result(job_id))
    body, media_type = render(transcript, format.value)
    headers = {}
    if format != ResultFormat.json:
        headers["Content-Disposition"] = f'attachment; filename="{job_id}.{format.value}"'
    return Response(body, media_type=media_type, headers=headers)
