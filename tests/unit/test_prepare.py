"""The offline bundle builder's refusals and the fail-fast downloader (the built bundle is in
integration/test_prepare_bundle.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_service.config import (
    AlignSettings,
    AsrSettings,
    Device,
    DiarizeSettings,
    ModelsSettings,
    Settings,
)
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.download import download_models
from whisperx_service.pipeline.models.prepare import prepare_models


@pytest.mark.parametrize("word", ["pyannote", "speechbrain", "nvidia", "wespeaker"])
def test_refuses_routing_words_in_path(tmp_path: Path, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        prepare_models(tmp_path / f"my-{word}-models")
    assert not (tmp_path / f"my-{word}-models").exists()


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub endpoint that refuses connections at once, whatever network the machine has."""
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_hub")
def test_download_fails_fast_when_hub_unreachable() -> None:
    settings = Settings(asr=AsrSettings(model="large-v3-turbo", device=Device.cpu))
    # Bounded by the timeout mark: an unreachable hub must fail, not hang on retries.
    with pytest.raises(ModelLoadFailed, match=r"Whisper model 'large-v3-turbo'.*unreachable"):
        download_models(settings, timeout_s=2.0)


@pytest.mark.timeout(30)
def test_download_refuses_when_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadFailed, match=r"'large-v3'.*HF_HUB_OFFLINE"):
        download_models(Settings(asr=AsrSettings(model="large-v3")), timeout_s=2.0)


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_hub")
def test_download_needs_token_for_hub_pipeline(tmp_path: Path) -> None:
    local = tmp_path / "local-model"
    local.mkdir()
    settings = Settings(
        asr=AsrSettings(model=str(local)),
        align=AlignSettings(model=str(local)),
        diarize=DiarizeSettings(pipeline="pyannote/speaker-diarization-community-1", hf_token=None),
        models=ModelsSettings(dir=tmp_path / "models"),
    )
    with pytest.raises(ModelLoadFailed, match=r"speaker-diarization-community-1.*HF_TOKEN is missing"):
        download_models(settings, languages=("en",))
