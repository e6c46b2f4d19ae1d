"""Merge the results of overlapping chunks into one timeline (docs/ARCHITECTURE.md).

Every chunk was transcribed, aligned and diarized on its own; its words and turns carry
**absolute** times (seconds from the audio's start). Consecutive chunks k and k+1 both cover the
overlap `[chunk[k+1].start_s, chunk[k].end_s]`, so both may have transcribed the words in it.

The rule, for each seam:

0. **At an ASR window boundary** (`window_cuts`). The job decodes ASR windows made once for the
   whole file (`pipeline.asr_windows`), and a chunk decodes a window it holds whole from exactly
   the audio a single pass would. So the cut goes into the gap between two windows, the earlier
   held whole by the earlier chunk and the later by the later one, the gap closest to the overlap
   midpoint: then every kept word comes from a whole window, as in one pass over the file. The
   plan centres each overlap on a line of the windows' grid, so such a gap is normally there;
   where none is (one window covers the whole overlap), rule 1 decides.
1. **Cut time** (`seam_cuts`). The cut t is a time in the middle half of the overlap, centred on
   its midpoint m, where no word of either chunk is being spoken (a pause both chunks agree on;
   a point where one word ends and the next starts counts too), the one closest to m, the
   earlier of equals. When there is no such time, t = m. Chunk edges are avoided because a chunk
   starts and ends with the least context (words cut in half, no preceding text for Whisper).
   Exception: when one chunk heard clearly fewer words inside the overlap than the other (fewer
   than `COMPLETE_RATIO` of them: Whisper skipped a sentence in that chunk's window), the cut
   moves towards the far edge of the overlap so the more complete chunk supplies it: near the
   later chunk's start (+`START_EDGE_S`) when the later chunk is more complete, near the earlier
   chunk's end (-`END_EDGE_S`, its last window is the one cut short) when the earlier one is,
   without a pause search (the sparser chunk's word times are stretched over what it skipped).
2. **Words** (`merge_chunk_words`). Chunk k keeps its words whose centre ((start + end) / 2) is
   before t, chunk k+1 its words whose centre is at or after t: the earlier chunk's words before
   the cut, the later chunk's after it. When t lies in a common pause, a word both chunks heard
   falls on the same side in both, so nothing is doubled or lost. To be safe where it does not
   (t = m with a word straddling it, or two copies of a word whose times differ by more than the
   word's own length), the two chunks' words near the overlap are paired first: the longest
   common subsequence of the two word sequences (the classic dynamic programme of Wagner &
   Fischer, 1974) where two words may pair only when their normalised texts are equal and their
   centres are at most `MATCH_TOLERANCE_S` apart, the smallest total time difference among equally
   long ones. Stitching overlapping ASR buffers by LCS is common practice (NeMo's buffered
   inference merges its overlapping buffers by LCS, for example). A pair counts as one
   word: the earlier chunk's copy is kept when the pair's mean centre is before t, else the later
   chunk's copy. Finally, an unpaired word of chunk k+1 that duplicates a kept word of chunk k
   next to the cut (same normalised text, overlapping times) is dropped.
3. **Turns** (`merge_chunk_turns`). Chunk k's turns are clipped to end at t, chunk k+1's to start
   at t; a turn left empty is dropped and two turns of one speaker that meet at t are joined.
   Labels must already be global (`pipeline.speakers.link_speakers`).

Use the same cuts for words and turns: `cuts = window_cuts(chunks, windows, seam_cuts(word_parts))`, then
pass `cuts=cuts`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from itertools import pairwise

from whisperx_service.domain.transcript import SpeakerTurn, Word
from whisperx_service.pipeline.audio.chunks import Chunk

#: Fraction of the overlap, centred on its midpoint, searched for a common pause.
SEARCH_FRACTION = 0.5
#: Two copies of a word (one per chunk) are the same word when their centres are at most this many
#: seconds apart. Word times from two alignment runs differ by about 0.1 s (docs/MODELS.md: median
#: boundary error 0.07-0.13 s); 1 s also absorbs a Whisper timestamp that slipped by a word.
MATCH_TOLERANCE_S = 1.0
#: A chunk with fewer than this share of the other chunk's words inside an overlap lost speech there.
COMPLETE_RATIO = 0.8
#: Seconds kept clear of each edge of the overlap when the cut moves towards it (rule 1).
START_EDGE_S = 0.3
END_EDGE_S = 2.0

WordParts = Sequence[tuple[Chunk, Sequence[Word]]]
TurnParts = Sequence[tuple[Chunk, Sequence[SpeakerTurn]]]


def normalise_word(text: str) -> str:
    """A word's text for comparison: NFKC, case-folded, without punctuation or spaces.

    A token made only of punctuation keeps its (stripped) text so it still compares to itself.
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    core = "".join(c for c in t if not (unicodedata.category(c).startswith("P") or c.isspace()))
    return core or t.strip()


