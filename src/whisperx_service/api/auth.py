"""Authentication: `Authorization: Bearer <key>` on every route but /healthz and /readyz.

`authenticate` is a dependency: it resolves the key (`access/keys.KeyResolver`), rate-limits
failed attempts per client address and requests per key and per address (`access/limits.py`),
writes an audit line for each failure, and binds the key id to the request's log lines. With
AUTH_ENABLED=false (allowed on a loopback address only) every request acts as an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request

from whisperx_service.access.keys import KeyResolver
from whisperx_service.access.limits import RequestLimiter
from whisperx_service.config import is_loopback_host
from whisperx_service.domain.jobs import JobRecord
from whisperx_service.domain.keys import ApiKey, KeyOwner
from whisperx_service.errors import AdminOnly, JobNotFound, RateLimited, Unauthorized
from whisperx_service.store.async_jobs import AsyncJobStore

audit = structlog.get_logger("whisperx_service.audit")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key, or nobody in particular when auth is off (then: admin)."""

    key: ApiKey | None

    @property
    def admin(self) -> bool:
        """Sees and manages every job."""
        return self.key is None or self.key.admin

    @property
    def owner(self) -> KeyOwner | None:
        """What the jobs this caller creates record as their owner (None when auth is off)."""
        return self.key.owner if self.key is not None else None

    def sees(self, record: JobRecord) -> bool:
        """True when this caller may see and manage the job (its own, or any for an admin)."""
        return self.admin or (record.owner is not None and self.key is not None and record.owner.id == self.key.id)


#: True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1); the one rule the settings use too.
is_loopback = is_loopback_host


def client_address(request: Request) -> str:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request) -> Principal:
    """The caller, from its Bearer key.

    Raises:
        Unauthorized: no key, a malformed one, or one that is unknown or revoked.
        RateLimited: the address failed too often, or the key or address sent too many requests.
        redis.ConnectionError, redis.TimeoutError: Redis does not answer (answered as 503).
    """
    state = request.app.state
    limiter: RequestLimiter = state.limiter
    address = client_address(request)
    if not state.settings.auth.enabled:
        # Auth off is for one machine: whatever address the server was bound to, serve loopback only.
        if not is_loopback(address):
            audit.warning("auth_failed", address=address, reason="auth_off_remote")
            raise Unauthorized("this gateway runs without API keys and serves its own machine only")
        wait = await limiter.request(None, address)
        if wait is not None:
            raise RateLimited("too many requests from this address", retry_after_s=wait)
        return Principal(None)
    wait = await limiter.failures_exhausted(address)
    if wait is not None:
        raise RateLimited("too many failed API keys from this address", retry_after_s=wait)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    key = None
    if scheme.lower() == "bearer" and token.strip():
        resolver: KeyResolver = state.keys
        key = await resolver.resolve(token.strip())
    if key is None:
        await limiter.failed(address)
        audit.warning("auth_failed", address=address, reason="missing" if not token else "invalid")
        raise Unauthorized("a valid API key is required: `Authorization: Bearer <key>`")
    structlog.contextvars.bind_contextvars(key_id=key.id)
    wait = await limiter.request(key.id, address)
    if wait is not None:
        raise RateLimited("too many requests for this API key or address", retry_after_s=wait)
    return Principal(key)


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """The caller, when it holds an admin key.

    Raises:
        AdminOnly: a valid key without admin rights.
    """
    if not principal.admin:
        raise AdminOnly("this needs an admin API key")
    return principal


async def visible_job(jobs: AsyncJobStore, job_id: str, principal: Principal) -> JobRecord:
    """The job, when the caller may see it.

    Raises:
        JobNotFound: no such job, or another key owns it (never 403: a job's existence is not told).
    """
    record = await jobs.get(job_id)
    if record is None or not principal.sees(record):
        raise JobNotFound(f"job {job_id} not found")
    return record


PrincipalDep = Annotated[Principal, Depends(authenticate)]
AdminDep = Annotated[Principal, Depends(require_admin)]
