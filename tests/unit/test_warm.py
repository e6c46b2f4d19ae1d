"""What a worker loads at start, and what it tells the operator when a model cannot be loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_service.config import AlignBackend, AlignSettings, AsrSettings, DiarizeSettings, Settings
from whisperx_service.worker.needs import NeededModel, failure_reason, needed_models

PIPELINE = "pyannote/speaker-diarization-community-1"


def _settings(**groups: object) -> Settings:
    base = {"asr": AsrSettings(model="large-v3", device="cpu"), "diarize": DiarizeSettings(pipeline=PIPELINE)}
    return Settings(**{**base, **groups})  # type: ignore[arg-type]


def test_a_job_needs_asr_and_the_diarizer_with_the_whisper_aligner() -> None:
    assert needed_models(_settings()) == [
        NeededModel("asr", "large-v3", "ASR_MODEL"),
        NeededModel("diarize", PIPELINE, "DIARIZE_PIPELINE"),
    ]


def test_the_wav2vec2_aligner_loads_for_the_configured_language_or_english() -> None:
    align = AlignSettings(backend=AlignBackend.wav2vec2, model="org/w2v")
    german = needed_models(_settings(align=align, asr=AsrSettings(model="large-v3", language="de")))
    assert german[1] == NeededModel("align", "org/w2v", "ALIGN_MODEL", "de")
    assert [m.stage for m in german] == ["asr", "align", "diarize"]
    assert needed_models(_settings(align=align))[1].language == "en"
    assert german[1].status(warm=False).name == "org/w2v:de"


def test_hub_pipeline_offline_without_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reason = failure_reason(NeededModel("diarize", PIPELINE, "DIARIZE_PIPELINE"), _settings())
    assert reason == (
        f"cannot load the diarization model '{PIPELINE}' (DIARIZE_PIPELINE): it is not in the local model cache "
        "and HF_HUB_OFFLINE is set; run `whisperx-service models download` with network access, with HF_TOKEN "
        f"set and the conditions accepted at https://hf.co/{PIPELINE}"
    )


def test_hub_pipeline_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    model = NeededModel("diarize", PIPELINE, "DIARIZE_PIPELINE")
    no_token = failure_reason(model, _settings())
    assert no_token.endswith(f": set HF_TOKEN and accept the conditions at https://hf.co/{PIPELINE}")
    refused = failure_reason(model, _settings(diarize=DiarizeSettings(pipeline=PIPELINE, hf_token="hf_x")))
    assert "check that HF_TOKEN is valid, that its account accepted the conditions at https://hf.co/" in refused
    asr = failure_reason(NeededModel("asr", "large-v9", "ASR_MODEL"), _settings())
    assert asr.startswith("cannot load the ASR model 'large-v9' (ASR_MODEL): check that ASR_MODEL names a model")


def test_a_local_directory_is_named_by_its_last_component_only(tmp_path: Path) -> None:
    where = tmp_path / "srv" / "offline-diarization"
    reason = failure_reason(NeededModel("diarize", str(where), "DIARIZE_PIPELINE"), _settings())
    assert reason == (
        "cannot load the diarization model 'offline-diarization' (DIARIZE_PIPELINE): its local directory is missing "
        "or incomplete; run `whisperx-service models prepare`, or point DIARIZE_PIPELINE at a pyannote pipeline"
    )
    assert str(tmp_path) not in reason
