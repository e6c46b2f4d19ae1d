"""`whisperx-service models ...`: argument handling (the work itself is faked)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from whisperx_service.cli import main
from whisperx_service.config import Settings, get_settings
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models import download, prepare


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Settings from a known environment, rebuilt for each test."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "from-env"))
    monkeypatch.delenv("ASR_LANGUAGE", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the real builders; record how they are called."""
    seen: list[dict[str, Any]] = []

    def fake_prepare(models_dir: Path, *, with_test_models: bool = True) -> dict[str, Path]:
        seen.append({"models_dir": models_dir, "with_test_models": with_test_models})
        return {"diarization": models_dir / "offline-diarization"}

    def fake_download(
        settings: Settings,
        languages: Sequence[str] = ("en",),
        *,
        asr_model: str | None = None,
        timeout_s: float = 5,
    ) -> dict[str, str]:
        seen.append({"languages": tuple(languages), "asr_model": asr_model, "timeout_s": timeout_s})
        return {"asr": "/cache/whisper"}

    monkeypatch.setattr(prepare, "prepare_models", fake_prepare)
    monkeypatch.setattr(download, "download_models", fake_download)
    return seen


def test_prepare_defaults_to_settings_dir(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["models", "prepare"])
    assert result.exit_code == 0, result.output
    assert calls == [{"models_dir": tmp_path / "from-env", "with_test_models": True}]
    assert "diarization: " in result.output


def test_prepare_options(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["models", "prepare", "--models-dir", str(tmp_path / "x"), "--no-test-models"])
    assert result.exit_code == 0, result.output
    assert calls == [{"models_dir": tmp_path / "x", "with_test_models": False}]


def test_prepare_error_is_a_clean_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(models_dir: Path, *, with_test_models: bool = True) -> dict[str, Path]:
        raise ValueError("models directory contains 'nvidia'")

    monkeypatch.setattr(prepare, "prepare_models", refuse)
    result = CliRunner().invoke(main, ["models", "prepare"])
    assert result.exit_code == 1
    assert "Error: models directory contains 'nvidia'" in result.output


def test_download_languages(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(main, ["models", "download", "-l", "en", "--language", "de", "--timeout", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [{"languages": ("en", "de"), "asr_model": None, "timeout_s": 2.0}]
    assert "asr: /cache/whisper" in result.output


def test_download_default_language(calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(main, ["models", "download"]).exit_code == 0
    monkeypatch.setenv("ASR_LANGUAGE", "fr")
    get_settings.cache_clear()
    assert CliRunner().invoke(main, ["models", "download", "--asr-model", "large-v3"]).exit_code == 0
    assert [c["languages"] for c in calls] == [("en",), ("fr",)]
    assert calls[1]["asr_model"] == "large-v3"


def test_download_failure_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(settings: Settings, languages: Sequence[str] = ("en",), **kw: Any) -> dict[str, str]:
        raise ModelLoadFailed("cannot download Whisper model 'large-v3': the hub is unreachable")

    monkeypatch.setattr(download, "download_models", offline)
    result = CliRunner().invoke(main, ["models", "download"])
    assert result.exit_code == 1
    assert "Whisper model 'large-v3'" in result.output


def test_bad_arguments_exit_2(calls: list[dict[str, Any]]) -> None:
    assert CliRunner().invoke(main, ["models", "download", "--timeout", "0"]).exit_code == 2
    assert CliRunner().invoke(main, ["models", "prepare", "--bogus"]).exit_code == 2
    assert calls == []
