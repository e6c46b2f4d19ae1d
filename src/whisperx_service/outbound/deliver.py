"""One attempt at a webhook delivery: sign, POST, record, and schedule the next attempt or stop.

The body is built once, at the first attempt, from the job's record (`domain.webhooks.payload`)
and kept, so every retry sends the same bytes under the same `webhook-id`; the timestamp and the
signature are made per attempt (Standard Webhooks, `standardwebhooks.Webhook.sign`) with the
signing secret of the job's API key as it is then (a rotated secret signs the retries too), or
WEBHOOK_SECRET for a job without a key.

Outcome of an attempt: a 2xx answer -> `delivered`; 410 Gone -> `gone` (no more attempts); anything
else (another status, a redirect, a timeout, a refused address, a connection error) -> a retry
after `backoff_s`, until WEBHOOK_MAX_ATTEMPTS attempts were made or the next one would start more
than WEBHOOK_MAX_AGE_S after the event -> `exhausted`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import drawbridge
import httpx
import redis
import standardwebhooks

from whisperx_service.config import Settings
from whisperx_service.domain.keys import ApiKey
from whisperx_service.domain.webhooks import DeliveryState, WebhookAttempt, backoff_s, payload
from whisperx_service.logs import get_logger
from whisperx_service.outbound import http
from whisperx_service.storage.keys import KeyFiles
from whisperx_service.store.webhooks import WebhookStore

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST got: the receiver's status, or the reason none came."""

    status_code: int | None
    error: str | None


def signing_secret(r: redis.Redis, store: WebhookStore, settings: Settings, owner_id: str) -> str | None:
    """The secret that signs a delivery of the key `owner_id` (WEBHOOK_SECRET without a key); None when there is none.

    The key's record is read from its Redis copy, else from storage.
    """
    if not owner_id:
        return settings.webhook.secret or None
    raw = r.get(store.keys.api_key(owner_id))
    key = ApiKey.model_validate_json(raw) if raw is not None else KeyFiles(settings.storage.root).read(owner_id)
    return key.webhook_secret if key is not None else None


def post(client: drawbridge.SyncClient, url: str, body: str, headers: dict[str, str]) -> Answer:
    """POST `body` to `url` through the SSRF-safe client; the answer's body is not read."""
    try:
        with client.stream("POST", url, content=body.encode("utf-8"), headers=headers) as resp:
            return Answer(resp.status_code, None if 200 <= resp.status_code < 300 else "http_status")
    except http.Refused as e:
        log.warning("webhook_refused", reason=str(e))
        return Answer(None, "refused_address")
    except drawbridge.TooManyRedirectsError:
        return Answer(None, "too_many_redirects")
    except httpx.TimeoutException:
        return Answer(None, "timeout")
    except (httpx.ConnectError, drawbridge.DrawbridgeDNSError):
        return Answer(None, "connect_error")
    except (httpx.HTTPError, drawbridge.DrawbridgeError) as e:
        log.info("webhook_request_error", error=repr(e))
        return Answer(None, "request_error")


def next_state(
    settings: Settings, answer: Answer, attempt: int, created_ms: int, now_ms: int
) -> tuple[DeliveryState, int | None]:
    """The delivery's state after attempt number `attempt` and when the next one is due (ms; None: none)."""
    if answer.status_code is not None and 200 <= answer.status_code < 300:
        return DeliveryState.delivered, None
    if answer.status_code == 410:
        return DeliveryState.gone, None
    w = settings.webhook
    due = now_ms + int(1000 * backoff_s(attempt, w.backoff_base_s, w.backoff_max_s, w.jitter))
    if attempt >= w.max_attempts or due > created_ms + w.max_age_s * 1000:
        return DeliveryState.exhausted, None
    return DeliveryState.pending, due


def attempt_delivery(
    r: redis.Redis, store: WebhookStore, settings: Settings, client: drawbridge.SyncClient, did: str
) -> DeliveryState | None:
    """Make the next attempt at delivery `did`, record it and schedule what follows.

    Returns:
        The delivery's state after the attempt; None when there was nothing to do (it is gone or
        no longer pending) or the attempt had been recorded by another worker meanwhile.
    Raises:
        redis.RedisError: Redis does not answer (the item comes due again after its lease).
    """
    d = store.delivery(did)
    if not d or d.get("state") != DeliveryState.pending:
        return None
    attempt = int(d.get("attempts") or 0) + 1
    created_ms = int(d.get("created_ms") or 0)
    job = store.job(d["job_id"])
    event = d.get("event", "ended")
    base = settings.api.public_url.rstrip("/")
    result_url = f"{base}/v1/jobs/{d['job_id']}/result"
    stage = event.split(".", 1)[1] if event.startswith("stage.") else None
    fresh = json.dumps(payload(event, job, result_url, stage=stage), separators=(",", ":"))
    body = store.set_body(did, fresh)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    secret = signing_secret(r, store, settings, d.get("owner_id", ""))
    if secret is None:
        answer = Answer(None, "no_signing_secret")
    else:
        signature = standardwebhooks.Webhook(secret).sign(did, started, body)
        headers = {
            "webhook-id": did,
            "webhook-timestamp": str(int(started.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        answer = post(client, d["url"], body, headers)
    latency_ms = round((time.perf_counter() - t0) * 1000, 1)
    state, due = next_state(settings, answer, attempt, created_ms, int(time.time() * 1000))
    record = WebhookAttempt(
        attempt=attempt, at=started, status_code=answer.status_code, latency_ms=latency_ms, error=answer.error
    )
    if not store.record(did, record, state, due):
        return None
    log.info(
        "webhook_attempt",
        delivery=did,
        attempt=attempt,
        status_code=answer.status_code,
        error=answer.error,
        state=state.value,
        latency_ms=latency_ms,
    )
    return state
