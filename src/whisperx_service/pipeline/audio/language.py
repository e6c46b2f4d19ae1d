"""Spoken-language detection from speech, not from the first 30 s of the file.

Whisper's own detection looks at the first 30 s window, which in a long recording is often
music, silence or noise. Here: probe windows spread over the whole file, keep only what the VAD
calls speech, and let Whisper's language head vote over up to `max_votes` 30 s blocks of speech;
the language with the largest summed probability wins. A block the language head is unsure of
(top probability under `MIN_PROBABILITY`: music, tones or noise that the VAD let through) does
not vote, unless no block is sure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.pcm import read_window

#: One detection input: Whisper's window length (s).
BLOCK_S = 30.0
#: Audio read around each probe position (s); speech is collected from it.
PROBE_S = 60.0
#: A block votes only if its top language probability reaches this.
MIN_PROBABILITY = 0.5

Detector = Callable[[np.ndarray], tuple[str, float]]


def speech_blocks(pcm: np.ndarray, *, probes: int = 8, max_votes: int = 5) -> list[np.ndarray]:
    """Blocks of up to `BLOCK_S` seconds made only of speech, from probes spread over the file.

    Args:
        pcm: int16 16 kHz samples (memmap; only the probed windows are read).
        probes: number of evenly spaced probe windows of `PROBE_S` s.
        max_votes: stop after this many blocks with at least 5 s of speech.
    Returns:
        float32 arrays (speech only, silence and noise cut out), each 5-30 s long.
    """
    total_s = len(pcm) / SAMPLE_RATE
    n = max(1, min(probes, int(np.ceil(total_s / PROBE_S))))  # probes overlap only in short files
    starts = np.linspace(0.0, max(0.0, total_s - PROBE_S), num=n)
    blocks: list[np.ndarray] = []
    for start in sorted(set(float(s) for s in starts)):
        audio = read_window(pcm, start, start + PROBE_S)
        stamps = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300), sampling_rate=SAMPLE_RATE)
        speech = np.concatenate([audio[t["start"] : t["end"]] for t in stamps]) if stamps else audio[:0]
        speech = speech[: int(BLOCK_S * SAMPLE_RATE)]
        if len(speech) >= 5 * SAMPLE_RATE:
            blocks.append(speech)
        if len(blocks) >= max_votes:
            break
    return blocks


def vote(blocks: list[np.ndarray], detect: Detector) -> tuple[str | None, float | None]:
    """Language with the largest summed probability over the sure blocks, and its mean probability.

    Blocks under `MIN_PROBABILITY` are left out unless every block is.
    Returns (None, None) when there is no block to vote with.
    """
    results = [detect(block) for block in blocks]
    sure = [r for r in results if r[1] >= MIN_PROBABILITY] or results
    scores: dict[str, float] = defaultdict(float)
    for lang, prob in sure:
        scores[lang] += prob
    if not scores:
        return None, None
    best = max(scores, key=lambda k: scores[k])
    return best, round(scores[best] / sum(1 for lang, _ in sure if lang == best), 3)


def whisper_detector(whisper_model: object) -> Detector:
    """Detector on faster-whisper's `WhisperModel.detect_language` (the model's language head)."""

    def detect(audio: np.ndarray) -> tuple[str, float]:
        lang, prob, _ = whisper_model.detect_language(audio)  # type: ignore[attr-defined]
        return str(lang), float(prob)

    return detect
