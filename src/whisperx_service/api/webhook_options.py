"""A new job's webhook: the key's default URL when the request names none, and a signing secret to sign it."""

from __future__ import annotations

from whisperx_service.api.auth import Principal
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.errors import InvalidRequest


def with_webhook(options: JobOptions, principal: Principal, settings: Settings) -> JobOptions:
    """`options` with the webhook URL the job will use: its own, else its API key's default.

    Raises:
        InvalidRequest: the job would have a webhook and nothing to sign it with (a key without a
            signing secret, or no key and no WEBHOOK_SECRET).
    """
    key = principal.key
    if options.webhook_url is None and key is not None and key.webhook_url:
        options = options.model_copy(update={"webhook_url": key.webhook_url})
    if options.webhook_url is None:
        return options
    if key is None and not settings.webhook.secret:
        raise InvalidRequest("webhook_url: webhooks without API keys need WEBHOOK_SECRET set on the service")
    if key is not None and not key.webhook_secret:
        raise InvalidRequest(
            "webhook_url: this API key has no webhook signing secret; an admin can make one "
            "with `whisperx-service keys rotate-webhook-secret`"
        )
    return options
