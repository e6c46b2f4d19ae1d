"""The offline models on real speech (pyannote's sample call), each loaded once for the module, on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.metrics import der, normalize, wer
from tests.speech import SAMPLE_WAV, read_rttm, read_stm
from whisperx_service.config import (
    AlignBackend,
    AlignSettings,
    AsrSettings,
    Device,
    DiarizeSettings,
    ModelsSettings,
    Settings,
)
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models import loaders
from whisperx_service.pipeline.stages.align_whisper import align_with_whisper

SR = 16_000


@pytest.fixture(scope="module")
def settings(models_dir: Path) -> Settings:
    return Settings(asr=AsrSettings(device=Device.cpu, threads=2), models=ModelsSettings(dir=models_dir))


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    import whisperx

    return np.asarray(whisperx.load_audio(str(SAMPLE_WAV)), dtype=np.float32)


@pytest.fixture(scope="module")
def asr(settings: Settings) -> Any:
    return loaders.load_asr(settings)


@pytest.fixture(scope="module")
def segments(asr: Any, audio: np.ndarray) -> list[dict[str, Any]]:
    result = asr.transcribe(audio, batch_size=8)
    assert result["language"] == "en"
    return list(result["segments"])


@pytest.fixture(scope="module")
def aligned(asr: Any, segments: list[dict[str, Any]], audio: np.ndarray) -> list[dict[str, Any]]:
    return align_with_whisper(asr, segments, audio, "en")


def test_packaged_asr_is_english_tiny_on_cpu(asr: Any) -> None:
    assert not asr.model.model.is_multilingual
    assert asr.model.model.device == "cpu"


def test_transcribes_english(segments: list[dict[str, Any]]) -> None:
    text = " ".join(s["text"] for s in segments)
    reference = " ".join(t.text for t in read_stm())
    assert "New Jersey" in text and "Chicago" in text
    w = wer(reference, text)
    print(f"\n[sample call] WER {w:.4f}")
    assert w < 0.16  # measured 0.14 on the CPU reference setup (tiny.en, 2 threads)


def test_whisper_alignment_times_every_word(aligned: list[dict[str, Any]], audio: np.ndarray) -> None:
    words = [w for s in aligned for w in s["words"]]
    assert [w["word"] for w in words] == " ".join(s["text"] for s in aligned).split()
    starts = [w["start"] for w in words]
    assert all(w["start"] is not None and w["end"] is not None for w in words)
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= len(audio) / SR for w in words)
    assert all(0 <= w["score"] <= 1 for w in words)


def test_whisper_alignment_is_close_to_reference(aligned: list[dict[str, Any]]) -> None:
    chicago = [w["start"] for s in aligned for w in s["words"] if normalize(w["word"]) == "chicago"]
    # sample.stm: "... originally from Chicago." 14.44-17.77 s; "... from Chicago also." 17.79-20.11 s.
    assert len(chicago) == 2
    assert 14.4 <= chicago[0] <= 17.8
    assert 17.7 <= chicago[1] <= 20.2


def test_whisper_alignment_of_a_segment_over_30_s(asr: Any, segments: list[dict[str, Any]], audio: np.ndarray) -> None:
    speech = audio[int(segments[0]["start"] * SR) : int(segments[-1]["end"] * SR)]
    copies = 3
    long_audio = np.concatenate([speech] * copies)
    text = " ".join(s["text"].strip() for s in segments)
    segment = {"start": 0.0, "end": len(long_audio) / SR, "text": " ".join([text] * copies)}
    seen: list[float] = []
    (out,) = align_with_whisper(asr, [segment], long_audio, "en", progress=seen.append)
    words = out["words"]
    per_copy = len(text.split())
    assert len(words) == copies * per_copy and seen == [100.0]
    starts = [w["start"] for w in words]
    assert None not in starts and starts == sorted(starts)
    assert words[-1]["end"] <= len(long_audio) / SR
    for k in range(1, copies):  # each copy's first word lands near where that copy starts
        assert abs(words[k * per_copy]["start"] - k * len(speech) / SR) < 1.5


def test_whisper_alignment_edge_cases(asr: Any, audio: np.ndarray) -> None:
    out = align_with_whisper(
        asr,
        [
            {"start": 1.0, "end": 2.0, "text": "   "},
            {"start": 40.0, "end": 41.0, "text": " Beyond the end."},  # the audio is 30 s long
        ],
        audio,
        "en",
    )
    assert out[0]["words"] == []
    assert [w["word"] for w in out[1]["words"]] == ["Beyond", "the", "end."]
    assert all(w["start"] is None and w["end"] is None for w in out[1]["words"]), "kept, untimed"


def test_offline_silero_vad(audio: np.ndarray) -> None:
    from whisperx_service.pipeline.models.vad import OfflineSileroVad

    regions = OfflineSileroVad()({"waveform": audio, "sample_rate": SR})
    assert regions
    assert 6.0 < regions[0].start < 7.5  # the call's first word is at 6.68 s
    assert all(0 <= r.start < r.end <= len(audio) / SR for r in regions)


def test_offline_diarization_finds_two_speakers(settings: Settings, audio: np.ndarray) -> None:
    diarizer = loaders.load_diarizer(settings)
    df = diarizer(audio, num_speakers=2)
    assert df["speaker"].nunique() == 2
    hypothesis = [(float(r.start), float(r.end), str(r.speaker)) for r in df.itertuples(index=False)]
    d = der(read_rttm(), hypothesis)
    print(f"\n[sample call] DER {d:.4f}")
    assert d < 0.08  # measured 0.06 on the CPU reference setup


def test_tiny_wav2vec2_aligner_keeps_words(
    settings: Settings, models_dir: Path, segments: list[dict[str, Any]], audio: np.ndarray
) -> None:
    import whisperx

    w2v2 = settings.model_copy(
        update={"align": AlignSettings(backend=AlignBackend.wav2vec2, model=str(models_dir / "w2v2-tiny-random-en"))}
    )
    model, metadata = loaders.load_aligner(w2v2, "en")
    assert metadata["type"] == "huggingface" and metadata["language"] == "en"
    out = whisperx.align(segments, model, metadata, audio, "cpu", return_char_alignments=False)
    words = [w for s in out["segments"] for w in s["words"]]
    assert len(words) == len(" ".join(s["text"] for s in segments).split())
    # Random weights: times mean nothing, but the ones given are inside the audio.
    assert all(0 <= w["start"] <= w["end"] <= len(audio) / SR for w in words if "start" in w)


def test_load_errors_are_clear(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadFailed, match="English-only"):
        loaders.load_asr(settings, language="fr")
    missing = settings.model_copy(update={"diarize": DiarizeSettings(pipeline=str(tmp_path / "nowhere"))})
    with pytest.raises(ModelLoadFailed, match="models prepare"):
        loaders.load_diarizer(missing)
    no_model = settings.model_copy(update={"align": AlignSettings(backend=AlignBackend.wav2vec2)})
    with pytest.raises(ModelLoadFailed, match="ALIGN_BACKEND=whisper"):
        loaders.load_aligner(no_model, "xx")
    with pytest.raises(ModelLoadFailed, match=r"WAV2VEC2_ASR_BASE_960H.*HF_HUB_OFFLINE"):
        loaders.load_aligner(no_model, "en")  # WhisperX's default, not downloaded: fails at once
