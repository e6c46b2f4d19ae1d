"""Words after alignment: fill missing times, put speakers on words, cut segments at speaker changes.

Pure Python (no torch, no WhisperX): every function takes and returns the models of
`whisperx_service.domain.transcript`, and every time is in seconds from the audio's start.

The steps, in the order the runner uses them:

1. `interpolate_word_times` keeps every word the aligner returned, timing the ones it could not
   (WhisperX's aligners leave `start`/`end` out for words made only of characters missing from the
   model's vocabulary, such as digits or symbols).
2. `relabel_speakers` renames diarization labels to `SPEAKER_00, SPEAKER_01, ...` by first
   appearance; `speaker_stats` gives each speaker's talk time.
3. `assign_speakers` puts on each word the speaker whose turns overlap it the most (the rule of
   WhisperX's `assign_word_speakers`, which sums the intersections per speaker), falling back to
   the nearest turn.
4. `build_segments` makes segments of the merged, time-ordered words that never straddle a
   speaker change, after `smooth_speaker_flips` has undone one-word flips caused by diarization
   boundary jitter.
"""

from __future__ import annotations

import bisect
import math
import numbers
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whisperx_service.domain.transcript import Segment, SpeakerInfo, SpeakerTurn, Word

#: A word at most this long (seconds) whose speaker differs from two identical neighbours takes
#: theirs: diarization turn boundaries jitter by about 0.1-0.3 s around the true change.
SMOOTH_MAX_WORD_S = 0.3
#: Languages written without spaces between words: openai-whisper's tokenizer splits their words on
#: Unicode characters instead of spaces (`Tokenizer.split_to_word_tokens`), and WhisperX joins
#: "ja"/"zh" words with "" (`whisperx.alignment.LANGUAGES_WITHOUT_SPACES`).
LANGUAGES_WITHOUT_SPACES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


_TRAILING = frozenset(".。,，!！?？:：”)]}、;；…»")


def word_separator(language: str | None) -> str:
    """The string that joins two words of `language` (an ISO 639-1 code): "" or " "."""
    return "" if (language or "").lower() in LANGUAGES_WITHOUT_SPACES else " "


def is_trailing_punctuation(token: str) -> bool:
    """True when `token` is non-empty and made only of punctuation that closes what precedes it.

    Such tokens are glued to the previous word when text is rebuilt ("world" + "," -> "world,").
    The set is openai-whisper's `append_punctuations` (`.。,，!！?？:：”)]}、`) plus `;；…»` and the
    remaining closing brackets and final quotes (Unicode categories Pe and Pf), without the
    ambiguous straight quotes. Tokens such as "&", "-", "(" or "¿" are words of their own.
    """
    t = token.strip()
    return bool(t) and all(c in _TRAILING or unicodedata.category(c) in ("Pe", "Pf") for c in t)


def join_words(tokens: Iterable[str], sep: str = " ") -> str:
    """Rebuild text from word tokens: join with `sep`, but no separator before trailing punctuation.

    Tokens are stripped and inner whitespace (including newlines) collapses to one space; empty
    tokens add nothing. A token made only of trailing punctuation (`is_trailing_punctuation`)
    is glued to the text before it. Words usually carry their own punctuation (WhisperX splits the
    segment text on spaces), so this is the inverse of that split.
    """
    out = ""
    for raw in tokens:
        tok = " ".join(raw.split())
        if not tok:
            continue
        out = tok if not out else (out + tok if is_trailing_punctuation(tok) else out + sep + tok)
    return out


# --------------------------------------------------------------------------- times


