"""Webhooks: the events a job sends, their small payload, the retry schedule and the attempt log. No I/O.

A delivery is one event of one job to one URL, signed per the Standard Webhooks spec
(https://www.standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature`,
HMAC-SHA256). Its id (`webhook-id`) is fixed when the event happens and is the same on every
retry, so a receiver can deduplicate.
"""

from __future__ import annotations

import base64
import random
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

#: Random bytes of a signing secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32
#: Prefix of a signing secret, as the Standard Webhooks libraries read it.
SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of `SECRET_BYTES` random bytes (`secrets`)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class DeliveryState(StrEnum):
    """Where a delivery stands."""

    pending = "pending"  # waiting for its next attempt
    delivered = "delivered"  # a 2xx answer
    gone = "gone"  # the receiver answered 410 Gone: no more attempts
    exhausted = "exhausted"  # WEBHOOK_MAX_ATTEMPTS attempts (or WEBHOOK_MAX_AGE_S) without a 2xx


def delivery_id(job_id: str, event: str) -> str:
    """The delivery of `event` (`ended`, or `stage.<name>`) for a job: also its `webhook-id`, so one
    event is one message however many times the hook runs."""
    return f"msg_{job_id}_{event}"


def event_type(event: str) -> str:
    """The payload's `type` of an event: `job.ended`, `job.stage`."""
    return "job." + event.split(".", 1)[0]


def payload(event: str, job: dict[str, str], result_url: str, *, stage: str | None = None) -> dict[str, Any]:
    """The small JSON body of an event: `{type, job_id, status, error?, stage?, result_url, created_at}`.

    Args:
        job: the job's Redis hash (strings): id, status, created_at, error_code, error_message.
        result_url: where the result is fetched (GET, with the owner's key).
        stage: the stage a `stage.*` event reports.
    """
    body: dict[str, Any] = {
        "type": event_type(event),
        "job_id": job.get("id", ""),
        "status": job.get("status", ""),
        "result_url": result_url,
        "created_at": job.get("created_at", ""),
    }
    if job.get("error_code"):
        body["error"] = {"code": job["error_code"], "message": job.get("error_message", "")}
    if stage is not None:
        body["stage"] = stage
    return body


def backoff_s(retry: int, base_s: float, max_s: float, jitter: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (1 = the first retry).

    `base_s * 2**(retry - 1)`, at most `max_s`, stretched by a random factor in `[1, 1 + jitter]`
    (jitter spreads the retries of many deliveries that failed together). With jitter below 1 a
    wait is never shorter than the one before it, until `max_s` caps them.
    """
    wait = min(base_s * 2.0 ** max(retry - 1, 0), max_s)
    stretch: float = (rng or random).uniform(0.0, jitter)
    return wait * (1.0 + stretch)


class WebhookAttempt(BaseModel):
    """One attempt at a delivery, as `GET /v1/jobs/{id}/webhooks` shows it."""

    attempt: int = Field(description="1 for the first attempt")
    at: datetime = Field(description="When the attempt started (UTC)")
    status_code: int | None = Field(None, description="The receiver's HTTP status; null when none came")
    latency_ms: float = Field(description="Milliseconds from the start of the attempt to its answer or failure")
    error: str | None = Field(
        None,
        description="Why it failed: http_status, timeout, connect_error, refused_address, too_many_redirects, "
        "request_error",
    )


class WebhookDelivery(BaseModel):
    """One event of a job and every attempt to deliver it."""

    id: str = Field(description="The `webhook-id` header of every attempt")
    type: str = Field(description="`job.ended` or `job.stage`")
    state: DeliveryState
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class WebhookLog(BaseModel):
    """The answer of `GET /v1/jobs/{id}/webhooks`."""

    deliveries: list[WebhookDelivery]
