"""The service's transcript text is WhisperX's own text, character for character (real models).

Each clip is shorter than 30 s, so WhisperX and the service decode it as one window of the same
audio with the same loaded ASR pipeline; the service then aligns (Whisper backend), diarizes and
splits segments at speaker turns. Joining the stripped segment texts with one space on both
sides must give the same string: a re-join of word tokens would show up as "cold -hearted" or
"5 -5". Clips: pyannote's sample phone call and a two-voice espeak-ng clip (made in the test)
full of hyphenated words and numbers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import MODELS_DIR
from tests.speech import SAMPLE_WAV, make_conversation
from whisperx_service.config import AsrSettings, Device, ModelsSettings, Settings
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.domain.transcript import Transcript
from whisperx_service.pipeline.plan import JobPaths
from whisperx_service.pipeline.runner import run_pipeline
from whisperx_service.worker.models import ModelCache

#: Two voices, one WhisperX segment: the service cuts it at the speaker change.
HYPHEN_SCRIPT = [
    ("A", "She was a cold-hearted and ill-disposed woman. The match ended 5-5 after extra time."),
    ("B", "Please send me an e-mail tomorrow, and bring the well-known twenty-one page report."),
]
#: A word with a hyphen between two letters or digits.
HYPHENATED = re.compile(r"\w-\w")


@pytest.fixture(scope="module")
def settings() -> Settings:
    from whisperx_service.pipeline.models.prepare import prepare_models

    prepare_models(MODELS_DIR)
    return Settings(asr=AsrSettings(device=Device.cpu, threads=2), models=ModelsSettings(dir=MODELS_DIR))


@pytest.fixture(scope="module")
def cache(settings: Settings) -> ModelCache:
    return ModelCache(settings)  # one load of each model for every test here


def whisperx_segments(cache: ModelCache, settings: Settings, wav: Path) -> list[dict[str, Any]]:
    """WhisperX's own transcription (its VAD, its window grouping) with the service's loaded ASR pipeline."""
    import whisperx

    audio = np.asarray(whisperx.load_audio(str(wav)), dtype=np.float32)
    out = cache.asr().transcribe(
        audio, batch_size=settings.asr.batch_size, language="en", chunk_size=settings.asr.window_s
    )
    return list(out["segments"])


def service_transcript(cache: ModelCache, settings: Settings, wav: Path, work: Path) -> Transcript:
    """The service's pipeline in-process: decode, plan, transcribe, align (whisper), diarize, merge."""
    return run_pipeline(
        wav,
        JobPaths(work=work / "work", chunks=work / "chunks"),
        JobOptions(language="en", num_speakers=2),
        cache,
        settings,
        lambda *_: None,
    )


def compare(cache: ModelCache, settings: Settings, wav: Path, work: Path) -> tuple[str, Transcript]:
    """Assert the service's text equals WhisperX's; returns that text and the transcript."""
    segments = whisperx_segments(cache, settings, wav)
    # One window each side: WhisperX made one segment (<= 30 s), the service one chunk.
    assert len(segments) == 1 and segments[0]["end"] - segments[0]["start"] <= settings.asr.window_s
    expected = " ".join(s["text"].strip() for s in segments)
    t = service_transcript(cache, settings, wav, work)
    assert t.chunks == 1
    got = " ".join(s.text.strip() for s in t.segments)
    print(f"\n[whisperx] {expected}\n[service ] {got}")
    assert got == expected
    # The public words carry no spacing, and together they are the text's whitespace pieces.
    assert [w.word for w in t.words()] == got.split()
    return got, t


def split_at_turns(t: Transcript) -> bool:
    """Segments were split at speaker turns: two speakers' segments, so the text was cut inside
    WhisperX's one segment."""
    return len({s.speaker for s in t.segments}) == 2 and len(t.segments) >= 2


def test_pyannote_sample_text_is_whisperx_text(cache: ModelCache, settings: Settings, tmp_path: Path) -> None:
    text, t = compare(cache, settings, SAMPLE_WAV, tmp_path)
    assert "New Jersey" in text and "Chicago" in text
    assert split_at_turns(t)


def test_hyphenated_words_and_numbers_are_whisperx_text(cache: ModelCache, settings: Settings, tmp_path: Path) -> None:
    wav, _ = make_conversation(tmp_path / "clip", HYPHEN_SCRIPT, pause_s=0.4)
    text, t = compare(cache, settings, wav, tmp_path)
    hyphenated = [w.word for w in t.words() if HYPHENATED.search(w.word)]
    assert len(hyphenated) >= 2, text  # the clip really tests hyphens (measured: cold-hearted, 5-5, ...)
    assert not re.search(r"\w -\w", text)
    # Where tiny.en heard the second voice too (it did in every run but one full-suite run, where
    # WhisperX and the service alike ended the window after the first sentence), the service cut
    # WhisperX's one segment at the speaker change without changing its text.
    if "report" in text:
        assert split_at_turns(t), [(s.speaker, s.text) for s in t.segments]
