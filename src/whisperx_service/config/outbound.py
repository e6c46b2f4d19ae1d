"""Settings of the outbound worker: signed webhooks and every request the service makes itself."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from whisperx_service.config.base import group


class OutboundSettings(BaseSettings):
    """The outbound worker (`whisperx-service outbound`): its queue, its schedule, its address check."""

    model_config = group("OUTBOUND_")

    queue: str = Field("outbound", description="Celery queue of webhook deliveries (never the GPU workers' queue)")
    concurrency: int = Field(4, ge=1, description="Outbound worker threads: deliveries in flight at once")
    poll_s: float = Field(
        0.5, gt=0, description="Seconds between looks at the schedule of due deliveries (their latency floor)"
    )
    lease_s: float = Field(
        120.0,
        gt=0,
        description="Seconds a sent delivery is held before it is sent again (its worker died); above "
        "WEBHOOK_TIMEOUT_S",
    )
    allow_private: bool = Field(
        False,
        description="Allow outbound requests to loopback, private, link-local, multicast and reserved addresses "
        "(internal targets; tests). Off: every request resolves its host, refuses those, and connects to "
        "the address it checked",
    )


class WebhookSettings(BaseSettings):
    """Webhook delivery: timeout, retries with exponential backoff and jitter, the signing secret without keys."""

    model_config = group("WEBHOOK_")

    timeout_s: float = Field(10.0, gt=0, description="Seconds one delivery attempt may take, all of it")
    max_attempts: int = Field(
        16, ge=1, description="Attempts per delivery (the first one included); with the defaults about 23 h of retries"
    )
    max_age_s: float = Field(86400.0, gt=0, description="No attempt starts later than this many s after the event")
    backoff_base_s: float = Field(10.0, gt=0, description="Wait before the first retry (s); doubles each retry")
    backoff_max_s: float = Field(4 * 3600.0, gt=0, description="Longest wait between two attempts (s)")
    jitter: float = Field(
        0.25, ge=0, le=0.9, description="Each wait is stretched by a random factor in [1, 1 + jitter]"
    )
    secret: str = Field(
        "",
        description="Signing secret (`whsec_...`) of the jobs without an API key (AUTH_ENABLED=false); "
        "empty = such jobs take no webhook_url",
    )


class FetchSettings(BaseSettings):
    """Fetching a job's source from its `url` (outbound worker): timeouts, redirects, tries.

    The size, free-space, format and duration limits are the upload's (MAX_UPLOAD_BYTES,
    STORAGE_MIN_FREE_BYTES, MAX_DURATION_S).
    """

    model_config = group("FETCH_")

    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to connect to the source's server")
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds without a byte from the source's server before the fetch fails; below OUTBOUND_LEASE_S",
    )
    timeout_s: float = Field(
        3600.0, gt=0, description="Seconds one fetch may take in all, however steadily the bytes arrive"
    )
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed, each one's address checked again")
    max_attempts: int = Field(
        3, ge=1, description="Fetches of one job started before it fails (a fetching worker that died counts)"
    )
