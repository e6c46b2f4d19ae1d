"""API key records on storage (the record; Redis only indexes them): `<root>/keys/<id>.json`.

Each record is the `ApiKey` model as JSON (the key's SHA-256, never the key), written atomically.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from whisperx_service.domain.keys import ApiKey, is_key_id
from whisperx_service.storage.local import atomic_write_bytes


class KeyFiles:
    """Key records under `<root>/keys`."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "keys"

    def path(self, key_id: str) -> Path:
        """`<root>/keys/<id>.json`.

        Raises:
            ValueError: `key_id` is not 16 lowercase hex characters.
        """
        if not is_key_id(key_id):
            raise ValueError(f"bad key id {key_id!r}")
        return self.dir / f"{key_id}.json"

    def write(self, key: ApiKey) -> None:
        """Write (or overwrite) one record atomically.

        Raises:
            OSError: the write failed.
        """
        atomic_write_bytes(self.path(key.id), key.model_dump_json().encode())

    def read(self, key_id: str) -> ApiKey | None:
        """The record of `key_id`, or None when there is none (or it cannot be parsed)."""
        try:
            return ApiKey.model_validate_json(self.path(key_id).read_bytes())
        except (OSError, ValueError, ValidationError):
            return None

    def all(self) -> list[ApiKey]:
        """Every readable record, oldest first."""
        out = []
        for p in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            if is_key_id(p.stem) and (key := self.read(p.stem)) is not None:
                out.append(key)
        return sorted(out, key=lambda k: (k.created_at, k.id))
