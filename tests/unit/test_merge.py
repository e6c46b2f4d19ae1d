"""Merging overlapping chunk results (`whisperx_service.pipeline.post.merge`)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from whisperx_service.config import SAMPLE_RATE
from whisperx_service.domain.transcript import SpeakerTurn, Word
from whisperx_service.pipeline.audio.chunks import Chunk, plan_chunks
from whisperx_service.pipeline.post.merge import (
    merge_chunk_turns,
    merge_chunk_words,
    normalise_word,
    seam_cuts,
    window_cuts,
)

#: A small vocabulary with repeats ("the", "we"), so pairing by text alone would be ambiguous.
VOCAB = ["the", "we", "meeting", "budget", "will", "review", "numbers", "and", "then", "go", "home", "so"]


def chunk(index: int, start_s: float, end_s: float) -> Chunk:
    return Chunk(index, round(start_s * SAMPLE_RATE), round(end_s * SAMPLE_RATE))


def w(text: str, start: float, end: float) -> Word:
    return Word(word=text, start=start, end=end, score=0.9)


def spoken(rng: random.Random, end_s: float, pause_prob: float) -> list[Word]:
    """Ground truth: words of 0.25-0.6 s from 0 to `end_s`, a pause after some of them."""
    out: list[Word] = []
    t = 0.2
    while t < end_s:
        d = rng.uniform(0.25, 0.6)
        out.append(w(rng.choice(VOCAB), t, t + d))
        t += d + (rng.uniform(0.05, 0.4) if rng.random() < pause_prob else 0.0)
    return out


def heard(truth: list[Word], k: Chunk, rng: random.Random, jitter: float) -> list[Word]:
    """What chunk `k` transcribes: the words inside it with times off by up to `jitter` s; a word cut
    by the chunk's edge comes out as a garbled fragment clipped to the chunk (or not at all)."""
    out: list[Word] = []
    for x in truth:
        if x.end <= k.start_s or x.start >= k.end_s:
            continue
        if x.start < k.start_s or x.end > k.end_s:
            if rng.random() < 0.5:
                out.append(w(x.word[:2] + "-", max(x.start, k.start_s), min(x.end, k.end_s)))
            continue
        s = x.start + rng.uniform(-jitter, jitter)
        out.append(w(x.word, s, max(s + 0.05, x.end + rng.uniform(-jitter, jitter))))
    return out


def assert_same_words(merged: list[Word], truth: list[Word], tol: float) -> None:
    assert [x.word for x in merged] == [x.word for x in truth]
    assert all(abs(a.start - b.start) <= tol + 1e-9 for a, b in zip(merged, truth, strict=True))
    assert all(a.start <= b.start for a, b in pairwise(merged))


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize("pause_prob", [0.0, 0.3, 1.0])
def test_two_chunks_transcribing_the_overlap_give_each_word_once(pause_prob: float) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        truth = spoken(rng, 34.0, pause_prob)  # ends before 35 s
        chunks = [chunk(0, 0, 20), chunk(1, 15, 35)]
        parts = [(k, heard(truth, k, rng, 0.1)) for k in chunks]
        assert_same_words(merge_chunk_words(parts), truth, 0.1)


def test_many_chunks_from_a_real_plan() -> None:
    for seed in range(20):
        rng = random.Random(100 + seed)
        truth = spoken(rng, 100.0, 0.2)
        total = round(truth[-1].end * SAMPLE_RATE) + SAMPLE_RATE
        chunks = plan_chunks(total, chunk_bytes=20 * SAMPLE_RATE * 2, overlap_s=5)
        assert len(chunks) >= 6
        parts = [(k, heard(truth, k, rng, 0.1)) for k in chunks]
        cuts = seam_cuts(parts)
        assert len(cuts) == len(chunks) - 1
        for (a, _), (b, _), t in zip(parts, parts[1:], cuts, strict=False):
            assert b.start_s <= t <= a.end_s
        assert_same_words(merge_chunk_words(parts, cuts=cuts), truth, 0.1)


