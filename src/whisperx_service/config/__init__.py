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

from functools import lru_cache
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from whisperx_service.config.base import (
    BYTES_PER_SAMPLE,
    SAMPLE_RATE,
    AlignBackend,
    Device,
    VadMethod,
    is_loopback_host,
    split_address,
)
from whisperx_service.config.outbound import FetchSettings, OutboundSettings, WebhookSettings
from whisperx_service.config.pipeline import (
    AlignSettings,
    AsrSettings,
    ChunkSettings,
    DiarizeSettings,
    ModelsSettings,
    WorkerSettings,
)
from whisperx_service.config.service import (
    ApiSettings,
    AuthSettings,
    LimitsSettings,
    ObservabilitySettings,
    RedisSettings,
    RetentionSettings,
    StorageSettings,
)

__all__ = [
    "BYTES_PER_SAMPLE",
    "SAMPLE_RATE",
    "AlignBackend",
    "AlignSettings",
    "ApiSettings",
    "AsrSettings",
    "AuthSettings",
    "ChunkSettings",
    "Device",
    "DiarizeSettings",
    "FetchSettings",
    "LimitsSettings",
    "ModelsSettings",
    "ObservabilitySettings",
    "OutboundSettings",
    "RedisSettings",
    "RetentionSettings",
    "Settings",
    "StorageSettings",
    "VadMethod",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
    "is_loopback_host",
    "split_address",
]


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
    outbound: OutboundSettings = _default(OutboundSettings)
    webhook: WebhookSettings = _default(WebhookSettings)
    fetch: FetchSettings = _default(FetchSettings)

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
