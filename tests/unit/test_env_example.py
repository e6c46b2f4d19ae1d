"""`.env.example` documents every setting in `config.Settings`, with its default, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from whisperx_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
#: Variables read only by docker-compose.gpu.yml (interpolation), not by Settings.
COMPOSE_ONLY = {"API_PUBLISH_ADDRESS", "API_PUBLISH_PORT", "REDIS_PASSWORD", "REDIS_MAXMEMORY", "FORWARDED_ALLOW_IPS"}
_SETTING_LINE = re.compile(r"^#\s?([A-Z][A-Z0-9_]*)=(.*)$")


def _env_name(group: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The environment variable pydantic-settings reads for `field`: its first alias, else prefix + name."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    if isinstance(alias, str):
        return alias
    return (str(group.model_config.get("env_prefix", "")) + name).upper()


def _settings_fields() -> list[tuple[str, FieldInfo]]:
    out = []
    for group_field in Settings.model_fields.values():
        group = group_field.annotation
        assert isinstance(group, type) and issubclass(group, BaseSettings), group
        for name, field in group.model_fields.items():
            out.append((_env_name(group, name, field), field))
    return out


def _documented() -> dict[str, tuple[str, str]]:
    """NAME -> (value shown, the comment line above it)."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found: dict[str, tuple[str, str]] = {}
    for i, line in enumerate(lines):
        m = _SETTING_LINE.match(line)
        if not m:
            continue
        name, value = m.groups()
        assert name not in found, f"{name} documented twice"
        above = lines[i - 1] if i else ""
        assert above.startswith("# ") and not _SETTING_LINE.match(above), f"{name} has no comment line"
        found[name] = (value, above[2:].strip())
    return found


def test_every_setting_is_documented() -> None:
    documented = _documented()
    names = [n for n, _ in _settings_fields()]
    assert len(names) > 30  # the walk really found the groups
    missing = [n for n in names if n not in documented]
    assert not missing, f"missing from .env.example: {missing}"
    unknown = set(documented) - set(names) - COMPOSE_ONLY
    assert not unknown, f".env.example names settings that do not exist: {unknown}"


@pytest.mark.parametrize(("env_name", "field"), _settings_fields(), ids=lambda v: str(v)[:40])
def test_shown_value_is_the_default(env_name: str, field: FieldInfo) -> None:
    value, comment = _documented()[env_name]
    default = field.get_default(call_default_factory=True)
    if default is None:
        # No default: the line shows an example, and the comment says what unset means.
        assert "unset" in comment, f"{env_name}: say what leaving it unset does"
        return
    adapter = TypeAdapter(field.annotation)
    # pydantic-settings reads list settings as JSON, everything else as plain text.
    shown = adapter.validate_json(value) if isinstance(default, list) else adapter.validate_python(value)
    assert shown == default, env_name


def test_compose_interpolations_are_documented() -> None:
    text = (REPO / "docker-compose.gpu.yml").read_text(encoding="utf-8")
    compose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    assert used, "docker-compose.gpu.yml interpolates no variables?"
    assert used <= set(_documented())