def _finite(x: Any) -> float | None:
    """`x` as a float when it is a finite real number (bool excluded; numpy scalars accepted), else None."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def interpolate_word_times(words: list[dict[str, Any]], seg_start: float, seg_end: float) -> list[Word]:
    """Turn aligner output into `Word`s, keeping every word and timing the untimed ones.

    Args:
        words: dicts `{"word", "start"?, "end"?, "score"?}` in spoken order, as WhisperX's
            aligners produce; times in seconds from the audio's start. A word is *aligned* when
            both `start` and `end` are finite numbers; otherwise (missing, None, NaN) it is not.
            A `speaker` string, when present, is carried over.
        seg_start: start of the segment the words belong to (seconds).
        seg_end: end of that segment (seconds).

    Returns:
        One `Word` per input dict, in the same order. Aligned words keep their times and score
        (`aligned=True`). Each run of unaligned words shares the gap between the previous aligned
        word's end (or `seg_start`) and the next aligned word's start (or `seg_end`), split in
        proportion to character length (a word of 0 characters counts as 1), with `aligned=False`
        and `score=None`: the same proportional rule WhisperX uses to place words inside a
        segment when it has no alignment. All times are clamped into `[seg_start, seg_end]`,
        each word has `end >= start` and each word starts no earlier than the previous one ends
        (an overlap between two aligned words is cut at its midpoint).

    Raises:
        ValueError: `seg_start` or `seg_end` is not finite, or `seg_end < seg_start`.
    """
    if not (math.isfinite(seg_start) and math.isfinite(seg_end)):
        raise ValueError(f"segment bounds must be finite, got [{seg_start}, {seg_end}]")
    if seg_end < seg_start:
        raise ValueError(f"segment ends before it starts: [{seg_start}, {seg_end}]")

    n = len(words)
    texts = [str(d.get("word") or "").strip() for d in words]
    starts: list[float | None] = [None] * n
    ends: list[float | None] = [None] * n
    aligned = [False] * n
    for i, d in enumerate(words):
        s, e = _finite(d.get("start")), _finite(d.get("end"))
        if s is None or e is None:
            continue
        aligned[i] = True
        s = min(max(s, seg_start), seg_end)
        e = min(max(e, s), seg_end)
        starts[i], ends[i] = s, e

    # Fix overlaps between consecutive aligned words: cut the overlap at its midpoint.
    prev = -1
    for i in range(n):
        si, ei = starts[i], ends[i]
        if si is None or ei is None:
            continue
        if prev >= 0:
            ps, pe = starts[prev], ends[prev]
            assert ps is not None and pe is not None
            if si < pe:
                cut = max((si + pe) / 2.0, ps)
                ends[prev] = cut
                si, ei = cut, max(ei, cut)
                starts[i], ends[i] = si, ei
        prev = i

    # Spread each run of unaligned words over its gap.
    i = 0
    while i < n:
        if starts[i] is not None:
            i += 1
            continue
        j = i
        while j < n and starts[j] is None:
            j += 1
        left = ends[i - 1] if i > 0 else seg_start
        right = starts[j] if j < n else seg_end
        assert left is not None and right is not None
        right = max(right, left)
        weights = [max(len(texts[k]), 1) for k in range(i, j)]
        total = sum(weights)
        acc = 0
        t0 = left
        for k, w in zip(range(i, j), weights, strict=True):
            acc += w
            t1 = right if acc == total else min(left + (right - left) * acc / total, right)
            starts[k], ends[k] = t0, t1
            t0 = t1
        i = j

    out: list[Word] = []
    for k, d in enumerate(words):
        s, e = starts[k], ends[k]
        assert s is not None and e is not None
        speaker = d.get("speaker")
        out.append(
            Word(
                word=texts[k],
                start=s,
                end=e,
                score=_finite(d.get("score")) if aligned[k] else None,
                speaker=speaker if isinstance(speaker, str) else None,
                aligned=aligned[k],
            )
        )
    return out


# --------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class _Coverage:
    """One speaker's talk time as disjoint, sorted intervals with a prefix sum of their lengths."""

    starts: list[float]
    ends: list[float]
    prefix: list[float]  # prefix[k] = total length of intervals 0..k-1

    @classmethod
    def of(cls, spans: Iterable[tuple[float, float]]) -> _Coverage:
        starts: list[float] = []
        ends: list[float] = []
        for s, e in sorted(spans):
            if starts and s <= ends[-1]:
                ends[-1] = max(ends[-1], e)
            else:
                starts.append(s)
                ends.append(e)
        prefix = [0.0]
        for s, e in zip(starts, ends, strict=True):
            prefix.append(prefix[-1] + (e - s))
        return cls(starts, ends, prefix)

    @property
    def total(self) -> float:
        return self.prefix[-1]

    def covered_until(self, x: float) -> float:
        """Seconds of talk time before `x`."""
        k = bisect.bisect_right(self.starts, x) - 1
        if k < 0:
            return 0.0
        return self.prefix[k] + min(x, self.ends[k]) - self.starts[k]

    def overlap(self, a: float, b: float) -> float:
        """Seconds of talk time inside `[a, b]`; O(log n)."""
        return max(self.covered_until(b) - self.covered_until(a), 0.0) if b > a else 0.0

    def distance(self, x: float) -> float:
        """Seconds from `x` to the nearest interval (0 inside one); O(log n)."""
        k = bisect.bisect_right(self.starts, x) - 1
        best = math.inf
        if k >= 0:
            best = max(x - self.ends[k], 0.0)
        if k + 1 < len(self.starts):
            best = min(best, self.starts[k + 1] - x)
        return best


