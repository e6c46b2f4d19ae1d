"""Settings: defaults, environment names, and validators that refuse contradictions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from whisperx_service.config import (
    AlignBackend,
    AsrSettings,
    LimitsSettings,
    Settings,
    WorkerSettings,
)
from whisperx_service.domain.jobs import JobOptions


def test_visibility_timeout_must_exceed_time_limit() -> None:
    with pytest.raises(ValidationError, match="visibility_timeout_s"):
        WorkerSettings(task_time_limit_s=3600, task_soft_time_limit_s=3500, visibility_timeout_s=3600)
    ok = WorkerSettings(task_time_limit_s=3600, task_soft_time_limit_s=3500, visibility_timeout_s=3601)
    assert ok.visibility_timeout_s > ok.task_time_limit_s


def test_soft_limit_below_hard_limit() -> None:
    with pytest.raises(ValidationError, match="soft"):
        WorkerSettings(task_time_limit_s=100, task_soft_time_limit_s=100, visibility_timeout_s=200)


def test_duration_limit_must_fit_time_limit() -> None:
    w = WorkerSettings(task_time_limit_s=600, task_soft_time_limit_s=500, visibility_timeout_s=700)
    with pytest.raises(ValidationError, match="max_duration_s"):
        Settings(worker=w, limits=LimitsSettings(max_duration_s=600 * 21))


def test_flat_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("ASR_MODEL", "/models/my-ct2-dir")
    monkeypatch.setenv("ALIGN_BACKEND", "wav2vec2")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/2")
    s = Settings()
    assert s.limits.max_upload_bytes == 1234
    assert s.asr.model == "/models/my-ct2-dir"
    assert s.align.backend is AlignBackend.wav2vec2
    assert s.diarize.hf_token is not None and s.diarize.hf_token.get_secret_value() == "hf_secret"
    assert "hf_secret" not in repr(s), "the token never shows in logs"
    assert s.redis.url == "redis://example:6380/2"


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_hf_token_is_unset(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HF_TOKEN", value)
    assert Settings().diarize.hf_token is None
    monkeypatch.setenv("HF_TOKEN", " hf_x ")
    token = Settings().diarize.hf_token
    assert token is not None and token.get_secret_value() == " hf_x "


def test_bad_enum_value_is_refused() -> None:
    with pytest.raises(ValidationError):
        AsrSettings(vad_method="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_speakers": 2, "max_speakers": 3}, "not both"),
        ({"min_speakers": 4, "max_speakers": 2}, "must not exceed"),
        ({"language": "english!"}, "ISO 639-1"),
        ({"num_speakers": 0}, "greater than or equal"),
    ],
)
def test_job_options_refuse_contradictions(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JobOptions.model_validate(kwargs)


def test_job_options_language_auto_means_detect() -> None:
    assert JobOptions(language="auto").language is None
    assert JobOptions(language=" EN ").language == "en"