def test_cut_is_the_common_pause_closest_to_the_midpoint() -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)  # overlap [15, 20], midpoint 17.5
    words_a = [w("one", 16.0, 17.0), w("two", 17.0, 17.4), w("three", 17.8, 18.9), w("four", 19.0, 19.9)]
    words_b = [w("one", 16.1, 17.1), w("two", 17.05, 17.45), w("three", 17.75, 18.8), w("four", 19.0, 20.0)]
    # Free of words in both: [17.45, 17.75]; 17.5 lies inside it.
    assert seam_cuts([(a, words_a), (b, words_b)]) == [17.5]
    words_b[2] = w("three", 17.4, 18.8)  # the common pause is now [17.45, 17.8] minus (17.4, 18.8): none
    words_a[1] = w("two", 17.0, 17.3)
    words_b[1] = w("two", 16.95, 17.3)
    words_b[2] = w("three", 17.6, 18.8)
    # Free in both: [17.3, 17.6]; the point closest to 17.5 is 17.5 itself.
    assert seam_cuts([(a, words_a), (b, words_b)]) == [17.5]
    words_b[2] = w("three", 17.35, 18.8)
    # Free in both: [17.3, 17.35]: the closest point to the midpoint is its right end.
    assert seam_cuts([(a, words_a), (b, words_b)]) == [17.35]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    assert [x.word for x in merged] == ["one", "two", "three", "four"]


def test_window_cuts_fall_between_windows_each_chunk_holds_whole() -> None:
    a, b, c = chunk(0, 0, 36), chunk(1, 24, 66), chunk(2, 54, 90)  # overlaps [24, 36] and [54, 66]
    windows = [(0.5, 28.0), (29.0, 31.5), (32.5, 58.0), (60.5, 88.0)]
    fallback = [30.0, 60.0]
    # Seam 1: gaps 28-29 and 31.5-32.5 are both inside [24, 36]; 29.0-31.5's window is held whole
    # by both chunks; the gap nearest the midpoint 30 wins. Seam 2: 58-60.5 is the only gap.
    assert window_cuts([a, b, c], windows, fallback) == [28.5, 59.25]
    # A window sticking out of the earlier chunk's end comes whole from the later chunk.
    assert window_cuts([a, b], [(0.5, 28.0), (29.0, 37.0)], [30.0]) == [28.5]
    # No usable gap in the overlap (one window covers it): the fallback cut stays.
    assert window_cuts([a, b], [(0.5, 20.0), (21.0, 50.0)], [30.0]) == [30.0]
    # A gap wider than the overlap: the cut is clamped into the overlap's middle.
    assert window_cuts([a, b], [(0.5, 10.0), (50.0, 60.0)], [30.0]) == [30.0]
    with pytest.raises(ValueError, match="fallback"):
        window_cuts([a, b], windows, [])


def test_merge_at_a_window_cut_keeps_each_window_from_one_chunk() -> None:
    a, b = chunk(0, 0, 36), chunk(1, 24, 66)
    # Chunk b decoded the window [25, 31] from its clipped start, and got a word wrong; chunk a holds
    # that window whole. A gap between windows at [31, 32.5].
    words_a = [w("one", 25.5, 26.0), w("two", 27.0, 27.5), w("three", 30.0, 30.8), w("four", 33.0, 33.4)]
    words_b = [w("won", 25.5, 26.0), w("two", 27.0, 27.5), w("three", 30.0, 30.8), w("four", 33.0, 33.4),
               w("five", 40.0, 40.5)]  # fmt: skip
    parts = [(a, words_a), (b, words_b)]
    cuts = window_cuts([a, b], [(25.0, 31.0), (32.5, 58.0)], seam_cuts(parts))
    assert cuts == [31.75]
    assert [x.word for x in merge_chunk_words(parts, cuts=cuts)] == ["one", "two", "three", "four", "five"]


def continuous(offset: float, start: float, end: float, step: float = 0.5) -> list[Word]:
    """Back-to-back words every `step` s from `start + offset`, named by their index on the grid."""
    out: list[Word] = []
    t = start + offset
    while t + step <= end:
        out.append(w(f"w{round((t - offset) / step)}", t, t + step))
        t += step
    return out