def _coverages(turns: Iterable[SpeakerTurn]) -> dict[str, _Coverage]:
    """Per speaker, the union of its turns. Turns with a non-finite time are skipped; a turn with
    `end < start` counts as the instant `start`."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for t in turns:
        if not (math.isfinite(t.start) and math.isfinite(t.end)):
            continue
        spans.setdefault(t.speaker, []).append((t.start, max(t.end, t.start)))
    return {spk: _Coverage.of(v) for spk, v in sorted(spans.items())}


def assign_speakers(words: list[Word], turns: list[SpeakerTurn]) -> list[Word]:
    """Put a speaker on every word from the diarization turns.

    Rule: the speaker whose turns overlap the word's span `[start, end]` the most (seconds summed
    over that speaker's turns, overlapping turns of one speaker counted once), as WhisperX's
    `assign_word_speakers` does. A word that overlaps no turn (a zero-length word, a word in a
    pause) takes the speaker of the turn nearest to the word's midpoint. Ties go to the speaker
    label that sorts first, so the result is deterministic. With no usable turns, every speaker is
    None.

    Cost: O((W + T) log T) for W words, T turns and a handful of speakers: each speaker's turns
    are merged and prefix-summed once, each word is then answered by binary search.

    Returns:
        New `Word` objects (the input is not changed), same order and times.
    """
    cov = _coverages(turns)
    if not cov:
        return [w.model_copy(update={"speaker": None}) for w in words]
    out: list[Word] = []
    for w in words:
        best: str | None = None
        best_overlap = 0.0
        for spk, c in cov.items():  # sorted by label: the first of equals wins
            ov = c.overlap(w.start, w.end)
            if ov > best_overlap + 1e-9:
                best, best_overlap = spk, ov
        if best is None:
            mid = (w.start + w.end) / 2.0
            best = min(cov, key=lambda s: cov[s].distance(mid))
        out.append(w.model_copy(update={"speaker": best}))
    return out


def speaker_stats(turns: list[SpeakerTurn]) -> list[SpeakerInfo]:
    """Total talk time per speaker, sorted by speaker id.

    `talk_time_s` is the length in seconds of the union of the speaker's turns (overlapping turns
    of the same speaker count once; overlap with *other* speakers is counted for each of them),
    rounded to milliseconds. Turns with non-finite times are skipped.
    """
    return [SpeakerInfo(id=spk, talk_time_s=round(c.total, 3)) for spk, c in _coverages(turns).items()]


def speaker_label(index: int) -> str:
    """The public label of the `index`-th speaker (0-based): `SPEAKER_00`, `SPEAKER_01`, ...

    Same spelling as pyannote.audio's and WhisperX's labels.
    """
    return f"SPEAKER_{index:02d}"


def relabel_speakers(turns: list[SpeakerTurn]) -> tuple[list[SpeakerTurn], dict[str, str]]:
    """Rename diarization labels to `SPEAKER_00, SPEAKER_01, ...` in order of first appearance.

    A speaker's first appearance is the earliest start among its turns; equal starts are ordered
    by the original label. Apply the returned mapping to words or segments labelled with the old
    names (`apply_speaker_map`).

    Returns:
        The turns in their input order with new labels, and the mapping old label -> new label.
    """
    first: dict[str, float] = {}
    for t in turns:
        s = t.start if math.isfinite(t.start) else math.inf
        first[t.speaker] = min(first.get(t.speaker, math.inf), s)
    order = sorted(first, key=lambda spk: (first[spk], spk))
    mapping = {old: speaker_label(i) for i, old in enumerate(order)}
    return [t.model_copy(update={"speaker": mapping[t.speaker]}) for t in turns], mapping


def apply_speaker_map(words: list[Word], mapping: Mapping[str, str]) -> list[Word]:
    """Relabel words with `mapping` (old -> new); labels not in it and None stay as they are."""
    return [
        w.model_copy(update={"speaker": mapping.get(w.speaker, w.speaker)}) if w.speaker is not None else w
        for w in words
    ]


# --------------------------------------------------------------------------- segments


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


def _segment(seg_id: int, words: Sequence[Word], sep: str) -> Segment:
    """A segment made of `words` (non-empty, one speaker): text, bounds and speaker from them."""
    return Segment(
        id=seg_id,
        start=words[0].start,
        end=max(w.end for w in words),
        text=join_words((w.word for w in words), sep),
        speaker=words[0].speaker,
        words=list(words),
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
    word_sep: str = " ",
) -> list[Segment]:
    """Group a flat, time-ordered word list (e.g. after merging chunks) into segments.

    After `smooth_speaker_flips`, a new segment starts at every speaker change, at every pause
    longer than `max_gap_s` seconds (next word's start minus the segment's end), and before a
    word whose end would make the segment longer than `max_duration_s` seconds (30 s by default,
    the length of Whisper's input window, so segments look like Whisper's own). A single word
    longer than `max_duration_s` makes a segment of its own. Each segment's text is rebuilt from
    its words (`join_words` with `word_sep`; use `word_separator(language)`), its start/end are
    its first word's start and its latest word's end (seconds), its speaker is its words'
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
                out.append(_segment(len(out), cur, word_sep))
                cur, cur_end = [], -math.inf
            cur.append(w)
            cur_end = max(cur_end, w.end)
        if cur:
            out.append(_segment(len(out), cur, word_sep))
    return out
