"""Speakers on words: the diarization turns decide each word's speaker; labels by first appearance.

Pure Python on `domain.transcript` models; times in seconds from the audio's start.

- `assign_speakers` puts on each word the speaker whose turns overlap it the most (the rule of
  WhisperX's `assign_word_speakers`, which sums the intersections per speaker), falling back to
  the nearest turn.
- `relabel_speakers` renames diarization labels to `SPEAKER_00, SPEAKER_01, ...` by first
  appearance; `speaker_stats` gives each speaker's talk time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from whisperx_service.domain.transcript import SpeakerInfo, SpeakerTurn, Word


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
