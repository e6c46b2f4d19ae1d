"""A user's transcript (an `align` job) as the segments the aligner takes, one chunk at a time.

Timed transcripts (segments with times) are cut to the chunk. Plain text has no times: it is
anchored on the chunk's own transcription. Its words are matched to the ASR's words (difflib's
longest matching blocks over normalised words, so ASR errors only leave words unmatched); each
matched word goes to the ASR segment (one per ASR window) its match is in, an unmatched run of
words goes with the words around it, and a run that falls between two segments joins them into
one, so the aligner (not a guess) decides where in the joined span each word is. The segments
keep the ASR segments' spans (seconds from the chunk's origin), the text is the user's.

The placed words end no later than the speech region they start in (`clip_to_speech`).

A chunk takes the words from its first to its last match (the first chunk from the script's
start, the last one to its end): chunks overlap (CHUNK_OVERLAP_S), so words near a seam are
placed in both and the merge keeps one copy (`post/merge.py`).
"""

from __future__ import annotations

import bisect
import difflib
import re
from typing import Any

from whisperx_service.domain.script import Script
from whisperx_service.domain.transcript import Word

_NOT_WORD = re.compile(r"[^\w']+")


def _norm(word: str) -> str:
    """A word for matching: lower case, punctuation dropped (`Good,` and `good` match)."""
    return _NOT_WORD.sub("", word.lower())


def timed_segments(script: Script, origin_s: float, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """The transcript's timed segments that overlap the chunk [start_s, end_s), clipped to it.

    Args:
        origin_s: where the chunk's audio starts in the file (seconds); the result is relative to it.
    Returns:
        WhisperX segment dicts `{start, end, text}` in seconds from `origin_s`.
    """
    out = []
    for seg in script.segments or []:
        s, e = max(seg.start, start_s), min(seg.end, end_s)
        if e > s:
            out.append({"start": s - origin_s, "end": e - origin_s, "text": seg.text.strip()})
    return out


def anchor_text(
    words: list[str], asr_segments: list[dict[str, Any]], *, first: bool, last: bool
) -> list[dict[str, Any]]:
    """Place plain-text `words` on a chunk by its ASR segments (see the module's docstring).

    Args:
        words: the transcript's words, in order (the whole transcript).
        asr_segments: the chunk's ASR segments `{start, end, text}` (seconds from its origin), in order.
        first, last: the chunk is the file's first / last (it takes the words before its first /
            after its last match).
    Returns:
        Segments `{start, end, text}` with the user's words; [] when no word matched in a chunk
        that is not the only one (its words are placed by its neighbours). A single chunk
        without any match gets every word in one segment over its ASR segments' span.
    """
    spans = [(float(s["start"]), float(s["end"])) for s in asr_segments]
    heard = [(_norm(w), i) for i, s in enumerate(asr_segments) for w in str(s.get("text") or "").split()]
    heard = [(w, i) for w, i in heard if w]
    said = [_norm(w) for w in words]
    matcher = difflib.SequenceMatcher(a=said, b=[w for w, _ in heard], autojunk=False)
    seg_of: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if said[block.a + k]:
                seg_of[block.a + k] = heard[block.b + k][1]
    if not seg_of:
        if not (first and last) or not spans or not words:
            return []
        return [{"start": spans[0][0], "end": spans[-1][1], "text": " ".join(words)}]
    lo = 0 if first else min(seg_of)
    hi = len(words) - 1 if last else max(seg_of)
    groups: list[tuple[int, int, list[str]]] = []  # (first segment, last segment, words)
    pending: list[str] = []  # unmatched words since the last match
    for i in range(lo, hi + 1):
        seg = seg_of.get(i)
        if seg is None:
            pending.append(words[i])
            continue
        if not groups:
            groups.append((seg, seg, [*pending, words[i]]))
        elif seg == groups[-1][1]:
            groups[-1][2].extend([*pending, words[i]])
        elif pending:  # unmatched words between two segments: one span for both, the aligner places them
            a, _, ws = groups[-1]
            groups[-1] = (a, seg, [*ws, *pending, words[i]])
        else:
            groups.append((seg, seg, [words[i]]))
        pending = []
    if pending:
        groups[-1][2].extend(pending)
    return [{"start": spans[a][0], "end": spans[b][1], "text": " ".join(ws)} for a, b, ws in groups]


def clip_to_speech(words: list[Word], regions: list[tuple[float, float]]) -> list[Word]:
    """Fit words to the speech regions (VAD): each word ends no later than the end of the region
    it starts in, and the first word of a region starts at the region's start.

    Why: Whisper's attention alignment gives the pause after a turn's last word to that word (its
    end reaches the next word's start) and may start the next word late; the VAD's regions start
    and end where the speech does. A word that starts outside every region is left as it is.

    Args:
        words: words with absolute times (seconds), in order.
        regions: speech regions `(start, end)` in absolute seconds (the plan's windows' `segments`).
    Returns:
        New list; moved words are copies (start <= end kept).
    """
    ordered = sorted(regions)
    starts = [s for s, _ in ordered]
    out: list[Word] = []
    seen = -1  # the region of the previous word
    for w in words:
        i = bisect.bisect_right(starts, w.start) - 1
        if i >= 0 and w.start <= ordered[i][1]:
            begin, end = ordered[i]
            start = begin if i != seen and i > seen else w.start
            w = w.model_copy(update={"start": start, "end": max(start, min(w.end, end))})
            seen = i
        out.append(w)
    return out
