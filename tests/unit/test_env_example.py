"""`.env.example` documents every setting in `config.Settings`, with its default, and nothing else.

The names are derived from the settings models (each group's env prefix + field name, or the
field's first alias), and a test proves each derived name really reaches its field. Besides the
settings, `.env.example` documents the variables the model libraries read (`LIBRARY_ENV`) and the
ones only docker compose reads (`COMPOSE_ONLY`); no other name may appear.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from whisperx_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
#: Variables read only by the docker-compose*.yml files (interpolation), not by Settings.
COMPOSE_ONLY = {"API_PUBLISH_ADDRESS", "API_PUBLISH_PORT", "REDIS_PASSWORD", "REDIS_MAXMEMORY", "FORWARDED_ALLOW_IPS"}
#: Variables the model libraries (huggingface_hub, transformers, torch, pyannote) read from the
#: process environment; a user sets them, Settings does not read them.
LIBRARY_ENV = {
    "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HOME", "TORCH_HOME", "PYANNOTE_METRICS_ENABLED", "PROMETHEUS_MULTIPROC_DIR"
}  # fmt: skip
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


def _settings_leaves() -> list[tuple[type[BaseSettings], str, str, FieldInfo]]:
    """(group, field name, environment variable, field) for every setting.

    A field of `Settings` that is a settings group contributes its fields (read with the group's
    prefix); any other field of `Settings` is a setting itself (read with `Settings`' prefix).
    """
    out: list[tuple[type[BaseSettings], str, str, FieldInfo]] = []
    for top_name, top_field in Settings.model_fields.items():
        group = top_field.annotation
        if isinstance(group, type) and issubclass(group, BaseSettings):
            out += [(group, n, _env_name(group, n, f), f) for n, f in group.model_fields.items()]
        else:
            out.append((Settings, top_name, _env_name(Settings, top_name, top_field), top_field))
    return out


def _settings_fields() -> list[tuple[str, FieldInfo]]:
    return [(env, field) for _, _, env, field in _settings_leaves()]


def _compose_text() -> str:
    """Every docker-compose*.yml of the repository, comment lines left out."""
    files = sorted(REPO.glob("docker-compose*.yml"))
    assert files, "no docker-compose*.yml"
    lines = [ln for f in files for ln in f.read_text(encoding="utf-8").splitlines()]
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))


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
    unknown = set(documented) - set(names) - COMPOSE_ONLY - LIBRARY_ENV
    assert not unknown, f".env.example names settings that do not exist: {unknown}"


def test_library_and_compose_variables_are_documented() -> None:
    documented = _documented()
    missing = sorted((LIBRARY_ENV | COMPOSE_ONLY) - set(documented))
    assert not missing, f"missing from .env.example: {missing}"
    settings = {n for n, _ in _settings_fields()}
    assert not (LIBRARY_ENV | COMPOSE_ONLY) & settings, "a setting is listed as a non-setting variable"


def test_compose_only_variables_are_used_by_compose() -> None:
    compose = _compose_text()
    unused = sorted(n for n in COMPOSE_ONLY if not re.search(rf"\$\{{{n}\b", compose))
    assert not unused, f"COMPOSE_ONLY names no docker-compose*.yml reads: {unused}"


@pytest.mark.parametrize(
    ("group", "name", "env_name"),
    [(g, n, e) for g, n, e, _ in _settings_leaves()],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_derived_name_reaches_its_field(
    monkeypatch: pytest.MonkeyPatch, group: type[BaseSettings], name: str, env_name: str
) -> None:
    """Setting the derived variable changes the field, or is refused naming it: the name is right."""
    field = group.model_fields[name]
    default = field.get_default(call_default_factory=True)
    sentinel = '["sentinel-value"]' if isinstance(default, list) else "sentinel-value"
    monkeypatch.setenv(env_name, sentinel)
    try:
        built = group()
    except ValidationError as exc:
        assert any(err["loc"][:1] == (name,) for err in exc.errors()), exc
        return
    value = getattr(built, name)
    assert value != default, f"{env_name} did not reach {group.__name__}.{name}"


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
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", _compose_text()))
    assert used, "docker-compose*.yml interpolates no variables?"
    undocumented = sorted(used - set(_documented()))
    assert not undocumented, f"docker-compose*.yml reads variables .env.example does not document: {undocumented}"
