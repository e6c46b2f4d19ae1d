"""The `whisper` alignment backend: word times from the Whisper model's own cross-attention.

This is the method behind openai-whisper's `word_timestamps=True`: the segment's text is force-fed
to the decoder, the cross-attention weights of the model's alignment heads are median-filtered, and
dynamic time warping finds the monotonic path from text tokens to 20 ms audio frames. CTranslate2
implements it as `Whisper.align`, which faster-whisper exposes as `WhisperModel.find_alignment`.
It needs no model beyond the ASR one and works for every language the ASR model speaks, so it is
also the fallback where no wav2vec2 aligner exists for a language.

Whisper's encoder sees at most 30 s (3000 mel frames). A segment longer than that is aligned in
windows of at most 30 s: each window gets about its share of the remaining tokens (by the segment's
average token rate); words that end before the window's last `WINDOW_GUARD_S` seconds are kept,
and the next window starts at the end of the last kept word, with the tokens after it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Sample rate (Hz) of the audio Whisper takes.
SAMPLE_RATE = 16_000
#: Mel frame hop (samples): 10 ms; faster_whisper.FeatureExtractor.hop_length.
HOP_LENGTH = 160
#: Longest audio (s) one encoder pass sees: openai-whisper's CHUNK_LENGTH (3000 frames of 10 ms).
MAX_WINDOW_S = 30.0
#: In a window of a long segment, words ending in its last seconds are left for the next window:
#: the tokens that do not fit in the window are squeezed there by the DTW path.
WINDOW_GUARD_S = 5.0
#: Shorter audio (s) than this is not aligned (the encoder output would be empty).
MIN_WINDOW_S = 0.05


@dataclass
class _Unit:
    """One word as Whisper's tokenizer splits it (punctuation is a unit of its own)."""

    text: str  # with its leading space, as decoded
    tokens: list[int]
    start: float | None  # absolute seconds
    end: float | None
    score: float | None  # mean token probability, 0-1