def _centre(w: Word) -> float:
    return (w.start + w.end) / 2.0


def _check_chunks(chunks: Sequence[Chunk]) -> None:
    for a, b in pairwise(chunks):
        if not (b.start > a.start and b.end > a.end):
            raise ValueError(f"chunks must be in time order: chunk {b.index} does not follow chunk {a.index}")


def _midpoint(a: Chunk, b: Chunk) -> float:
    """Midpoint (seconds) of the overlap of consecutive chunks (of the gap, if they do not overlap)."""
    return (b.start_s + a.end_s) / 2.0


def _best_pause(busy: list[tuple[float, float]], lo: float, hi: float, m: float) -> float | None:
    """The time in [lo, hi] outside every open interval of `busy` closest to `m` (earliest of equals)."""
    free: list[tuple[float, float]] = []
    cursor = lo
    for s, e in sorted(busy):
        if e <= cursor:
            continue
        if s >= hi:
            break
        if s >= cursor:
            free.append((cursor, s))
        cursor = max(cursor, e)
    if cursor <= hi:
        free.append((cursor, hi))
    best: float | None = None
    best_d = math.inf
    for a, b in free:
        t = min(max(m, a), b)
        d = abs(t - m)
        if d < best_d:
            best, best_d = t, d
    return best


def seam_cuts(parts: WordParts) -> list[float]:
    """The cut time (seconds) of each seam between consecutive chunks, by rule 1 of the module.

    Args:
        parts: `(chunk, words)` per chunk in time order; words with absolute times in seconds.

    Returns:
        `len(parts) - 1` cut times, strictly increasing; cut k lies in the overlap of chunks k and
        k+1 (at the middle of the gap between them if they do not overlap).

    Raises:
        ValueError: the chunks are not in time order, or the overlap midpoints do not increase (a
            chunk too short for its overlaps; `plan_chunks` never makes such a plan).
    """
    chunks = [c for c, _ in parts]
    _check_chunks(chunks)
    mids = [_midpoint(a, b) for a, b in pairwise(chunks)]
    if any(b <= a for a, b in pairwise(mids)):
        raise ValueError("overlap midpoints do not increase: a chunk is shorter than its two overlaps")
    cuts: list[float] = []
    for k, ((a, words_a), (b, words_b)) in enumerate(pairwise(parts)):
        m = mids[k]
        half = max(a.end_s - b.start_s, 0.0) * SEARCH_FRACTION / 2.0
        # Where short chunks make consecutive overlaps overlap, each search stops halfway to the
        # neighbouring midpoint, so the cuts keep increasing.
        lo = max(m - half, (mids[k - 1] + m) / 2.0 if k else -math.inf)
        hi = min(m + half, (m + mids[k + 1]) / 2.0 if k + 1 < len(mids) else math.inf)
        in_a = sum(1 for w in words_a if b.start_s <= _centre(w) <= a.end_s)
        in_b = sum(1 for w in words_b if b.start_s <= _centre(w) <= a.end_s)
        if half > 0 and max(in_a, in_b) >= 4 and min(in_a, in_b) < COMPLETE_RATIO * max(in_a, in_b):
            # One chunk skipped speech in the overlap: let the other supply as much of it as it can.
            lo = max(b.start_s + START_EDGE_S, (mids[k - 1] + m) / 2.0 if k else -math.inf)
            hi = min(a.end_s - END_EDGE_S, (m + mids[k + 1]) / 2.0 if k + 1 < len(mids) else math.inf)
            m = hi if in_a > in_b else lo
            if lo > hi:
                m = mids[k]
            # No pause search here: the less complete chunk's words are stretched over the speech
            # it skipped, so its "pauses" are not real ones.
            lo = hi = m
        busy = [(w.start, w.end) for w in (*words_a, *words_b) if w.end > w.start and w.end > lo and w.start < hi]
        t = _best_pause(busy, lo, hi, m) if half > 0 else None
        if t is None or (cuts and t <= cuts[-1]):
            t = m if not cuts or m > cuts[-1] else mids[k]
        cuts.append(t)
    return cuts


