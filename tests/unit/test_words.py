"""Word timing, speaker assignment and segment splitting (`whisperx_service.pipeline.words`)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from whisperx_service.domain.transcript import Segment, SpeakerTurn, Word
from whisperx_service.pipeline.post.segments import build_segments, smooth_speaker_flips
from whisperx_service.pipeline.post.speakers import apply_speaker_map, assign_speakers, relabel_speakers, speaker_stats
from whisperx_service.transcripts.text import is_trailing_punctuation, word_separator
from whisperx_service.transcripts.timing import interpolate_word_times


def w(text: str, start: float, end: float, speaker: str | None = None) -> Word:
    return Word(word=text, start=start, end=end, speaker=speaker, score=0.9)


def turn(speaker: str, start: float, end: float) -> SpeakerTurn:
    return SpeakerTurn(speaker=speaker, start=start, end=end)


# --------------------------------------------------------------------------- text


def test_trailing_punctuation_and_word_separator() -> None:
    assert is_trailing_punctuation("?!") and is_trailing_punctuation("…") and is_trailing_punctuation("。")
    assert not any(is_trailing_punctuation(t) for t in ["a.", "", "&", "(", "¿", "-", '"'])
    assert word_separator("ja") == "" and word_separator("zh") == "" and word_separator("en") == " "
    assert word_separator(None) == " "


# --------------------------------------------------------------------------- interpolate_word_times


def test_unaligned_words_are_kept_and_spread_by_length_between_neighbours() -> None:
    raw: list[dict[str, Any]] = [
        {"word": "Hello", "start": 1.0, "end": 1.5, "score": 0.8},
        {"word": "2024"},  # no times at all
        {"word": "x", "start": None, "end": float("nan"), "score": float("nan")},
        {"word": "world", "start": 3.0, "end": 3.4, "score": 0.7},
    ]
    out = interpolate_word_times(raw, 0.5, 4.0)

    assert [x.word for x in out] == ["Hello", "2024", "x", "world"]
    assert [x.aligned for x in out] == [True, False, False, True]
    assert (out[0].start, out[0].end, out[0].score) == (1.0, 1.5, 0.8)
    assert (out[3].start, out[3].end, out[3].score) == (3.0, 3.4, 0.7)
    assert out[1].score is None and out[2].score is None
    # The 1.5 s gap between "Hello" and "world" is shared 4:1 by character length.
    assert out[1].start == pytest.approx(1.5)
    assert out[1].end == pytest.approx(1.5 + 1.5 * 4 / 5)
    assert out[2].start == pytest.approx(out[1].end)
    assert out[2].end == pytest.approx(3.0)


def test_leading_and_trailing_unaligned_words_use_the_segment_bounds() -> None:
    raw: list[dict[str, Any]] = [
        {"word": "ab"},
        {"word": "mid", "start": 2.0, "end": 2.5},
        {"word": "cd"},
        {"word": "efgh"},
    ]
    out = interpolate_word_times(raw, 1.0, 5.5)
    assert out[0].start == pytest.approx(1.0) and out[0].end == pytest.approx(2.0)
    assert out[2].start == pytest.approx(2.5)
    assert out[2].end == pytest.approx(2.5 + 3.0 * 2 / 6)
    assert out[3].end == pytest.approx(5.5)


def test_no_aligned_word_fills_the_whole_segment() -> None:
    out = interpolate_word_times([{"word": "a"}, {"word": "bbb"}], 10.0, 14.0)
    assert [(x.start, x.end) for x in out] == [pytest.approx((10.0, 11.0)), pytest.approx((11.0, 14.0))]
    assert not any(x.aligned for x in out)


def test_times_are_clamped_into_the_segment_and_overlaps_cut_at_the_midpoint() -> None:
    raw: list[dict[str, Any]] = [
        {"word": "early", "start": 0.2, "end": 1.2},  # starts before the segment
        {"word": "one", "start": 2.0, "end": 3.0},
        {"word": "two", "start": 2.6, "end": 3.5},  # overlaps "one" by 0.4 s
        {"word": "late", "start": 5.5, "end": 7.0},  # ends after the segment
    ]
    out = interpolate_word_times(raw, 1.0, 6.0)
    assert out[0].start == 1.0 and out[0].end == 1.2
    assert out[1].end == pytest.approx(2.8) and out[2].start == pytest.approx(2.8)
    assert out[3].start == 5.5 and out[3].end == 6.0


def test_bad_segment_bounds_raise() -> None:
    with pytest.raises(ValueError):
        interpolate_word_times([{"word": "a"}], 2.0, 1.0)
    with pytest.raises(ValueError):
        interpolate_word_times([{"word": "a"}], 0.0, math.inf)
    assert interpolate_word_times([], 0.0, 1.0) == []


def test_interpolation_invariants_on_random_aligner_output() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        seg_start = rng.uniform(0, 100)
        seg_end = seg_start + rng.uniform(0, 20)
        raw: list[dict[str, Any]] = []
        t = seg_start - 0.5
        for i in range(rng.randint(0, 25)):
            d: dict[str, Any] = {"word": "w" * rng.randint(0, 8) + str(i)}
            t += rng.uniform(-0.3, 1.5)  # may go backwards (aligner overlap) or outside the segment
            if rng.random() < 0.7:
                d["start"], d["end"], d["score"] = t, t + rng.uniform(-0.1, 0.8), rng.random()
            elif rng.random() < 0.5:
                d["start"] = rng.choice([None, float("nan"), t])  # end missing: not aligned
            raw.append(d)
        out = interpolate_word_times(raw, seg_start, seg_end)

        assert [x.word for x in out] == [d["word"] for d in raw]  # nothing dropped or reordered
        for d, x in zip(raw, out, strict=True):
            timed = isinstance(d.get("start"), float) and isinstance(d.get("end"), float)
            timed = timed and math.isfinite(d["start"]) and math.isfinite(d["end"])
            assert x.aligned is timed
            assert (x.score is None) is (not timed)
            assert seg_start <= x.start <= x.end <= seg_end
        for a, b in itertools.pairwise(out):
            assert a.end <= b.start + 1e-9


# --------------------------------------------------------------------------- assign_speakers


def test_speaker_with_most_overlap_wins_summed_over_its_turns() -> None:
    turns = [turn("A", 0, 2), turn("B", 2, 4)]
    assert assign_speakers([w("x", 1.5, 2.8)], turns)[0].speaker == "B"
    assert assign_speakers([w("x", 1.0, 2.4)], turns)[0].speaker == "A"
    # A talks 0.8 + 0.8 s of the word in two turns, B 1.4 s in one: A has more in total.
    turns = [turn("A", 0, 0.8), turn("B", 0.8, 2.2), turn("A", 2.2, 3.0)]
    assert assign_speakers([w("x", 0, 3.0)], turns)[0].speaker == "A"


def test_overlapping_turns_of_one_speaker_count_once() -> None:
    # A's two identical turns cover 1.5 s of the word; counted twice they would beat B's 2.3 s.
    turns = [turn("A", 1.0, 2.5), turn("A", 1.0, 2.5), turn("B", 0.5, 2.8)]
    assert assign_speakers([w("x", 0.5, 3.0)], turns)[0].speaker == "B"


def test_word_without_overlap_takes_the_nearest_turn() -> None:
    turns = [turn("A", 0, 1), turn("B", 6, 7), turn("C", 20, 30)]
    out = assign_speakers([w("gap", 5.0, 5.2), w("early", 1.2, 1.4), w("point", 0.5, 0.5)], turns)
    assert [x.speaker for x in out] == ["B", "A", "A"]


def test_no_turns_gives_no_speaker_and_input_is_not_modified() -> None:
    words = [w("a", 0, 1, speaker="OLD")]
    assert assign_speakers(words, [])[0].speaker is None
    out = assign_speakers(words, [turn("A", 0, 1)])
    assert out[0].speaker == "A" and words[0].speaker == "OLD"
    assert (out[0].word, out[0].start, out[0].end, out[0].score) == ("a", 0, 1, 0.9)


def _brute_force_speaker(word: Word, turns: list[SpeakerTurn]) -> str | None:
    """Independent O(words x turns) reference: union per speaker, sum intersections, else nearest."""
    if not turns:
        return None
    best: tuple[float, str] | None = None
    for spk in sorted({t.speaker for t in turns}):
        merged: list[list[float]] = []
        for t in sorted((t for t in turns if t.speaker == spk), key=lambda t: t.start):
            if merged and t.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], t.end)
            else:
                merged.append([t.start, t.end])
        ov = sum(max(0.0, min(word.end, e) - max(word.start, s)) for s, e in merged)
        if ov > 1e-9 and (best is None or ov > best[0] + 1e-9):
            best = (ov, spk)
    if best is not None:
        return best[1]
    mid = (word.start + word.end) / 2
    dist = {t.speaker: math.inf for t in turns}
    for t in turns:
        d = 0.0 if t.start <= mid <= t.end else min(abs(mid - t.start), abs(mid - t.end))
        dist[t.speaker] = min(dist[t.speaker], d)
    return min(sorted(dist), key=lambda s: dist[s])


def test_assign_speakers_matches_a_brute_force_reference() -> None:
    rng = random.Random(7)
    for _ in range(200):
        turns = []
        for _ in range(rng.randint(1, 12)):
            s = rng.uniform(0, 60)
            turns.append(turn(rng.choice("ABCD"), s, s + rng.uniform(0, 8)))
        words = []
        for _ in range(30):
            s = rng.uniform(-5, 70)
            words.append(w("x", s, s + rng.choice([0.0, rng.uniform(0, 1.5)])))
        got = [x.speaker for x in assign_speakers(words, turns)]
        assert got == [_brute_force_speaker(x, turns) for x in words]


def test_assign_speakers_on_a_long_file() -> None:
    # 10 hours: 60k words, 6k turns (speed is for `make bench`; here: right answers at scale).
    turns = [turn(f"S{i % 5}", i * 6.0, i * 6.0 + 6.2) for i in range(6000)]
    words = [w("w", i * 0.6, i * 0.6 + 0.4) for i in range(60_000)]
    out = assign_speakers(words, turns)
    assert out[10].speaker == "S1"  # word 6.0-6.4 s: turn 0 (S0) covers 0.2 s, turn 1 (S1) 0.4 s
    for i in range(0, 60_000, 997):  # the turn that contains the word's midpoint wins
        k = int((words[i].start + 0.2) // 6.0)
        assert out[i].speaker == f"S{k % 5}", i


# --------------------------------------------------------------------------- stats and labels


def test_speaker_stats_union_per_speaker_sorted_by_id() -> None:
    stats = speaker_stats([turn("B", 5, 6), turn("A", 0, 2), turn("A", 1, 3), turn("A", 10, 10.5)])
    assert [(s.id, s.talk_time_s) for s in stats] == [("A", 3.5), ("B", 1.0)]
    assert speaker_stats([]) == []


def test_relabel_speakers_by_first_appearance() -> None:
    turns = [turn("spk_b", 0, 1), turn("spk_a", 5, 6), turn("spk_b", 7, 8), turn("spk_c", 3, 4)]
    relabelled, mapping = relabel_speakers(turns)
    assert mapping == {"spk_b": "SPEAKER_00", "spk_c": "SPEAKER_01", "spk_a": "SPEAKER_02"}
    assert [t.speaker for t in relabelled] == ["SPEAKER_00", "SPEAKER_02", "SPEAKER_00", "SPEAKER_01"]
    assert [(t.start, t.end) for t in relabelled] == [(t.start, t.end) for t in turns]
    words = apply_speaker_map([w("a", 0, 1, "spk_c"), w("b", 1, 2), w("c", 2, 3, "other")], mapping)
    assert [x.speaker for x in words] == ["SPEAKER_01", None, "other"]


# --------------------------------------------------------------------------- segments


def _check_segments(segments: list[Segment], words_in: list[Word]) -> None:
    """Invariants of any segmentation: ids 0..n-1, one speaker per segment, bounds and text from words.

    The input words carry the text preceding them (as the pipeline's do): a segment's text is
    its input words concatenated and stripped, its words are the input words stripped.
    """
    assert [s.id for s in segments] == list(range(len(segments)))
    assert [x.word for s in segments for x in s.words] == [x.word.strip() for x in words_in]
    pos = 0
    for s in segments:
        assert s.words
        assert all(x.speaker == s.speaker for x in s.words)
        assert s.start == s.words[0].start and s.end == max(x.end for x in s.words)
        assert s.text == "".join(x.word for x in words_in[pos : pos + len(s.words)]).strip()
        pos += len(s.words)


def test_segments_are_cut_exactly_at_speaker_changes() -> None:
    # Each word carries the text before it in the ASR text " Hello, there Hi you! Right".
    words = [
        w(" Hello", 0.0, 0.5, "A"),
        w(",", 0.5, 0.5, "A"),
        w(" there", 0.6, 1.0, "A"),
        w(" Hi", 1.2, 1.7, "B"),
        w(" you", 1.8, 2.3, "B"),
        w("!", 2.3, 2.3, "B"),
        w(" Right", 2.5, 3.0, "A"),
    ]
    out = build_segments(words)
    _check_segments(out, words)
    assert [(s.speaker, s.text, s.start, s.end) for s in out] == [
        ("A", "Hello, there", 0.0, 1.0),
        ("B", "Hi you!", 1.2, 2.3),
        ("A", "Right", 2.5, 3.0),
    ]


def test_short_isolated_flip_is_smoothed_longer_or_double_flips_are_kept() -> None:
    def seg(*spk_and_len: tuple[str, float]) -> list[Word]:
        t, words = 0.0, []
        for i, (spk, length) in enumerate(spk_and_len):
            words.append(w(f"w{i}", t, t + length, spk))
            t += length + 0.05
        return words

    short = build_segments(seg(("A", 0.4), ("A", 0.4), ("B", 0.2), ("A", 0.4)))
    assert [s.speaker for s in short] == ["A"] and len(short[0].words) == 4

    long = build_segments(seg(("A", 0.4), ("B", 0.35), ("A", 0.4)))
    assert [s.speaker for s in long] == ["A", "B", "A"]

    double = build_segments(seg(("A", 0.4), ("B", 0.1), ("B", 0.1), ("A", 0.4)))
    assert [s.speaker for s in double] == ["A", "B", "A"]

    at_change = build_segments(seg(("A", 0.4), ("C", 0.1), ("B", 0.4)))
    assert [s.speaker for s in at_change] == ["A", "C", "B"]

    off = build_segments(seg(("A", 0.4), ("B", 0.2), ("A", 0.4)), smooth_max_s=0)
    assert [s.speaker for s in off] == ["A", "B", "A"]


def test_smoothing_leaves_edge_words_alone() -> None:
    words = [w("x", 0, 0.1, "A"), w("y", 0.1, 0.2, "B")]
    assert smooth_speaker_flips(words) == words  # an edge word has only one neighbour: unchanged


def test_build_segments_breaks_on_speaker_gap_and_duration() -> None:
    words = [
        w(" one", 0.0, 0.5, "A"),
        w(" two", 0.6, 1.0, "A"),
        w(" three", 3.0, 3.5, "A"),  # 2 s pause
        w(" four", 3.6, 4.0, "B"),  # speaker change
        w(" five", 4.1, 9.0, "B"),
        w(" six", 9.1, 12.5, "B"),  # would make the segment 8.9 s long
    ]
    out = build_segments(words, max_gap_s=1.5, max_duration_s=8.0)
    _check_segments(out, words)
    assert [s.text for s in out] == ["one two", "three", "four five", "six"]
    assert [s.speaker for s in out] == ["A", "A", "B", "B"]
    assert build_segments([]) == []
    with pytest.raises(ValueError):
        build_segments(words, max_duration_s=0)


def test_full_pipeline_on_random_words_keeps_every_word_and_never_straddles() -> None:
    rng = random.Random(99)
    for _ in range(50):
        turns = []
        t = 0.0
        for _ in range(rng.randint(1, 15)):
            d = rng.uniform(0.2, 6)
            turns.append(turn(rng.choice(["A", "B", "C"]), t, t + d))
            t += d + rng.uniform(-0.3, 0.5)
        raw: list[dict[str, Any]] = []
        t = 0.0
        for i in range(rng.randint(1, 80)):
            t += rng.uniform(0.05, 0.6)
            raw.append({"word": f" w{i}", "start": t, "end": t + rng.uniform(0.05, 0.5)})
            if rng.random() < 0.2:
                del raw[-1]["start"]
        words = assign_speakers(interpolate_word_times(raw, 0.0, t + 1), turns)
        built = build_segments(words, max_duration_s=5.0)
        _check_segments(built, words)
        assert all(s.end - s.start <= 5.0 or len(s.words) == 1 for s in built)