def test_no_common_pause_falls_back_to_the_midpoint_without_doubling() -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    # Word boundaries of one chunk fall inside the other's words: no time is free in both.
    words_a = continuous(0.0, 0.0, 20.0)
    words_b = continuous(0.25, 15.0, 35.0)
    assert seam_cuts([(a, words_a), (b, words_b)]) == [17.5]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    texts = [x.word for x in merged]
    assert len(texts) == len(set(texts))  # nothing doubled
    assert texts == [f"w{i}" for i in range(len(texts))]  # nothing lost: every grid word, in order
    assert texts[-1] == "w68"  # b's last word [34.25, 34.75]


@pytest.mark.parametrize(
    ("in_a", "in_b"),
    [
        ((17.25, 17.65), (17.35, 17.75)),  # centres 17.45 | 17.55: both sides would keep it
        ((17.5, 17.8), (17.2, 17.5)),  # centres 17.65 | 17.35: both sides would drop it
        ((17.3, 17.7), (17.3, 17.7)),  # identical times across the midpoint
    ],
)
def test_word_straddling_the_midpoint_is_neither_doubled_nor_lost(
    in_a: tuple[float, float], in_b: tuple[float, float]
) -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    before = [w(f"a{i}", 15.0 + 0.3 * i, 15.3 + 0.3 * i) for i in range(7)]  # 15.0-17.1, in both
    after = [w(f"z{i}", 18.0 + 0.3 * i, 18.3 + 0.3 * i) for i in range(6)]  # 18.0-19.8, in both
    words_a = [*before, w("Straddle,", *in_a), *after]
    words_b = [*before, w("straddle", *in_b), *after]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    assert [normalise_word(x.word) for x in merged] == [
        *(f"a{i}" for i in range(7)),
        "straddle",
        *(f"z{i}" for i in range(6)),
    ]


def test_repeated_word_pairs_with_its_own_copy() -> None:
    # Chunk k heard "yes yes", chunk k+1 only the second one: the pair must be the time-nearest copy.
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    words_a = [w("yes", 17.0, 17.4), w("yes", 17.6, 18.0)]
    words_b = [w("yes", 17.55, 17.95)]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    assert [(x.word, x.start) for x in merged] in ([("yes", 17.0), ("yes", 17.6)], [("yes", 17.0), ("yes", 17.55)])


def test_words_only_one_chunk_heard_are_kept_on_their_side() -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    words_a = [w("hello", 16.0, 16.5), w("um", 16.8, 17.0), w("world", 18.0, 18.5)]
    words_b = [w("hello", 16.05, 16.5), w("world", 18.0, 18.4), w("uh", 18.6, 18.8)]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    assert [x.word for x in merged] == ["hello", "um", "world", "uh"]


def test_single_and_empty_inputs() -> None:
    a = chunk(0, 0, 10)
    words = [w("b", 2.0, 2.5), w("a", 1.0, 1.5)]
    assert [x.word for x in merge_chunk_words([(a, words)])] == ["a", "b"]
    assert merge_chunk_words([]) == []
    assert seam_cuts([(a, words)]) == []


def test_bad_inputs_are_refused() -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    with pytest.raises(ValueError, match="time order"):
        merge_chunk_words([(b, []), (a, [])])
    with pytest.raises(ValueError, match="seam cuts"):
        merge_chunk_words([(a, []), (b, [])], cuts=[])
    with pytest.raises(ValueError, match="increasing"):
        merge_chunk_words([(a, []), (b, []), (chunk(2, 30, 50), [])], cuts=[17.5, 17.0])


def test_normalise_word() -> None:
    assert normalise_word("Hello,") == normalise_word("hello") == "hello"
    assert normalise_word("“Straße!”") == "strasse"
    assert normalise_word("...") == "..."


# --------------------------------------------------------------------------- turns


def turn(speaker: str, start: float, end: float) -> SpeakerTurn:
    return SpeakerTurn(speaker=speaker, start=start, end=end)


