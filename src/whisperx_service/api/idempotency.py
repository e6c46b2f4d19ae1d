"""`Idempotency-Key` on submissions (POST /v1/jobs, /v1/audio/*): one job per key, however often sent.

The same key from the same API key within IDEMPOTENCY_TTL_S gets the first request's job: the
job API answers the first answer again (same status and body, plus `Idempotent-Replayed: true`),
the OpenAI routes wait on the same job. The repeat's body is read and hashed, never stored
(`upload.digest_upload`). The same key with another file, other fields or on another route is
409 `idempotency_conflict`; fields that only shape the answer (`FormSpec.answer_only`: OpenAI's
`response_format`, `timestamp_granularities[]`, `stream`, `temperature`) may differ, so a repeat
can fetch the same job in another format. While the first request still uploads, a repeat (a concurrent twin)
is 409 `idempotency_in_progress` with `Retry-After: 1`: the official OpenAI clients retry a 409
after it, and then get the job. Redis state: `store/idempotency.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from whisperx_service.api.auth import Principal
from whisperx_service.errors import IdempotencyConflict, IdempotencyInProgress, InvalidRequest
from whisperx_service.logs import get_logger
from whisperx_service.store.idempotency import PENDING_LEASE_MS, Completed, IdempotencyStore, Reservation

log = get_logger(__name__)

#: The request header (the name Stripe and OpenAI's SDKs use).
HEADER = "Idempotency-Key"
#: Longest accepted key (characters).
MAX_KEY_CHARS = 255
#: Seconds a concurrent twin is told to wait before it retries.
IN_PROGRESS_RETRY_S = 1


def header_key(request: Request) -> str | None:
    """The request's `Idempotency-Key`, or None without one.

    Raises:
        InvalidRequest: empty, longer than MAX_KEY_CHARS, or not printable ASCII.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_CHARS or not all(" " < c <= "~" for c in key):
        raise InvalidRequest(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters without spaces")
    return key


def route_fingerprint(route: str, upload_fingerprint: str) -> str:
    """The fingerprint kept for a key: the route and the upload's (so one key on two routes conflicts)."""
    return hashlib.sha256(f"{route}\0{upload_fingerprint}".encode()).hexdigest()


@dataclass(eq=False)
class Idempotent:
    """One request's use of its Idempotency-Key: a replay of a finished first request, or the
    reservation this request holds while it creates the job."""

    store: IdempotencyStore
    route: str
    ttl_s: float  # IDEMPOTENCY_TTL_S
    replay: Completed | None = None
    reservation: Reservation | None = None
    _renewer: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    async def start(
        cls, request: Request, principal: Principal, store: IdempotencyStore, route: str, ttl_s: float
    ) -> Idempotent | None:
        """Look the request's key up (None: no header). `route` names the endpoint; `ttl_s` is
        IDEMPOTENCY_TTL_S.

        Raises:
            InvalidRequest: a malformed key.
            IdempotencyInProgress: the first request with this key is still uploading.
            redis.RedisError: Redis does not answer (a 503).
        """
        key = header_key(request)
        if key is None:
            return None
        owner = principal.key.id if principal.key is not None else "-"
        found = await store.reserve(owner, key)
        if found is None:
            raise IdempotencyInProgress(
                f"a request with this {HEADER} is still uploading; retry shortly", retry_after_s=IN_PROGRESS_RETRY_S
            )
        if isinstance(found, Completed):
            return cls(store, route, ttl_s, replay=found)
        return cls(store, route, ttl_s, reservation=found)

    def check_replay(self, upload_fingerprint: str) -> Completed:
        """The first request's answer, when this repeat carries the same content on the same route.

        Raises:
            IdempotencyConflict: other content, or another route.
        """
        assert self.replay is not None
        if route_fingerprint(self.route, upload_fingerprint) != self.replay.fingerprint:
            raise IdempotencyConflict(
                f"this {HEADER} was used with another file, other fields or on another route; use a new key"
            )
        return self.replay

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Keep the reservation alive while the block uploads and creates the job; release it if the
        block fails (the key is free for a retry), unless `complete` ran."""
        assert self.reservation is not None
        res = self.reservation

        async def renew() -> None:
            while True:
                await asyncio.sleep(PENDING_LEASE_MS / 3000)
                try:
                    await self.store.renew(res)
                except Exception as e:  # Redis hiccup: the next renewal tries again
                    log.warning("idempotency_renew_failed", error=repr(e))

        self._renewer = asyncio.create_task(renew())
        try:
            yield
        except BaseException:
            self._stop()
            if self.reservation is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release(self.reservation))
            raise
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def complete(self, job_id: str, upload_fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Record the job this request made and its answer, kept `ttl_s` (IDEMPOTENCY_TTL_S).

        A Redis failure here is logged, not raised: the job exists and the client gets its answer;
        only a repeat of this key would then make a second job.
        """
        assert self.reservation is not None
        self._stop()
        done = Completed(job_id, route_fingerprint(self.route, upload_fingerprint), status, body)
        res, self.reservation = self.reservation, None
        try:
            if not await self.store.complete(res, done, self.ttl_s):
                log.warning("idempotency_reservation_lost", job_id=job_id)
        except Exception as e:
            log.error("idempotency_complete_failed", job_id=job_id, error=repr(e))
