"""Webhook signing secrets of API keys through the real `keys` commands: shown once at creation
(`--json` -> `webhook_secret`), replaced by `rotate-webhook-secret`, never listed; the default
webhook URL; and a secret that really signs (standardwebhooks verifies with it, not with the old one)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import standardwebhooks

from tests.integration.test_keys_cli_output import REPO, _keys
from whisperx_service.domain.keys import ApiKey
from whisperx_service.store.keys import Keys


def test_webhook_secret_shown_once_rotated_and_never_listed(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "STORAGE_", "REDIS_"))},
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "REDIS_URL": redis_url,
        "STORAGE_ROOT": str(tmp_path / "storage"),
    }
    made = json.loads(_keys(env, "create", "hooks", "--json", "--webhook-url", "https://example.com/h").stdout)
    secret = made["webhook_secret"]
    assert secret.startswith("whsec_") and made["webhook_url"] == "https://example.com/h"
    cached = ApiKey.model_validate_json(redis_client.get(Keys().api_key(made["id"])) or b"")
    assert cached.webhook_secret == secret  # the copy the outbound worker signs with

    listed = _keys(env, "list", "--json").stdout
    assert secret not in listed and "webhook_secret" not in listed

    rotated = _keys(env, "rotate-webhook-secret", "hooks").stdout.strip()
    assert rotated.startswith("whsec_") and rotated != secret
    cached = ApiKey.model_validate_json(redis_client.get(Keys().api_key(made["id"])) or b"")
    assert cached.webhook_secret == rotated

    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(rotated).sign("msg_1", now, '{"a":1}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert standardwebhooks.Webhook(rotated).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify('{"a":1}', headers)

    assert "cleared" in _keys(env, "set-webhook-url", "hooks").stdout
    cached = ApiKey.model_validate_json(redis_client.get(Keys().api_key(made["id"])) or b"")
    assert cached.webhook_url is None
