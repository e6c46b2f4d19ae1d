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

from whisperx_service.transcripts.text import word_separator

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
    """One word unit as Whisper's tokenizer splits it: a new unit at each leading space and at each
    punctuation token, so "cold-hearted" is " cold" + "-hearted" and "woman." is " woman" + "."."""

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
        `score` the mean token probability (0-1). Words are the segment text's pieces between
        whitespace, as WhisperX's wav2vec2 aligner splits it ("cold-hearted", "woman."), so each
        word is found in the text in order; in languages written without spaces each of Whisper's
        word units is a word, with punctuation joined to the word it touches. A word that could not
        be timed keeps `start`/`end`/`score` None. A segment with empty text gets `words: []`.
        Segment `start`/`end` and `text` are unchanged.

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
        aligned.append({**segment, "words": _words(units, language)})
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


def _group_units(units: list[_Unit], spaced: bool) -> list[list[_Unit]]:
    """Units grouped into words as WhisperX's space split groups the text.

    A unit that does not start with whitespace and follows a unit that does not end with it is
    part of the previous word when the language is written with spaces (`spaced`): "cold" + "-hearted",
    "woman" + "." make "cold-hearted", "woman.". Without spaces each unit is a word of its own,
    except that punctuation ("。") joins the word it touches, the previous one, or the next one
    at the start. Whitespace-only units are dropped (they only mark a boundary).
    """
    groups: list[list[_Unit]] = []
    pending: list[_Unit] = []  # leading punctuation waiting for the first word (no-space languages)
    boundary = True  # the next unit starts a new word
    for unit in units:
        if not unit.text.strip():
            boundary = True
            continue
        touching = not boundary and not unit.text[0].isspace()
        if groups and touching and (spaced or _is_punctuation(unit.text)):
            groups[-1].append(unit)
        elif not spaced and _is_punctuation(unit.text) and not groups:
            pending.append(unit)
        else:
            if pending and not unit.text[0].isspace():
                groups.append([*pending, unit])
            else:
                groups += [[p] for p in pending]
                groups.append([unit])
            pending = []
        boundary = unit.text[-1].isspace()
    groups += [[p] for p in pending]  # text made of punctuation only
    return groups


def _words(units: list[_Unit], language: str) -> list[dict[str, Any]]:
    """Turn units into output words `{word, start, end, score}` (see `_group_units`).

    A word's text is its units' texts concatenated and stripped, its times run from its first
    timed unit's start to its last timed unit's end (None when no unit is timed), its score is the
    mean probability of its timed units' tokens.
    """
    out: list[dict[str, Any]] = []
    for group in _group_units(units, word_separator(language) != ""):
        timed = [u for u in group if u.start is not None and u.end is not None]
        scored = [(u.score, len(u.tokens)) for u in timed if u.score is not None]
        weight = sum(n for _, n in scored)
        score = sum(p * n for p, n in scored) / weight if weight else None
        out.append(
            {
                "word": "".join(u.text for u in group).strip(),
                "start": round(timed[0].start, 3) if timed and timed[0].start is not None else None,
                "end": round(timed[-1].end, 3) if timed and timed[-1].end is not None else None,
                "score": None if score is None else round(score, 3),
            }
        )
    return out
