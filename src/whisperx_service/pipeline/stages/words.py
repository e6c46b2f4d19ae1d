"""Words of aligned WhisperX segments: absolute times, and the text that precedes each word.

Pure Python (no model imports), so it is cheap to test.
"""

from __future__ import annotations

from typing import Any

from whisperx_service.domain.transcript import Word
from whisperx_service.transcripts.text import words_with_spacing
from whisperx_service.transcripts.timing import interpolate_word_times


def words_of_segments(segments: list[dict[str, Any]], offset_s: float, end_s: float, sep: str) -> list[Word]:
    """Every word of WhisperX segments as `Word`s with absolute times (unaligned ones interpolated).

    Args:
        segments: WhisperX segment dicts `{start, end, text, words?}` (seconds from the start of
            the audio the models read), as `transcribe` and `align` return them. A segment without
            `words` (alignment off or failed) gets its text's whitespace-separated pieces.
        offset_s: where that audio starts in the file (seconds); added to every time.
        end_s: where it ends in the file (seconds); segment bounds are clipped to it.
        sep: `word_separator` of the language.

    Returns:
        The words in order, times in seconds from the file's start (`interpolate_word_times`
        times the unaligned ones and flags them `aligned=False`). Each `Word.word` starts with
        the text that precedes it in its segment's `text` (`words_with_spacing`: normally one
        space, "" where the text has none, the segment text's leading whitespace or `sep` for a
        segment's first word), so the words of any stretch concatenate to WhisperX's own text
        for it (`build_segments` relies on this).
    """
    out: list[Word] = []
    for seg in segments:
        start = max(0.0, min(float(seg["start"]), end_s - offset_s))
        end = max(start, min(float(seg["end"]), end_s - offset_s))
        text = str(seg.get("text") or "")
        raw: list[dict[str, Any]] = seg.get("words") or [{"word": w} for w in text.split()]
        spaced = words_with_spacing(text, [str(w.get("word") or "") for w in raw], sep)
        shifted = [
            {**w, "word": spaced[i],
             "start": w["start"] + offset_s if w.get("start") is not None else None,
             "end": w["end"] + offset_s if w.get("end") is not None else None}
            for i, w in enumerate(raw)
        ]  # fmt: skip
        out += interpolate_word_times(shifted, start + offset_s, end + offset_s)
    return out