def test_turns_are_clipped_at_the_same_cuts_and_joined_across_seams() -> None:
    a, b, c = chunk(0, 0, 20), chunk(1, 15, 35), chunk(2, 30, 50)
    cuts = [17.5, 32.0]
    parts = [
        (a, [turn("SPEAKER_00", 0.5, 10.0), turn("SPEAKER_01", 10.5, 19.9)]),
        (b, [turn("SPEAKER_01", 15.0, 25.0), turn("SPEAKER_00", 25.5, 34.9)]),
        (c, [turn("SPEAKER_00", 30.2, 31.0), turn("SPEAKER_00", 31.5, 40.0), turn("SPEAKER_01", 41.0, 49.0)]),
    ]
    merged = merge_chunk_turns(parts, cuts=cuts)
    assert [(t.speaker, t.start, t.end) for t in merged] == [
        ("SPEAKER_00", 0.5, 10.0),
        ("SPEAKER_01", 10.5, 25.0),  # a's turn up to 17.5 and b's from 17.5, joined
        ("SPEAKER_00", 25.5, 40.0),  # b's up to 32.0 and c's from 32.0, joined
        ("SPEAKER_01", 41.0, 49.0),
    ]
    # Turns of one chunk that end before the cut are never joined with a later chunk's.
    assert all(t.end <= u.start or t.speaker != u.speaker for t, u in pairwise(merged))


def test_turns_default_to_overlap_midpoints_and_drop_empty_pieces() -> None:
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    parts = [
        (a, [turn("SPEAKER_00", 1.0, 17.0), turn("SPEAKER_01", 18.0, 20.0)]),  # the second lies after 17.5
        (b, [turn("SPEAKER_00", 15.0, 16.0), turn("SPEAKER_01", 16.5, 30.0), turn("SPEAKER_02", 5.0, float("nan"))]),
    ]
    merged = merge_chunk_turns(parts)
    assert [(t.speaker, t.start, t.end) for t in merged] == [("SPEAKER_00", 1.0, 17.0), ("SPEAKER_01", 17.5, 30.0)]


def test_words_and_turns_share_cuts() -> None:
    rng = random.Random(5)
    truth = spoken(rng, 35.0, 0.3)
    a, b = chunk(0, 0, 20), chunk(1, 15, 35)
    word_parts = [(a, heard(truth, a, rng, 0.1)), (b, heard(truth, b, rng, 0.1))]
    cuts = seam_cuts(word_parts)
    turns = merge_chunk_turns([(a, [turn("S", 0.0, 20.0)]), (b, [turn("S", 15.0, 35.0)])], cuts=cuts)
    assert [(t.start, t.end) for t in turns] == [(0.0, 35.0)]
    turns = merge_chunk_turns([(a, [turn("A", 0.0, 20.0)]), (b, [turn("B", 15.0, 35.0)])], cuts=cuts)
    assert [(t.speaker, t.start, t.end) for t in turns] == [("A", 0.0, cuts[0]), ("B", cuts[0], 35.0)]


@pytest.mark.parametrize("sparse", ["earlier", "later"])
def test_a_chunk_that_skipped_speech_in_the_overlap_does_not_supply_it(sparse: str) -> None:
    # Chunks 0-60 s and 40-100 s; the overlap 40-60 s is speech throughout. One chunk's decoder
    # skipped a sentence in it (as tiny.en does in some windows): the other chunk supplies it.
    truth = [w(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(200)]
    a, b = chunk(0, 0, 60), chunk(1, 40, 100)
    words_a = [x for x in truth if x.end <= 60]
    words_b = [x for x in truth if x.start >= 40]
    skipped = {f"w{i}" for i in range(90, 115)}  # 45-57.5 s
    if sparse == "earlier":
        words_a = [x for x in words_a if x.word not in skipped]
    else:
        words_b = [x for x in words_b if x.word not in skipped]
    merged = merge_chunk_words([(a, words_a), (b, words_b)])
    assert [x.word for x in merged] == [x.word for x in truth], "every word once, the skipped ones too"
