"""FastAPI dependencies, declared once as `Annotated` aliases and reused by every route.

Everything comes from `app.state`, which the lifespan in `app.py` fills: no import-time globals.
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Path, Request

from whisperx_service.access.keys import KeyResolver
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import is_job_id
from whisperx_service.errors import JobNotFound
from whisperx_service.storage.local import Storage
from whisperx_service.store.async_jobs import AsyncJobStore
from whisperx_service.store.idempotency import IdempotencyStore


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_jobs(request: Request) -> AsyncJobStore:
    """The gateway's job store (async Redis)."""
    jobs: AsyncJobStore = request.app.state.jobs
    return jobs


def get_storage(request: Request) -> Storage:
    """Job files under the storage root."""
    storage: Storage = request.app.state.storage
    return storage


def get_celery(request: Request) -> Celery:
    """The Celery app used to enqueue jobs (never runs tasks in the gateway)."""
    celery: Celery = request.app.state.celery
    return celery


def get_keys(request: Request) -> KeyResolver:
    """The API key lookup (Redis, falling back to storage)."""
    keys: KeyResolver = request.app.state.keys
    return keys


def get_idempotency(request: Request) -> IdempotencyStore:
    """The Idempotency-Key store (Redis)."""
    store: IdempotencyStore = request.app.state.idempotency
    return store


def valid_job_id(job_id: Annotated[str, Path(description="Job id (32 lowercase hex characters)")]) -> str:
    """The job id from the path, if it can be one.

    Raises:
        JobNotFound: the id is not 32 lowercase hex characters (so it cannot name a job).
    """
    if not is_job_id(job_id):
        raise JobNotFound(f"job {job_id[:64]!r} not found")
    return job_id


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
JobsDep = Annotated[AsyncJobStore, Depends(get_jobs)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
JobIdDep = Annotated[str, Depends(valid_job_id)]
KeysDep = Annotated[KeyResolver, Depends(get_keys)]
IdempotencyDep = Annotated[IdempotencyStore, Depends(get_idempotency)]
