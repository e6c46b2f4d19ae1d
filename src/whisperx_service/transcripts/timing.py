"""Word times: keep every word an aligner returned and give the untimed ones times (seconds)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from whisperx_service.domain.transcript import Word


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
            A `speaker` string, when present, is carried over. `word` is kept as given, leading
            whitespace included (the pipeline's words carry the text preceding them).
        seg_start: start of the segment the words belong to (seconds).
        seg_end: end of that segment (seconds).

    Returns:
        One `Word` per input dict, in the same order. Aligned words keep their times and score
        (`aligned=True`). Each run of unaligned words shares the gap between the previous aligned
        word's end (or `seg_start`) and the next aligned word's start (or `seg_end`), split in
        proportion to character length without surrounding whitespace (a word of 0 characters
        counts as 1), with `aligned=False`
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
    texts = [str(d.get("word") or "") for d in words]
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
        weights = [max(len(texts[k].strip()), 1) for k in range(i, j)]
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
