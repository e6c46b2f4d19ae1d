"""API key administration (the `keys` CLI and the first start of `make run`) and lookup.

Storage is the record (`storage/keys.py`); Redis holds a copy of each record
(`Keys.api_key`) that the gateways read on every request, so a revocation takes effect at once
on every gateway. A record missing from Redis (Redis lost its data) is read from storage and put
back on first use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
import redis
import redis.asyncio as aioredis
import structlog

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import check_http_url
from whisperx_service.domain.keys import ApiKey, Quotas, hash_key, is_key_id, key_id_of, new_key, valid_key_name
from whisperx_service.domain.webhooks import new_webhook_secret
from whisperx_service.storage.keys import KeyFiles
from whisperx_service.storage.local import atomic_write_bytes
from whisperx_service.store.keys import Keys

audit = structlog.get_logger("whisperx_service.audit")

#: The admin key written on first start of `whisperx-service api` (mode 0600), under STORAGE_ROOT.
ADMIN_KEY_FILE = "admin.key"
#: Name of that key.
ADMIN_KEY_NAME = "admin"


class KeyAdminError(ValueError):
    """A key administration request that cannot be done (name taken or invalid, no such key)."""


class KeyRegistry:
    """Create, list and revoke keys (synchronous: the CLI and the gateway's start-up)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.files = KeyFiles(settings.storage.root)
        self.keys = Keys.of(settings)
        self.r = client if client is not None else redis.Redis.from_url(settings.redis.url, socket_timeout=10)
        self.root = Path(settings.storage.root)

    def _cache(self, key: ApiKey) -> None:
        self.r.set(self.keys.api_key(key.id), key.model_dump_json())

    def create(
        self, name: str, *, admin: bool = False, quotas: Quotas | None = None, webhook_url: str | None = None
    ) -> tuple[ApiKey, str]:
        """Make a key, record it (storage, then Redis) and return it with its secret (shown once).

        The record carries a fresh webhook signing secret (`ApiKey.webhook_secret`), also to be
        shown once, and the key's default webhook URL when given.

        Raises:
            KeyAdminError: the name is invalid or another key (revoked or not) has it, or the
                webhook URL is not an http(s) URL.
            OSError, redis.RedisError: storage or Redis failed (storage keeps the record).
        """
        webhook_url = _webhook_url(webhook_url)
        if not valid_key_name(name):
            raise KeyAdminError(f"invalid key name {name[:64]!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if any(k.name == name for k in self.files.all()):
            raise KeyAdminError(f"a key named {name!r} exists")
        secret, key_id = new_key()
        key = ApiKey(
            id=key_id,
            name=name,
            admin=admin,
            quotas=quotas or Quotas(),
            created_at=datetime.now(UTC),
            key_hash=hash_key(secret),
            webhook_secret=new_webhook_secret(),
            webhook_url=webhook_url,
        )
        self.files.write(key)
        self._cache(key)
        audit.info("key_created", key_id=key.id, key_name=key.name, admin=admin)
        return key, secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return self.files.all()

    def find(self, name_or_id: str) -> ApiKey | None:
        """The key with this name, or else this id."""
        keys = self.files.all()
        return next((k for k in keys if k.name == name_or_id), None) or next(
            (k for k in keys if k.id == name_or_id), None
        )

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke a key: storage first, then the copy every gateway reads.

        Returns:
            The revoked record (unchanged when it was revoked already).
        Raises:
            KeyAdminError: no such key.
        """
        key = self.find(name_or_id)
        if key is None:
            raise KeyAdminError(f"no key named or with id {name_or_id[:64]!r}")
        if not key.revoked:
            key = key.model_copy(update={"revoked_at": datetime.now(UTC)})
            self.files.write(key)
            audit.info("key_revoked", key_id=key.id, key_name=key.name)
        self._cache(key)
        return key

    def rotate_webhook_secret(self, name_or_id: str) -> ApiKey:
        """Give the key a new webhook signing secret (storage, then Redis); the old one signs no more.

        Deliveries not yet sent, retries included, are signed with the new secret.

        Returns:
            The updated record; its `webhook_secret` is to be shown once.
        Raises:
            KeyAdminError: no such key.
        """
        key = self._get(name_or_id)
        key = key.model_copy(update={"webhook_secret": new_webhook_secret()})
        self.files.write(key)
        self._cache(key)
        audit.info("key_webhook_secret_rotated", key_id=key.id, key_name=key.name)
        return key

    def set_webhook_url(self, name_or_id: str, url: str | None) -> ApiKey:
        """Set (or clear, with None) the default webhook URL of the key's jobs.

        Raises:
            KeyAdminError: no such key, or `url` is not an http(s) URL.
        """
        key = self._get(name_or_id).model_copy(update={"webhook_url": _webhook_url(url)})
        self.files.write(key)
        self._cache(key)
        audit.info("key_webhook_url_set", key_id=key.id, key_name=key.name, cleared=url is None)
        return key

    def _get(self, name_or_id: str) -> ApiKey:
        key = self.find(name_or_id)
        if key is None:
            raise KeyAdminError(f"no key named or with id {name_or_id[:64]!r}")
        return key

    def ensure_admin_key(self) -> Path | None:
        """On first start: create the `admin` key and write it to `STORAGE_ROOT/admin.key` (0600).

        Returns:
            The file's path when this call created the key; None when an admin key exists already.
        """
        if any(k.admin and not k.revoked for k in self.files.all()):
            return None
        _, secret = self.create(ADMIN_KEY_NAME if self.find(ADMIN_KEY_NAME) is None else _free_name(self), admin=True)
        path = self.root / ADMIN_KEY_FILE
        atomic_write_bytes(path, (secret + "\n").encode())  # mkstemp's mode: 0600
        path.chmod(0o600)
        return path


def _webhook_url(url: str | None) -> str | None:
    """`url` checked as a webhook URL (None or blank: None).

    Raises:
        KeyAdminError: not an http(s) URL.
    """
    if url is None or not url.strip():
        return None
    try:
        return check_http_url(url)
    except ValueError as e:
        raise KeyAdminError(f"webhook URL: {e}") from None


def _free_name(reg: KeyRegistry) -> str:
    n = 2
    while reg.find(f"{ADMIN_KEY_NAME}-{n}") is not None:
        n += 1
    return f"{ADMIN_KEY_NAME}-{n}"


class KeyResolver:
    """The gateway's lookup: the presented key -> its live record, or None."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.r = client
        self.keys = Keys.of(settings)
        self.files = KeyFiles(settings.storage.root)

    async def resolve(self, presented: str) -> ApiKey | None:
        """The record of a presented key when it exists, matches and is not revoked.

        Raises:
            redis.RedisError: Redis does not answer.
        """
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        raw = await self.r.get(self.keys.api_key(key_id))
        if raw is not None:
            key = ApiKey.model_validate_json(raw)
        else:
            found = await anyio.to_thread.run_sync(self.files.read, key_id)
            if found is None:
                return None
            key = found
            await self.r.set(self.keys.api_key(key_id), key.model_dump_json(), nx=True)
        if key.revoked or not key.matches(presented):
            return None
        return key

    async def find(self, name_or_id: str) -> ApiKey | None:
        """The key with this name, or else this id (revoked or not); None when there is none."""
        keys = await anyio.to_thread.run_sync(self.files.all)
        return next((k for k in keys if k.name == name_or_id), None) or next(
            (k for k in keys if k.id == name_or_id), None
        )

    async def get(self, key_id: str) -> ApiKey | None:
        """The record of a key id (for owner filters), revoked or not."""
        if not is_key_id(key_id):
            return None
        raw = await self.r.get(self.keys.api_key(key_id))
        if raw is not None:
            return ApiKey.model_validate_json(raw)

        return await anyio.to_thread.run_sync(self.files.read, key_id)
