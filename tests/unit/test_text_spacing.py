"""Segment text is WhisperX's own text cut at word boundaries, never a re-join of word tokens.

Covers the whole text path without models: Whisper's word units grouped into words
(`align_whisper`), each word carrying the text before it (`words_of_segments`), chunks merged,
segments split at speaker changes (`build_segments`) and subtitle cues cut at words (`formats`).
"""

from __future__ import annotations

from typing import Any

from whisperx_service.domain.transcript import SpeakerTurn, Transcript, Word
from whisperx_service.pipeline.audio.chunks import Chunk
from whisperx_service.pipeline.post.merge import merge_chunk_words, normalise_word
from whisperx_service.pipeline.post.segments import build_segments
from whisperx_service.pipeline.post.speakers import assign_speakers
from whisperx_service.pipeline.stages.align_whisper import _Unit, _words
from whisperx_service.pipeline.stages.words import words_of_segments
from whisperx_service.transcripts.formats import subtitle_cues
from whisperx_service.transcripts.text import words_with_spacing

SR = 16_000


def aligned(text: str, start: float, step: float, words: list[str] | None = None) -> dict[str, Any]:
    """A WhisperX segment with `text` and its words (its space split unless given), `step` s each."""
    tokens = text.split() if words is None else words
    timed = [{"word": t, "start": start + i * step, "end": start + (i + 0.8) * step} for i, t in enumerate(tokens)]
    return {"start": start, "end": start + len(tokens) * step, "text": text, "words": timed}


def turn(speaker: str, start: float, end: float) -> SpeakerTurn:
    return SpeakerTurn(speaker=speaker, start=start, end=end)


# --------------------------------------------------------------------------- words_with_spacing


def test_each_word_keeps_the_text_before_it() -> None:
    text = ' She was a cold-hearted, ill-disposed woman. It ended 5-5 ("e-mail me").'
    out = words_with_spacing(text, text.split())
    assert out[3] == " cold-hearted," and out[-2] == ' ("e-mail'
    assert "".join(out) == text
    assert [x.strip() for x in out] == text.split()
    # Whitespace as it is in the text; "" where two words touch.
    assert words_with_spacing(" a  b\tc", ["a", "b", "c"]) == [" a", "  b", "\tc"]
    assert words_with_spacing(" cold-hearted", ["cold", "-hearted"]) == [" cold", "-hearted"]
    # The first word keeps the leading whitespace, or gets the separator when there is none.
    assert words_with_spacing("Hello world", ["Hello", "world"]) == [" Hello", " world"]
    assert words_with_spacing(" 今日は、いい天気。", ["今日", "は、", "いい", "天気。"], "") == [
        " 今日",
        "は、",
        "いい",
        "天気。",
    ]
    assert words_with_spacing("今日は", ["今日", "は"], "") == ["今日", "は"]
    # A word that is not in the text gets the separator; empty words add nothing.
    assert words_with_spacing(" a b", ["a", "X", "", "b"]) == [" a", " X", "", " b"]


# --------------------------------------------------------------------------- whisper backend word units


def unit(text: str, start: float | None, end: float | None, score: float | None = 0.9, tokens: int = 1) -> _Unit:
    return _Unit(text, list(range(tokens)), start, end, score)


def test_whisper_units_are_grouped_into_whitespace_separated_words() -> None:
    # Whisper's tokenizer starts a unit at each punctuation token: " cold" "-hearted", " 5" "-5".
    units = [
        unit(" She", 0.0, 0.2),
        unit(" was", 0.2, 0.4),
        unit(" cold", 0.5, 0.7, 0.9, tokens=1),
        unit("-hearted", 0.7, 1.0, 0.5, tokens=3),
        unit(" -", 1.0, 1.1),  # a dash between spaces is a word, as in WhisperX's space split
        unit(" 5", 1.2, 1.4),
        unit("-5", 1.4, 1.6),
        unit(".", 1.6, 1.6),
        unit(" e", None, None, None),
        unit("-mail", None, None, None),
        unit(" ", None, None, None),
        unit("!", None, None, None),  # after a whitespace unit: a word of its own
    ]
    words = _words(units, "en")
    assert [x["word"] for x in words] == ["She", "was", "cold-hearted", "-", "5-5.", "e-mail", "!"]
    hearted = words[2]
    assert (hearted["start"], hearted["end"]) == (0.5, 1.0)
    assert hearted["score"] == round((0.9 * 1 + 0.5 * 3) / 4, 3)  # mean token probability
    assert words[5] == {"word": "e-mail", "start": None, "end": None, "score": None}


