"""API keys: what a key is, how it is made and checked, and the quotas it carries. No I/O.

A key reads `wxs_<id>_<secret>`: `id` is 16 hex characters (the key's public id, also in job
records and logs), `secret` is 32 random bytes in URL-safe base64 (256 bits from `secrets`). Only
the SHA-256 of the whole key is stored; with 256 random bits a fast hash is enough (there is
nothing to brute-force), and it is compared in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Every key starts with this, so a leaked key is easy to recognise (and to scan for).
KEY_PREFIX = "wxs_"
#: Random bytes of a key's secret part.
SECRET_BYTES = 32
_KEY = re.compile(r"^wxs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Quotas(BaseModel):
    """Per-key limits; None = unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_queued: int | None = Field(None, ge=0, description="Jobs waiting at once")
    max_running: int | None = Field(None, ge=0, description="Jobs running at once")
    max_audio_hours_per_day: float | None = Field(
        None, ge=0, description="Hours of audio submitted in any rolling 24 h"
    )
    max_storage_gb: float | None = Field(None, ge=0, description="GB (10^9 bytes) of uploads kept in storage")


class KeyOwner(BaseModel):
    """Who owns a job: the key's id and name (shown in job records and lists)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str


class ApiKey(BaseModel):
    """A key as the service records it (never the key itself: only its SHA-256)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Public id: 16 hex characters")
    name: str = Field(description="Unique, human-chosen: letters, digits, `.`, `_`, `-`; at most 64 characters")
    admin: bool = Field(False, description="Sees and manages every job; may read /metrics")
    quotas: Quotas = Field(default_factory=Quotas)
    created_at: datetime
    revoked_at: datetime | None = None
    key_hash: str = Field(description="SHA-256 of the whole key, hex")
    webhook_secret: str | None = Field(
        None, description="Signs this key's webhooks (`whsec_...`, Standard Webhooks); shown once, at creation"
    )
    webhook_url: str | None = Field(None, description="Webhook URL of the key's jobs that name none")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @property
    def revoked(self) -> bool:
        """True once revoked: the key no longer authenticates."""
        return self.revoked_at is not None

    @property
    def owner(self) -> KeyOwner:
        """The key as a job's owner."""
        return KeyOwner(id=self.id, name=self.name)

    def public(self) -> dict[str, object]:
        """The key's record without its hash and signing secret (for `keys list` and logs)."""
        return self.model_dump(mode="json", exclude={"key_hash", "webhook_secret"})

    def matches(self, key: str) -> bool:
        """True when `key` is this key (constant-time comparison of the hashes)."""
        return hmac.compare_digest(hash_key(key), self.key_hash)


def valid_key_name(name: str) -> bool:
    """True when `name` is acceptable as a key name (see `ApiKey.name`)."""
    return bool(_NAME.match(name))


def new_key() -> tuple[str, str]:
    """A fresh key and its id: `("wxs_<id>_<secret>", id)`."""
    key_id = secrets.token_hex(8)
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}", key_id


def hash_key(key: str) -> str:
    """SHA-256 of the key's UTF-8 bytes, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, or None when `key` cannot be one."""
    m = _KEY.match(key)
    return m.group(1) if m else None


def is_key_id(value: str) -> bool:
    """True when `value` can be a key id (16 lowercase hex characters)."""
    return len(value) == 16 and all(c in "0123456789abcdef" for c in value)
