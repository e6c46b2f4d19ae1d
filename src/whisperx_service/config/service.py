"""Settings of the gateway and of the service as a whole: HTTP, keys, Redis, storage, limits,
retention, logs and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from whisperx_service.config.base import (
    group,
    is_loopback_host,
    split_address,
)


class ApiSettings(BaseSettings):
    """HTTP gateway."""

    model_config = group("API_")

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

    model_config = group("AUTH_")

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

    model_config = group("REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field("wxs", min_length=1, description="Prefix of every key the service writes")
    events_maxlen: int = Field(10_000, ge=100, description="Approximate cap of events kept per job stream")


class StorageSettings(BaseSettings):
    """Shared storage: sources, manifests, checkpoints and results."""

    model_config = group("STORAGE_")

    root: Path = Path("./data")
    min_free_bytes: int = Field(
        1024**3,
        ge=0,
        description="Free space (bytes) an upload must leave on storage: refused (507) before it starts "
        "and stopped while it streams when less would be left",
    )


class LimitsSettings(BaseSettings):
    """Input limits, and the open event streams one gateway process holds."""

    model_config = group("")

    max_upload_bytes: int = Field(5 * 1024**3, gt=0, description="Largest accepted upload (bytes)")
    max_duration_s: float = Field(12 * 3600.0, gt=0, description="Longest accepted audio (seconds)")
    max_form_field_bytes: int = Field(64 * 1024, gt=0, description="Largest non-file form field (bytes)")
    max_transcript_bytes: int = Field(
        2 * 1024**2, gt=0, description="Largest `transcript` field of an `align` job (bytes); beyond: 413"
    )
    upload_idle_timeout_s: float = Field(
        30.0, gt=0, description="Seconds an upload may send nothing before it is refused (408) and removed"
    )
    upload_expiry_s: float = Field(
        86400.0,
        gt=0,
        description="Seconds a resumable upload (/v1/uploads) lives after its creation: unfinished, or "
        "finished but not made a job, it is refused (410) after this and removed by retention",
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

    model_config = group("RETENTION_")

    s: float = Field(
        7 * 86400.0, gt=0, description="Seconds after a job ends until its source, chunks and result are deleted"
    )
    sweep_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention sweeps")
    orphan_s: float = Field(
        86400.0,
        gt=0,
        description="Age (s) after which a job directory that no job owns (an interrupted upload) is deleted",
    )


class ObservabilitySettings(BaseSettings):
    """Logs, metrics and error reporting."""

    model_config = group("")

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