def test_languages_without_spaces_keep_units_and_glue_punctuation() -> None:
    units = [unit(" 「", 0.0, 0.1), unit("今日", 0.1, 0.4), unit("は", 0.4, 0.5), unit("、", 0.5, 0.5)]
    units += [unit("いい", 0.6, 0.8), unit("天気", 0.8, 1.0), unit("。", 1.0, 1.0), unit("」", 1.0, 1.0)]
    words = _words(units, "ja")
    assert [x["word"] for x in words] == ["「今日", "は、", "いい", "天気。」"]
    assert (words[0]["start"], words[0]["end"]) == (0.0, 0.4)
    text = " 「今日は、いい天気。」"
    assert "".join(words_with_spacing(text, [x["word"] for x in words], "")).strip() == text.strip()


# --------------------------------------------------------------------------- segments


def test_split_at_a_speaker_change_inside_a_segment_cuts_whisperx_text() -> None:
    text = ' She was cold-hearted, he said: "5-5, really?" Yes,e-mail me.'
    # The third WhisperX-style word list has a word that touches the previous one ("" between).
    segs = [aligned(text, 0.0, 0.5, words=[*text.split()[:-2], "Yes,", "e-mail", "me."])]
    words = words_of_segments(segs, 10.0, 100.0, " ")
    assert [x.word for x in words][-3:] == [" Yes,", "e-mail", " me."]
    turns = [turn("A", 10.0, 12.5), turn("B", 12.5, 16.0)]  # B from the 6th word ('"5-5,')
    segments = build_segments(assign_speakers(words, turns))
    assert [(s.speaker, s.text) for s in segments] == [
        ("A", "She was cold-hearted, he said:"),
        ("B", '"5-5, really?" Yes,e-mail me.'),
    ]
    assert " ".join(s.text for s in segments) == text.strip()
    public = [x.word for s in segments for x in s.words]
    assert public == [*text.split()[:-2], "Yes,", "e-mail", "me."]  # no leading spaces in the result
    assert all(x.start >= 10.0 for s in segments for x in s.words)


def test_segments_of_unaligned_and_spaceless_text() -> None:
    # Alignment off: the words are the text's whitespace pieces, the text is kept as is.
    plain = {"start": 0.0, "end": 3.0, "text": " The match ended 5-5 after extra time."}
    (seg,) = build_segments(words_of_segments([plain], 0.0, 10.0, " "))
    assert seg.text == "The match ended 5-5 after extra time."
    # Japanese: no separator anywhere, also where a speaker change cuts the segment.
    ja = aligned("今日は、いい天気。", 0.0, 0.5, words=["今日", "は、", "いい", "天気。"])
    words = assign_speakers(words_of_segments([ja], 0.0, 10.0, ""), [turn("A", 0, 1.0), turn("B", 1.0, 2.0)])
    assert [(s.speaker, s.text) for s in build_segments(words)] == [("A", "今日は、"), ("B", "いい天気。")]


def test_merged_chunks_keep_the_text_and_compare_words_without_spacing() -> None:
    assert normalise_word(" Cold-hearted,") == normalise_word("cold-hearted") == "coldhearted"
    assert normalise_word(" -") == normalise_word("-") == "-"
    text = " It was a cold-hearted act, and the match ended 5-5 after extra time."
    first = words_of_segments([aligned(text, 0.0, 0.5)], 0.0, 7.0, " ")
    # The later chunk heard the same words from "cold-hearted" on, 40 ms later, in its own segment.
    later_text = " cold-hearted act, and the match ended 5-5 after extra time."
    second = words_of_segments([aligned(later_text, 1.54, 0.5)], 0.0, 20.0, " ")
    chunks = [Chunk(0, 0, 7 * SR), Chunk(1, 1 * SR, 20 * SR)]
    merged = merge_chunk_words([(chunks[0], first), (chunks[1], second)], cuts=[4.0])
    (seg,) = build_segments(merged)
    assert seg.text == text.strip()


def test_subtitle_cues_cut_the_segment_text_at_word_boundaries() -> None:
    text = (
        "She was a cold-hearted and ill-disposed woman, I don't know why; the match ended 5-5 "
        "after extra time, so please send me an e-mail tomorrow."
    )
    # A word list whose "don" + "'t" touch (as an aligner splitting at apostrophes would give).
    tokens = text.replace("don't", "don 't").split()
    segs = [aligned(" " + text, 0.0, 0.4, words=tokens)]
    segments = build_segments(words_of_segments(segs, 0.0, 100.0, " "), max_duration_s=100.0)
    assert [s.text for s in segments] == [text]
    cues = subtitle_cues(Transcript(language="en", duration=20.0, segments=segments))
    assert len(cues) >= 2  # the segment really was cut
    assert " ".join(line for c in cues for line in c.lines) == text
    assert all(" -" not in line and " '" not in line for c in cues for line in c.lines)

    ja = "今日はとてもいい天気ですね。明日も晴れるといいですね。週末は山に行きます。"
    words = [Word(word=ch, start=i * 0.5, end=i * 0.5 + 0.4, speaker="A") for i, ch in enumerate(ja)]
    cues = subtitle_cues(Transcript(language="ja", duration=30.0, segments=build_segments(words)))
    assert len(cues) >= 2 and "".join(line for c in cues for line in c.lines) == ja
