"""Jobs: status, stages, the options a user sends, and the record the service keeps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from whisperx_service.domain.keys import KeyOwner


class JobStatus(StrEnum):
    """Lifecycle of a job. It only moves forward: queued -> running -> one terminal status."""

    queued = "queued"  # accepted and stored; waiting for a worker
    running = "running"  # a worker holds the lease and works on it
    succeeded = "succeeded"  # result.json is written (terminal)
    failed = "failed"  # ended with an error code and message (terminal)
    cancelled = "cancelled"  # cancelled by the user (terminal)

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed and cancelled: such a job never changes again."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Stage(StrEnum):
    """Pipeline stages, in order. Their weights map each stage's 0-100 into the job's 0-100."""

    fetch = "fetch"  # the source is fetched from its `url` (outbound worker; the job is still queued)
    decode = "decode"  # ffmpeg to 16 kHz mono PCM
    vad = "vad"  # speech regions of the whole file (once per job), grouped into ASR windows; the job's language
    transcribe = "transcribe"  # faster-whisper over the chunk's ASR windows
    align = "align"  # word timestamps
    diarize = "diarize"  # pyannote speaker turns
    merge = "merge"  # speakers to words, segments split at speaker turns, result written


#: Share of the job's 0-100 % each stage takes, after the stages' cost on CPU (docs/MODELS.md:
#: diarization is the slowest stage, transcription next; the VAD pass, about 7 s per 5 min of audio,
#: about a twentieth of a job). Sums to 100.
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.fetch: 0.0,  # before the job is queued for a worker; its progress is in bytes, not percent
    Stage.decode: 5.0,
    Stage.vad: 5.0,
    Stage.transcribe: 35.0,
    Stage.align: 15.0,
    Stage.diarize: 35.0,
    Stage.merge: 5.0,
}


#: Stages run once per chunk (the rest run once per job).
CHUNK_STAGES: tuple[Stage, ...] = (Stage.transcribe, Stage.align, Stage.diarize)
#: Stages run once per job before the first chunk, in order.
LEADING_STAGES: tuple[Stage, ...] = (Stage.decode, Stage.vad)


def job_percent(
    stage: Stage,
    stage_percent: float,
    skipped: frozenset[Stage] = frozenset(),
    *,
    chunk: int = 0,
    chunks: int = 1,
) -> float:
    """Map a stage's progress (0-100) into the job's progress (0-100).

    Decode and vad take the first `STAGE_WEIGHTS[decode] + STAGE_WEIGHTS[vad]` %, merge the last
    `STAGE_WEIGHTS[merge]` %; the rest is split evenly over the chunks, and inside a chunk by the
    weights of the per-chunk stages it runs (skipped stages, e.g. align or diarize turned off,
    take no share).

    Args:
        stage: the stage running now.
        stage_percent: its progress, clamped to [0, 100].
        skipped: stages this job does not run.
        chunk: index of the chunk being processed (0-based; per-chunk stages only).
        chunks: number of chunks (>= 1).
    Returns:
        The job's percent in [0, 100], rounded to 0.1.
    """
    if stage == Stage.fetch:
        return 0.0
    p = min(max(stage_percent, 0.0), 100.0) / 100.0
    first, last = sum(STAGE_WEIGHTS[s] for s in LEADING_STAGES), STAGE_WEIGHTS[Stage.merge]
    if stage in LEADING_STAGES:
        before = sum(STAGE_WEIGHTS[s] for s in LEADING_STAGES[: LEADING_STAGES.index(stage)])
        return round(before + STAGE_WEIGHTS[stage] * p, 1)
    if stage == Stage.merge:
        return round(100.0 - last + last * p, 1)
    active = [s for s in CHUNK_STAGES if s not in skipped or s == stage]
    total = sum(STAGE_WEIGHTS[s] for s in active)
    before = sum(STAGE_WEIGHTS[s] for s in active[: active.index(stage)])
    within = (before + STAGE_WEIGHTS[stage] * p) / total
    chunks = max(chunks, 1)
    done = (min(max(chunk, 0), chunks - 1) + within) / chunks
    return round(first + (100.0 - first - last) * done, 1)


#: Longest URL accepted (webhook_url, a job's source url), in characters.
MAX_URL_CHARS = 2048


def check_http_url(value: str) -> str:
    """`value` stripped, when it is an absolute http or https URL with a host and no user info.

    Only the form is checked here; where it may lead is checked when the service connects
    (outbound requests refuse private addresses unless OUTBOUND_ALLOW_PRIVATE).

    Raises:
        ValueError: another scheme, no host, credentials in the URL, or control characters.
    """
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not carry a user name or password")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("the URL must not contain spaces or control characters")
    try:
        _ = parts.port  # a port out of range raises ValueError
    except ValueError:
        raise ValueError("the URL's port is not a number from 0 to 65535") from None
    return url


class JobOptions(BaseModel):
    """What the user asked for. Every field is optional in the request; defaults are below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = Field(
        None, description="ISO 639-1 code (e.g. `en`); None or `auto` = detect from the speech"
    )
    align: bool = Field(True, description="Compute word-level timestamps")
    diarize: bool = Field(True, description="Label speakers")
    num_speakers: int | None = Field(None, ge=1, le=64, description="Exact number of speakers, when known")
    min_speakers: int | None = Field(None, ge=1, le=64, description="Lower bound on the number of speakers")
    max_speakers: int | None = Field(None, ge=1, le=64, description="Upper bound on the number of speakers")
    initial_prompt: str | None = Field(None, max_length=2000, description="Text to condition the first window on")
    hotwords: str | None = Field(None, max_length=2000, description="Words to bias the decoder towards")
    task: Literal["transcribe", "translate", "diarize", "align"] = Field(
        "transcribe",
        description=(
            "`transcribe`: every stage; `translate`: Whisper's translation into English (a multilingual model only);"
            " `diarize`: speaker turns only, no ASR; `align`: word times for the `transcript` sent with the job"
        ),
    )
    rediarize_of: str | None = Field(
        None,
        description="Set by `POST /v1/jobs/{id}/rediarize` (not a form field): the job whose words this one reuses",
    )
    webhook_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="http(s) URL the service POSTs a signed event to when the job ends (Standard Webhooks); "
        "unset = the API key's default webhook URL, if any",
    )
    webhook_events: Literal["end", "progress"] = Field(
        "end", description="`progress`: also one event per stage the job enters, besides the end"
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        return check_http_url(v) if v is not None and v.strip() else None

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if v in ("", "auto"):
            return None
        if not (2 <= len(v) <= 3 and v.isalpha()):
            raise ValueError("language must be an ISO 639-1 code such as 'en', or 'auto'")
        return v

    @model_validator(mode="after")
    def _speakers(self) -> Self:
        if self.num_speakers is not None and (self.min_speakers or self.max_speakers):
            raise ValueError("give num_speakers, or min_speakers/max_speakers, not both")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError("min_speakers must not exceed max_speakers")
        if self.task == "diarize" and not self.diarize:
            raise ValueError("task 'diarize' needs diarize on")
        if self.rediarize_of is not None and not is_job_id(self.rediarize_of):
            raise ValueError("rediarize_of must be a job id")
        return self

    @property
    def runs_asr(self) -> bool:
        """False for the jobs that transcribe nothing: `diarize`, and re-diarizations (they reuse words)."""
        return self.task != "diarize" and self.rediarize_of is None

    @property
    def whisper_task(self) -> Literal["transcribe", "translate"]:
        """Whisper's decoding task: `translate` for a translation, else `transcribe`."""
        return "translate" if self.task == "translate" else "transcribe"


def skipped_stages(options: JobOptions, *, timed_script: bool = False) -> frozenset[Stage]:
    """The per-chunk stages a job does not run (they take no share of its percent, `job_percent`).

    Args:
        timed_script: an `align` job whose transcript has segment times (it needs no ASR to place
            the text; a plain-text one is transcribed first to anchor it).
    """
    skipped: set[Stage] = set()
    if not options.runs_asr or (options.task == "align" and timed_script):
        skipped.add(Stage.transcribe)
    if not options.runs_asr or (not options.align and options.task != "align"):
        skipped.add(Stage.align)
    if not options.diarize:
        skipped.add(Stage.diarize)
    return frozenset(skipped)


#: Characters of a job id: 32 lowercase hex digits (`uuid4().hex`).
_HEX = frozenset("0123456789abcdef")


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex characters (a random UUID, 122 random bits)."""
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    """True when `value` can be a job id (32 lowercase hex characters); says nothing of whether it exists."""
    return len(value) == 32 and _HEX.issuperset(value)


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


class JobError(BaseModel):
    """Why a job failed: a stable code and a human message."""

    code: str
    message: str


class JobRecord(BaseModel):
    """The job as the API shows it (built from the Redis job hash)."""

    id: str
    status: JobStatus
    stage: Stage | None = None
    percent: float = Field(0.0, description="Overall progress 0-100; never decreases")
    attempt: int = Field(0, description="How many times a worker has claimed the job")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = Field(None, description="Audio duration in seconds, once decoded")
    language: str | None = Field(
        None, description="The transcript's language (asked for or detected), once the job succeeded"
    )
    speakers: int | None = Field(
        None, description="How many speakers the transcript labels (0 without diarization), once the job succeeded"
    )
    filename: str | None = Field(None, description="The client's file name, cleaned; metadata only")
    size_bytes: int | None = None
    fetched_bytes: int | None = Field(
        None, description="Bytes of the source fetched so far (a job submitted with `url`, in its `fetch` stage)"
    )
    options: JobOptions = Field(default_factory=JobOptions)
    error: JobError | None = None
    cancel_requested: bool = Field(False, description="DELETE asked this running job to stop; it ends `cancelled`")
    owner: KeyOwner | None = Field(None, description="The API key that created the job (None when auth is off)")

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> JobRecord:
        """Build from the Redis hash (all values strings; empty string = unset).

        Raises:
            pydantic.ValidationError: the hash is malformed.
        """

        def opt(k: str) -> str | None:
            v = h.get(k)
            return v if v not in (None, "") else None

        data: dict[str, Any] = {
            "id": h["id"],
            "status": h["status"],
            "stage": opt("stage"),
            "percent": float(h.get("percent") or 0.0),
            "attempt": int(h.get("attempt") or 0),
            "created_at": h["created_at"],
            "started_at": opt("started_at"),
            "finished_at": opt("finished_at"),
            "duration_s": float(h["duration_s"]) if opt("duration_s") else None,
            "language": opt("result_language"),
            "speakers": int(h["result_speakers"]) if opt("result_speakers") else None,
            "filename": opt("filename"),
            "size_bytes": int(h["size_bytes"]) if opt("size_bytes") else None,
            "fetched_bytes": int(h["fetched_bytes"]) if opt("fetched_bytes") else None,
            "options": JobOptions.model_validate_json(h["options"]) if opt("options") else JobOptions(),
            "error": {"code": h["error_code"], "message": h.get("error_message", "")} if opt("error_code") else None,
            "cancel_requested": h.get("cancel_requested") == "1",
            "owner": {"id": h["owner_id"], "name": h.get("owner_name", "")} if opt("owner_id") else None,
        }
        return cls.model_validate(data)