def window_cuts(
    chunks: Sequence[Chunk], windows: Sequence[tuple[float, float]], fallback: Sequence[float]
) -> list[float]:
    """Seam cuts at ASR window boundaries (rule 0 of the module), `fallback` where there is none.

    Args:
        chunks: the chunks in time order.
        windows: `(start_s, end_s)` of the file's ASR windows in time order, absolute seconds
            (`pipeline.asr_windows.grid_windows`); disjoint.
        fallback: one cut per seam (`seam_cuts`), used for a seam with no usable boundary.

    Returns:
        `len(chunks) - 1` strictly increasing cut times (s). Cut k is the middle of a gap between
        two consecutive windows, the earlier held whole by chunk k and the later by chunk k+1,
        clamped to their overlap; of several such gaps, the one closest to the overlap midpoint.

    Raises:
        ValueError: chunks out of time order, or `fallback` of the wrong length.
    """
    _check_chunks(chunks)
    if len(fallback) != max(len(chunks) - 1, 0):
        raise ValueError(f"expected {max(len(chunks) - 1, 0)} fallback cuts for {len(chunks)} chunks")
    cuts: list[float] = []
    for k, (a, b) in enumerate(pairwise(chunks)):
        m = _midpoint(a, b)
        best: float | None = None
        for (s0, e0), (s1, e1) in pairwise(windows):
            if s1 < b.start_s or e1 > b.end_s or s0 < a.start_s or e0 > a.end_s:
                continue
            t = (max(e0, b.start_s) + min(s1, a.end_s)) / 2.0
            if best is None or abs(t - m) < abs(best - m):
                best = t
        cut = fallback[k] if best is None or (cuts and best <= cuts[-1]) else best
        cuts.append(cut)
    return cuts


def _pairs(words_a: Sequence[Word], words_b: Sequence[Word], lo: float, hi: float) -> dict[int, int]:
    """Pairs (index in `words_a` -> index in `words_b`) of the same word heard by both chunks.

    Only words whose span reaches into [lo - tolerance, hi + tolerance] (the overlap, seconds)
    take part, in time order. The pairing is a longest common subsequence in which a word pairs
    only with a word of equal normalised text whose centre is at most `MATCH_TOLERANCE_S` away;
    of equally long ones, the one with the smallest sum of centre differences. O(n * m) for the
    n and m words of the two chunks near the overlap (about 100 each for a 30 s overlap).
    """
    lo, hi = lo - MATCH_TOLERANCE_S, hi + MATCH_TOLERANCE_S

    def near(words: Sequence[Word]) -> list[int]:
        idx = [i for i, w in enumerate(words) if w.end >= lo and w.start <= hi]
        return sorted(idx, key=lambda i: (words[i].start, words[i].end, i))

    ia, ib = near(words_a), near(words_b)
    if not ia or not ib:
        return {}
    ka = [normalise_word(words_a[i].word) for i in ia]
    kb = [normalise_word(words_b[j].word) for j in ib]
    ca = [_centre(words_a[i]) for i in ia]
    cb = [_centre(words_b[j]) for j in ib]
    n, m = len(ia), len(ib)
    # best[x][y]: (pairs, -total centre difference) of the best pairing of ia[:x] with ib[:y].
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for x in range(1, n + 1):
        row, prev = best[x], best[x - 1]
        for y in range(1, m + 1):
            cand = max(prev[y], row[y - 1])
            d = abs(ca[x - 1] - cb[y - 1])
            if ka[x - 1] == kb[y - 1] and d <= MATCH_TOLERANCE_S:
                p, cost = prev[y - 1]
                cand = max(cand, (p + 1, cost - d))
            row[y] = cand
    out: dict[int, int] = {}
    x, y = n, m
    while x > 0 and y > 0:
        if best[x][y] == best[x - 1][y]:
            x -= 1
        elif best[x][y] == best[x][y - 1]:
            y -= 1
        else:  # a pair
            out[ia[x - 1]] = ib[y - 1]
            x, y = x - 1, y - 1
    return out


def merge_chunk_words(parts: WordParts, *, cuts: Sequence[float] | None = None) -> list[Word]:
    """Merge the words of overlapping chunks so each spoken word appears once (rule 2 of the module).

    Args:
        parts: `(chunk, words)` per chunk in time order; every word's times are absolute seconds.
        cuts: the seam cut times (seconds) from `seam_cuts`; computed from `parts` when None.

    Returns:
        The kept words (the same `Word` objects, not copies) sorted by start, then end, then chunk
        and position, so starts never decrease.

    Raises:
        ValueError: chunks out of time order, or `cuts` of the wrong length or not increasing.
    """
    if cuts is None:
        cuts = seam_cuts(parts)
    _check_cuts(parts, cuts)
    n = len(parts)
    # keep[k][i]: whether word i of chunk k survives; decided by the left and right seams.
    keep = [[True] * len(words) for _, words in parts]
    for k in range(n - 1):
        (a, words_a), (b, words_b) = parts[k], parts[k + 1]
        t = cuts[k]
        pairs = _pairs(words_a, words_b, b.start_s, a.end_s)
        paired_b = set(pairs.values())
        for i, w in enumerate(words_a):
            j = pairs.get(i)
            centre = _centre(w) if j is None else (_centre(w) + _centre(words_b[j])) / 2.0
            keep[k][i] = keep[k][i] and centre < t
            if j is not None:
                keep[k + 1][j] = keep[k + 1][j] and centre >= t
        for j, w in enumerate(words_b):
            if j not in paired_b:
                keep[k + 1][j] = keep[k + 1][j] and _centre(w) >= t
        _drop_boundary_duplicates(words_a, keep[k], words_b, keep[k + 1], paired_b, t)
    kept = [(w.start, w.end, k, i, w) for k, (_, words) in enumerate(parts) for i, w in enumerate(words) if keep[k][i]]
    kept.sort(key=lambda x: x[:4])
    return [x[4] for x in kept]