def align_with_whisper(
    asr_pipeline: Any,
    segments: Sequence[dict[str, Any]],
    audio: np.ndarray,
    language: str,
    progress: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Word-align transcript segments with the Whisper model that produced them.

    Args:
        asr_pipeline: WhisperX `FasterWhisperPipeline` (from `loaders.load_asr`); its `.model` is a
            faster-whisper `WhisperModel`.
        segments: `{"start": s, "end": s, "text": str, ...}` dicts (absolute seconds), as
            `pipeline.transcribe` returns them.
        audio: (num_samples,) float32 mono at 16 kHz; segment times index into it.
        language: language code of the text (ignored by English-only models).
        progress: called with the percent done (0-100] after each segment.

    Returns:
        One dict per input segment, a copy with `words: [{"word", "start", "end", "score"}]` added:
        times in absolute seconds (3 decimals), non-decreasing and inside the segment's audio;
        `score` the mean token probability (0-1). Punctuation is merged into the previous word (or
        the next one at the start). A word that could not be timed keeps `start`/`end`/`score`
        None. A segment with empty text gets `words: []`. Segment `start`/`end` are unchanged.

    Raises:
        ValueError: `language` is not a Whisper language code (multilingual models).
    """
    from faster_whisper.tokenizer import Tokenizer

    model = asr_pipeline.model
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    audio_s = len(audio) / SAMPLE_RATE
    aligned: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        units = _align_segment(model, tokenizer, segment, audio, audio_s)
        aligned.append({**segment, "words": _merge_punctuation(units)})
        if progress is not None:
            progress(100.0 * (index + 1) / len(segments))
    return aligned


def _align_segment(
    model: Any, tokenizer: Any, segment: dict[str, Any], audio: np.ndarray, audio_s: float
) -> list[_Unit]:
    text = str(segment.get("text") or "").strip()
    if not text:
        return []
    tokens: list[int] = [t for t in tokenizer.encode(" " + text) if t < tokenizer.eot]
    start = max(0.0, float(segment["start"]))
    end = min(float(segment["end"]), audio_s)
    if end - start < MIN_WINDOW_S:
        return _untimed(tokenizer, tokens)

    units: list[_Unit] = []
    cursor, next_token = start, 0
    tokens_per_s = len(tokens) / (end - start)
    while next_token < len(tokens):
        window_end = min(cursor + MAX_WINDOW_S, end)
        last = end - cursor <= MAX_WINDOW_S
        if window_end - cursor < MIN_WINDOW_S:
            units += _untimed(tokenizer, tokens[next_token:])
            break
        if last:
            window_tokens = tokens[next_token:]
        else:
            share = math.ceil(tokens_per_s * (window_end - cursor))
            window_tokens = tokens[next_token : next_token + max(1, share)]
        timed = _align_window(model, tokenizer, window_tokens, audio, cursor, window_end)
        if timed is None:
            units += _untimed(tokenizer, window_tokens)
            next_token += len(window_tokens)
            cursor = window_end
            continue
        if last:
            units += timed
            break
        # Times are monotonic, so the words ending before the guard are a prefix; keep >= 1 to progress.
        limit = window_end - WINDOW_GUARD_S
        kept = timed[: max(1, sum(1 for u in timed if u.end is not None and u.end <= limit))]
        units += kept
        next_token += sum(len(u.tokens) for u in kept)
        cursor = max(cursor, kept[-1].end or cursor)
    return units


def _align_window(
    model: Any, tokenizer: Any, tokens: list[int], audio: np.ndarray, start: float, end: float
) -> list[_Unit] | None:
    """Align `tokens` to audio[start:end] (<= 30 s); None when alignment fails or returns nothing."""
    chunk = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    extractor = model.feature_extractor
    max_frames = int(MAX_WINDOW_S * SAMPLE_RATE / HOP_LENGTH)
    features = extractor(chunk)[:, :max_frames]  # (n_mels, frames)
    num_frames = min(math.ceil(len(chunk) / HOP_LENGTH), max_frames)
    features = np.pad(features, ((0, 0), (0, max_frames - features.shape[-1])))
    try:
        encoded = model.encode(features)
        result = model.find_alignment(tokenizer, [tokens], encoded, num_frames)[0]
    except (RuntimeError, ValueError, IndexError) as exc:
        log.warning("whisper alignment failed for %.2f-%.2f s: %s", start, end, exc)
        return None
    if not result:
        return None
    units = []
    previous = start
    for word in result:
        # Clamp into the window and keep times monotonic (DTW is; rounding and clamping must stay so).
        word_start = min(max(start + float(word["start"]), previous), end)
        word_end = min(max(start + float(word["end"]), word_start), end)
        previous = word_end
        units.append(_Unit(str(word["word"]), list(word["tokens"]), word_start, word_end, float(word["probability"])))
    return units


def _untimed(tokenizer: Any, tokens: list[int]) -> list[_Unit]:
    if not tokens:
        return []
    words, word_tokens = tokenizer.split_to_word_tokens(tokens)
    return [_Unit(w, list(t), None, None, None) for w, t in zip(words, word_tokens, strict=True)]


def _is_punctuation(text: str) -> bool:
    """No letter or digit (Unicode-aware, unlike string.punctuation)."""
    stripped = text.strip()
    return bool(stripped) and all(not c.isalnum() for c in stripped)


def _merge_punctuation(units: list[_Unit]) -> list[dict[str, Any]]:
    """Turn units into output words: punctuation joins the previous word (the next one at the start)."""
    words: list[dict[str, Any]] = []
    pending = ""  # leading punctuation waiting for the first word
    for unit in units:
        text = unit.text.strip()
        if not text:
            continue
        if _is_punctuation(text):
            if words:
                words[-1]["word"] += text
            else:
                pending += text
            continue
        words.append(
            {
                "word": pending + text,
                "start": None if unit.start is None else round(unit.start, 3),
                "end": None if unit.end is None else round(unit.end, 3),
                "score": None if unit.score is None else round(unit.score, 3),
            }
        )
        pending = ""
    if pending:  # text made of punctuation only
        words.append({"word": pending, "start": None, "end": None, "score": None})
    return words
