"""Segments of the merged words: never across a speaker change, after one-word flips are undone."""

from __future__ import annotations

import math
from collections.abc import Sequence

from whisperx_service.domain.transcript import Segment, SpeakerTurn, Word

#: A word at most this long (seconds) whose speaker differs from two identical neighbours takes
#: theirs: diarization turn boundaries jitter by about 0.1-0.3 s around the true change.
SMOOTH_MAX_WORD_S = 0.3


def smooth_speaker_flips(words: list[Word], max_word_s: float = SMOOTH_MAX_WORD_S) -> list[Word]:
    """Undo isolated one-word speaker flips caused by diarization boundary jitter.

    Rule (applied left to right, each decision seeing the decisions before it): a word shorter
    than `max_word_s` seconds whose speaker differs from the speaker Y shared by both its
    neighbours (Y not None) takes Y. Only a single word between two words of the same other
    speaker changes; a flip of two or more words, or a short word at a real change (neighbours
    differ), is kept. Why: diarization turn boundaries land about 0.1-0.3 s from the true change,
    so a short word near a boundary is often given the neighbouring turn's speaker, while a real
    one-word interjection ("yes") between two turns of another speaker is usually longer or is
    separated by its own turns. `max_word_s <= 0` disables smoothing.

    Returns:
        New list; changed words are copies, the input is not modified.
    """
    out = list(words)
    if max_word_s <= 0:
        return out
    for i in range(1, len(out) - 1):
        w, left, right = out[i], out[i - 1], out[i + 1]
        y = left.speaker
        if y is not None and right.speaker == y and w.speaker != y and (w.end - w.start) < max_word_s:
            out[i] = w.model_copy(update={"speaker": y})
    return out


def _segment(seg_id: int, words: Sequence[Word]) -> Segment:
    """A segment made of `words` (non-empty, one speaker): text, bounds and speaker from them.

    The text is the words' texts concatenated (each carries the text preceding it in WhisperX's
    segment text), stripped; the segment's words are stripped copies.
    """
    return Segment(
        id=seg_id,
        start=words[0].start,
        end=max(w.end for w in words),
        text="".join(w.word for w in words).strip(),
        speaker=words[0].speaker,
        words=[w if w.word == w.word.strip() else w.model_copy(update={"word": w.word.strip()}) for w in words],
    )


def _runs(words: Sequence[Word]) -> list[list[Word]]:
    """Maximal runs of consecutive words with the same speaker."""
    runs: list[list[Word]] = []
    for w in words:
        if runs and runs[-1][-1].speaker == w.speaker:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def build_segments(
    words: list[Word],
    *,
    max_gap_s: float = 1.5,
    max_duration_s: float = 30.0,
    smooth_max_s: float = SMOOTH_MAX_WORD_S,
) -> list[Segment]:
    """Group a flat, time-ordered word list (e.g. after merging chunks) into segments.

    After `smooth_speaker_flips`, a new segment starts at every speaker change, at every pause
    longer than `max_gap_s` seconds (next word's start minus the segment's end), and before a
    word whose end would make the segment longer than `max_duration_s` seconds (30 s by default,
    the length of Whisper's input window, so segments look like Whisper's own). A single word
    longer than `max_duration_s` makes a segment of its own.

    Text: each input word's `word` carries the text that precedes it in its WhisperX segment's
    text (one space, "" or other whitespace; see `stages.words.words_of_segments`), so a segment's text is
    its words' texts concatenated and stripped: WhisperX's own text cut at word boundaries, with
    its spacing and punctuation ("cold-hearted" stays one word, never "cold -hearted"). The
    segment's words are stripped copies (the public `word` has no leading space). Its start/end
    are its first word's start and its latest word's end (seconds), its speaker is its words'
    speaker; ids run 0..n-1.

    Raises:
        ValueError: `max_gap_s` is negative or `max_duration_s` is not positive.
    """
    if max_gap_s < 0 or max_duration_s <= 0:
        raise ValueError("max_gap_s must be >= 0 and max_duration_s > 0")
    out: list[Segment] = []
    for run in _runs(smooth_speaker_flips(words, smooth_max_s)):
        cur: list[Word] = []
        cur_end = -math.inf
        for w in run:
            if cur and (w.start - cur_end > max_gap_s or max(cur_end, w.end) - cur[0].start > max_duration_s):
                out.append(_segment(len(out), cur))
                cur, cur_end = [], -math.inf
            cur.append(w)
            cur_end = max(cur_end, w.end)
        if cur:
            out.append(_segment(len(out), cur))
    return out


def turn_segments(turns: Sequence[SpeakerTurn]) -> list[Segment]:
    """Segments of a job that transcribes nothing (`task=diarize`): one per speaker turn, in
    time order, with no text and no words, so every result format shows who spoke when."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    return [
        Segment(id=i, start=round(t.start, 3), end=round(t.end, 3), text="", speaker=t.speaker)
        for i, t in enumerate(ordered)
    ]