def _drop_boundary_duplicates(
    words_a: Sequence[Word],
    keep_a: list[bool],
    words_b: Sequence[Word],
    keep_b: list[bool],
    paired_b: set[int],
    t: float,
) -> None:
    """Drop kept, unpaired words of the later chunk that repeat a kept word of the earlier chunk.

    A duplicate has the same normalised text and overlapping times (open intervals, so words that
    only touch are different), and both copies lie within `MATCH_TOLERANCE_S` of the cut `t`.
    Paired words are left alone: their pair already decided which copy stays, and a repeated
    word ("the the") has copies that overlap their neighbours once times jitter.
    """
    near_a = [w for i, w in enumerate(words_a) if keep_a[i] and w.end >= t - MATCH_TOLERANCE_S]
    if not near_a:
        return
    for j, w in enumerate(words_b):
        if not keep_b[j] or j in paired_b or w.start > t + MATCH_TOLERANCE_S:
            continue
        key = normalise_word(w.word)
        for v in near_a:
            overlap = min(v.end, w.end) - max(v.start, w.start)
            if normalise_word(v.word) == key and (overlap > 0 or (v.start == w.start and v.end == w.end)):
                keep_b[j] = False
                break


def _check_cuts(parts: Sequence[tuple[Chunk, object]], cuts: Sequence[float]) -> None:
    _check_chunks([c for c, _ in parts])
    if len(cuts) != max(len(parts) - 1, 0):
        raise ValueError(f"expected {max(len(parts) - 1, 0)} seam cuts for {len(parts)} chunks, got {len(cuts)}")
    if any(b <= a for a, b in pairwise(cuts)) or not all(math.isfinite(c) for c in cuts):
        raise ValueError(f"seam cuts must be finite and strictly increasing, got {list(cuts)}")


def merge_chunk_turns(parts: TurnParts, *, cuts: Sequence[float] | None = None) -> list[SpeakerTurn]:
    """Merge the diarization turns of overlapping chunks (rule 3 of the module).

    Args:
        parts: `(chunk, turns)` per chunk in time order; absolute seconds and *global* labels.
        cuts: the seam cut times (seconds), normally `seam_cuts` of the same chunks' words so
            words and turns are cut alike; None = the overlap midpoints.

    Returns:
        New turns sorted by start, end, speaker: chunk k's turns clipped to `[cuts[k-1], cuts[k]]`
        (the first chunk is open to the left, the last to the right); empty turns dropped, and
        turns of one speaker that meet at a cut joined into one. Turns with non-finite times
        are skipped.

    Raises:
        ValueError: chunks out of time order, or `cuts` of the wrong length or not increasing.
    """
    if cuts is None:
        _check_chunks([c for c, _ in parts])
        cuts = [_midpoint(a, b) for (a, _), (b, _) in pairwise(parts)]
    _check_cuts(parts, cuts)
    bounds = [-math.inf, *cuts, math.inf]
    out: list[SpeakerTurn] = []
    for k, (_, turns) in enumerate(parts):
        lo, hi = bounds[k], bounds[k + 1]
        for turn in turns:
            if not (math.isfinite(turn.start) and math.isfinite(turn.end)):
                continue
            s, e = max(turn.start, lo), min(turn.end, hi)
            if e > s:
                out.append(SpeakerTurn(start=s, end=e, speaker=turn.speaker))
    out.sort(key=lambda x: (x.start, x.end, x.speaker))
    cut_set = set(cuts)
    joined: list[SpeakerTurn] = []
    for turn in out:
        if turn.start in cut_set:
            # A turn clipped to start at a cut continues the same speaker's turn clipped to end there.
            prev = next((p for p in reversed(joined) if p.speaker == turn.speaker and p.end == turn.start), None)
            if prev is not None:
                prev.end = max(prev.end, turn.end)
                continue
        joined.append(turn)
    return joined
