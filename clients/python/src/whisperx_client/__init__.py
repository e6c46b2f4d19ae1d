"""Python client of whisperx-service: submit audio, follow a job's events, fetch its transcript.

`Client` (blocking) and `AsyncClient` (asyncio) speak the job API (`/v1/jobs`); results come as
typed objects (`Transcript`, `Segment`, `Word`, `Speaker`) or as srt/vtt/txt/tsv text; errors as
`ApiError` subclasses carrying the service's stable `code`. The `whisperx-client` command line is
`whisperx_client.cli`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from whisperx_client.async_client import AsyncClient
from whisperx_client.client import Client
from whisperx_client.errors import (
    ApiError,
    AuthenticationError,
    BadRequest,
    Conflict,
    JobFailed,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    TransportError,
    WaitTimeout,
    WhisperXError,
)
from whisperx_client.models import (
    FORMATS,
    STAGES,
    Accepted,
    Event,
    Job,
    JobError,
    Segment,
    Speaker,
    SpeakerTurn,
    Transcript,
    Word,
)

__all__ = [
    "FORMATS",
    "STAGES",
    "Accepted",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "Conflict",
    "Event",
    "Job",
    "JobError",
    "JobFailed",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "Segment",
    "ServerError",
    "Speaker",
    "SpeakerTurn",
    "Transcript",
    "TransportError",
    "WaitTimeout",
    "WhisperXError",
    "Word",
    "__version__",
]
