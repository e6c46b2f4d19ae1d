"""An align job's transcript: reading the `transcript` field, placing plain text on ASR segments,
and which stages each kind of job runs."""

from __future__ import annotations

import pytest

from whisperx_service.domain.jobs import JobOptions, Stage, skipped_stages
from whisperx_service.domain.script import Script, ScriptSegment, parse_script
from whisperx_service.domain.transcript import Word
from whisperx_service.pipeline.stages.script import anchor_text, clip_to_speech, timed_segments


def test_plain_text_and_timed_json_are_read() -> None:
    assert parse_script("  Hello there.\nGeneral Kenobi! ") == Script(text="Hello there.\nGeneral Kenobi!")
    result = {"language": "en", "segments": [{"id": 1, "start": 3.0, "end": 4.0, "text": " B", "speaker": "S"},
                                             {"id": 0, "start": 0.5, "end": 2.0, "text": " A a", "words": []},
                                             {"id": 2, "start": 5.0, "end": 6.0, "text": "  "}]}  # fmt: skip
    import json

    got = parse_script(json.dumps(result))
    assert got.segments == [
        ScriptSegment(start=0.5, end=2.0, text=" A a"),
        ScriptSegment(start=3.0, end=4.0, text=" B"),
    ]
    assert got.timed and got.words() == ["A", "a", "B"]
    assert parse_script('[{"start": 0, "end": 1, "text": "x"}]').words() == ["x"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{oops", "not valid JSON"),
        ('{"text": "x"}', "`segments` list"),
        ('[{"start": 0, "text": "x"}]', "segment is invalid"),
        ('[{"start": 1, "end": 1, "text": "x"}]', "end must be after"),
        ('["x"]', "must be an object"),
        ('{"segments": [{"start": 0, "end": 1, "text": " "}]}', "no words"),
        ("   ", "no words"),
    ],
)
def test_unreadable_transcripts_say_why(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_script(raw)


def _words(text: str) -> list[str]:
    return text.split()


SEGS = [
    {"start": 0.0, "end": 4.0, "text": " Good morning did you finish"},
    {"start": 5.0, "end": 9.0, "text": " the quarterly report yesterday"},
]


def test_plain_text_takes_the_spans_of_the_segments_its_words_are_heard_in() -> None:
    words = _words("Good morning. Did you finish the quarterly report yesterday?")
    assert anchor_text(words, SEGS, first=True, last=True) == [
        {"start": 0.0, "end": 4.0, "text": "Good morning. Did you finish"},
        {"start": 5.0, "end": 9.0, "text": "the quarterly report yesterday?"},
    ]


def test_words_the_asr_missed_between_two_segments_join_both_spans() -> None:
    words = _words("Good morning. Did you finish it, Maria, the quarterly report yesterday?")
    assert anchor_text(words, SEGS, first=True, last=True) == [
        {"start": 0.0, "end": 9.0, "text": " ".join(words)},
    ]


def test_a_middle_chunk_takes_only_its_matched_range_and_the_edges_take_the_rest() -> None:
    words = _words("Hello all. Good morning did you finish the quarterly report yesterday? Bye now.")
    mid = anchor_text(words, SEGS, first=False, last=False)
    assert " ".join(s["text"] for s in mid) == "Good morning did you finish the quarterly report yesterday?"
    edges = anchor_text(words, SEGS, first=True, last=True)
    assert " ".join(s["text"] for s in edges) == " ".join(words)
    assert anchor_text(["zzz"], SEGS, first=False, last=True) == []
    assert anchor_text(["zzz"], SEGS, first=True, last=True) == [{"start": 0.0, "end": 9.0, "text": "zzz"}]


def test_timed_segments_are_cut_to_the_chunk_relative_to_its_origin() -> None:
    script = Script(
        segments=[ScriptSegment(start=1.0, end=3.0, text=" a"), ScriptSegment(start=9.0, end=12.0, text="b")]
    )
    assert timed_segments(script, 8.0, 8.5, 20.0) == [{"start": 1.0, "end": 4.0, "text": "b"}]
    assert timed_segments(script, 0.0, 0.0, 10.0) == [
        {"start": 1.0, "end": 3.0, "text": "a"},
        {"start": 9.0, "end": 10.0, "text": "b"},
    ]


def test_the_stages_each_task_skips() -> None:
    assert skipped_stages(JobOptions()) == frozenset()
    assert skipped_stages(JobOptions(task="diarize")) == {Stage.transcribe, Stage.align}
    assert skipped_stages(JobOptions(rediarize_of="a" * 32)) == {Stage.transcribe, Stage.align}
    assert skipped_stages(JobOptions(task="align", align=False, diarize=False)) == {Stage.diarize}
    assert skipped_stages(JobOptions(task="align"), timed_script=True) == {Stage.transcribe}
    assert JobOptions(task="translate").whisper_task == "translate"
    assert JobOptions(task="align").whisper_task == "transcribe"


def test_words_fit_the_speech_regions_they_start_in() -> None:
    words = [Word(word="a", start=1.0, end=2.9), Word(word="b", start=1.5, end=2.0), Word(word="c", start=3.2, end=3.5),
             Word(word="d", start=6.0, end=7.0)]  # fmt: skip
    got = clip_to_speech(words, [(3.0, 4.0), (0.5, 2.2)])
    assert [(w.start, w.end) for w in got] == [(0.5, 2.2), (1.5, 2.0), (3.0, 3.5), (6.0, 7.0)]


def test_a_diarize_only_result_shows_its_turns_in_every_format() -> None:
    from whisperx_service.domain.transcript import SpeakerTurn, Transcript
    from whisperx_service.pipeline.post.segments import turn_segments
    from whisperx_service.transcripts.formats import render

    turns = [
        SpeakerTurn(start=2.0, end=3.5, speaker="SPEAKER_01"),
        SpeakerTurn(start=0.5, end=1.8, speaker="SPEAKER_00"),
    ]
    t = Transcript(language="und", duration=4.0, segments=turn_segments(turns), speaker_turns=turns)
    assert render(t, "srt")[0].decode() == (
        "1\n00:00:00,500 --> 00:00:01,800\n[SPEAKER_00]\n\n2\n00:00:02,000 --> 00:00:03,500\n[SPEAKER_01]\n"
    )
    assert "00:00:02.000 --> 00:00:03.500\n<v SPEAKER_01>\n" in render(t, "vtt")[0].decode()
    assert render(t, "tsv")[0].decode().splitlines()[1:] == ["500\t1800\tSPEAKER_00\t", "2000\t3500\tSPEAKER_01\t"]
