"""OpenAI's response shapes of a transcript (`transcripts/openai.py`) and its form (`api/openai_form.py`).

The bodies are validated with the official `openai` package's own types, so a field OpenAI's
clients need and we forgot fails here.
"""

from __future__ import annotations

import zlib

import pytest
from openai.types.audio import Transcription, TranscriptionDiarized, TranscriptionVerbose
from openai.types.audio.transcription_text_delta_event import TranscriptionTextDeltaEvent
from openai.types.audio.transcription_text_done_event import TranscriptionTextDoneEvent
from openai.types.audio.transcription_text_segment_event import TranscriptionTextSegmentEvent

from whisperx_service.api.openai_form import parse_openai
from whisperx_service.domain.transcript import Segment, Transcript, Word
from whisperx_service.errors import InvalidParameter, Unsupported
from whisperx_service.transcripts.openai import LiveDeltas, compression_ratio, render_openai, stream_events


def _transcript(language: str = "en") -> Transcript:
    w = [
        Word(word="Hello", start=0.5, end=0.9, score=0.9, speaker="SPEAKER_00"),
        Word(word="there.", start=1.0, end=1.4, score=0.8, speaker="SPEAKER_00"),
        Word(word="Hi!", start=31.0, end=31.5, score=0.7, speaker="SPEAKER_01"),
    ]
    return Transcript(
        language=language,
        duration=40.25,
        segments=[
            Segment(id=0, start=0.5, end=1.4, text="Hello there.", speaker="SPEAKER_00", words=w[:2]),
            Segment(id=1, start=31.0, end=31.5, text="Hi!", speaker="SPEAKER_01", words=w[2:]),
        ],
    )


def test_json_and_text() -> None:
    body, media = render_openai(_transcript(), "json", task="transcribe")
    assert media == "application/json"
    parsed = Transcription.model_validate(body)
    assert parsed.text == "Hello there. Hi!"
    assert body == {"text": "Hello there. Hi!", "usage": {"type": "duration", "seconds": 40.25}}
    text, media = render_openai(_transcript(), "text", task="transcribe")
    assert text == "Hello there. Hi!\n" and media.startswith("text/plain")


def test_languages_without_spaces_join_without_them() -> None:
    body, _ = render_openai(_transcript("ja"), "json", task="transcribe")
    assert isinstance(body, dict) and body["text"] == "Hello there.Hi!"


def test_verbose_json() -> None:
    body, _ = render_openai(
        _transcript(), "verbose_json", task="transcribe", granularities=frozenset({"word", "segment"}), temperature=0.2
    )
    v = TranscriptionVerbose.model_validate(body)
    assert v.language == "english" and v.duration == 40.25
    segs = v.segments or []
    assert [s.seek for s in segs] == [0, 3000]  # the 30 s window of each start, in 10 ms frames
    assert segs[0].text == " Hello there." and segs[0].temperature == 0.2
    raw = b"Hello there."
    assert segs[0].compression_ratio == round(len(raw) / len(zlib.compress(raw)), 4)
    assert (segs[1].model_extra or {})["speaker"] == "SPEAKER_01"
    words = v.words or []
    assert [(w.word, w.start, w.end) for w in words] == [("Hello", 0.5, 0.9), ("there.", 1.0, 1.4), ("Hi!", 31.0, 31.5)]
    assert (words[2].model_extra or {}) == {"speaker": "SPEAKER_01", "score": 0.7}
    only_segments, _ = render_openai(_transcript(), "verbose_json", task="transcribe")
    assert isinstance(only_segments, dict) and "words" not in only_segments
    translated, _ = render_openai(_transcript("de"), "verbose_json", task="translate")
    assert isinstance(translated, dict) and translated["language"] == "english" and translated["task"] == "translate"
    german, _ = render_openai(_transcript("de"), "verbose_json", task="transcribe")
    assert isinstance(german, dict) and german["language"] == "german"


def test_diarized_json() -> None:
    body, _ = render_openai(_transcript(), "diarized_json", task="transcribe")
    d = TranscriptionDiarized.model_validate(body)
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in d.segments] == [
        ("seg_0", "SPEAKER_00", "Hello there.", 0.5, 1.4),
        ("seg_1", "SPEAKER_01", "Hi!", 31.0, 31.5),
    ]
    assert d.text == "Hello there. Hi!"


def test_srt_and_vtt_are_the_services_renderings() -> None:
    srt, media = render_openai(_transcript(), "srt", task="transcribe")
    assert isinstance(srt, str) and srt.startswith("1\n00:00:00,500 --> 00:00:01,400\n[SPEAKER_00] Hello there.")
    assert media.startswith("application/x-subrip")
    vtt, media = render_openai(_transcript(), "vtt", task="transcribe")
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT") and media.startswith("text/vtt")


def test_stream_events_join_to_the_done_text() -> None:
    events = stream_events(_transcript(), diarized=True)
    assert [e["type"] for e in events] == [
        "transcript.text.delta",
        "transcript.text.segment",
        "transcript.text.delta",
        "transcript.text.segment",
        "transcript.text.done",
    ]
    deltas = [TranscriptionTextDeltaEvent.model_validate(e) for e in events if e["type"].endswith("delta")]
    # The done event's usage is the duration shape of the other answers; the SDK's type names only
    # the token shape of OpenAI's gpt-4o models (its client builds events without validating them).
    assert events[-1]["usage"] == {"type": "duration", "seconds": 40.25}
    done = TranscriptionTextDoneEvent.model_validate({k: v for k, v in events[-1].items() if k != "usage"})
    assert "".join(d.delta for d in deltas) == done.text == "Hello there. Hi!"
    seg = TranscriptionTextSegmentEvent.model_validate(events[1])
    assert seg.speaker == "SPEAKER_00" and deltas[0].segment_id == seg.id
    plain = stream_events(_transcript(), diarized=False)
    assert [e["type"] for e in plain] == ["transcript.text.delta"] * 2 + ["transcript.text.done"]


def _final(k: int, text: str, language: str = "en") -> dict[str, str]:
    """A stored progress event's fields that say chunk k's text is final (as the worker sends them)."""
    return {"type": "progress", "stage": "diarize", "final_chunk": str(k), "final_text": text, "language": language}


def test_live_deltas_send_each_chunk_once_in_order_then_the_rest() -> None:
    live = LiveDeltas()
    sent = [live.feed(f) for f in (_final(0, "Hello"), _final(0, "Hello"), {"type": "progress"}, _final(1, " there."))]
    assert sent == [
        {"type": "transcript.text.delta", "delta": "Hello"},
        None,  # a rerun's repeat
        None,  # an ordinary progress event
        {"type": "transcript.text.delta", "delta": " there."},
    ]
    events, whole = live.finish(_transcript(), diarized=True)
    assert whole
    kinds = [e["type"] for e in events]
    assert kinds == ["transcript.text.delta", *["transcript.text.segment"] * 2, "transcript.text.done"]
    assert events[0]["delta"] == " Hi!"
    assert "Hello" + " there." + events[0]["delta"] == events[-1]["text"] == "Hello there. Hi!"
    for e in events[1:3]:
        TranscriptionTextSegmentEvent.model_validate(e)


def test_live_deltas_stop_at_a_gap_and_fall_back_without_any() -> None:
    live = LiveDeltas()
    assert live.feed(_final(1, "there.")) is None  # chunk 0's event was trimmed: no live deltas at all
    assert live.feed(_final(2, "Hi!")) is None
    events, whole = live.finish(_transcript(), diarized=False)
    assert whole and events == stream_events(_transcript(), diarized=False)


def test_live_deltas_that_are_not_a_prefix_still_end_with_the_whole_text() -> None:
    live = LiveDeltas()
    assert live.feed(_final(0, "Hullo")) is not None
    events, whole = live.finish(_transcript(), diarized=False)
    assert not whole
    assert events == [
        {"type": "transcript.text.done", "text": "Hello there. Hi!", "usage": {"type": "duration", "seconds": 40.25}}
    ]


def test_live_deltas_of_a_language_without_spaces() -> None:
    live = LiveDeltas()
    assert live.feed(_final(0, "Hello there.", "ja")) == {"type": "transcript.text.delta", "delta": "Hello there."}
    events, whole = live.finish(_transcript("ja"), diarized=False)
    assert whole and events[0]["delta"] == "Hi!"


def test_compression_ratio_of_a_repetition_loop_is_high() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("the " * 50) > 2.4 > compression_ratio("A short, ordinary sentence.")


def test_form_maps_onto_job_options() -> None:
    req = parse_openai(
        {"model": "whisper-1", "prompt": "Names: Maria.", "response_format": "diarized_json", "num_speakers": "2"},
        {"timestamp_granularities[]": ["word", "segment"], "keywords[]": ["Maria", "Lisbon"]},
        "transcribe",
    )
    assert req.options.diarize and req.options.num_speakers == 2 and req.options.align
    assert req.options.initial_prompt == "Names: Maria." and req.options.hotwords == "Maria Lisbon"
    assert req.granularities == {"word", "segment"} and not req.stream
    plain = parse_openai({"model": "gpt-4o-transcribe", "stream": "true", "language": "EN"}, {}, "transcribe")
    assert not plain.options.diarize and plain.stream and plain.options.language == "en"
    assert parse_openai({"model": "gpt-4o-transcribe-diarize"}, {}, "transcribe").options.diarize
    translate = parse_openai({}, {}, "translate")
    assert translate.options.task == "translate" and not translate.options.align
    assert parse_openai({}, {"languages[]": ["fr"]}, "transcribe").options.language == "fr"


@pytest.mark.parametrize(
    ("fields", "multi", "param"),
    [
        ({"response_format": "xml"}, {}, "response_format"),
        ({}, {"timestamp_granularities[]": ["char"]}, "timestamp_granularities"),
        ({"temperature": "hot"}, {}, "temperature"),
        ({"temperature": "1.5"}, {}, "temperature"),
        ({"stream": "maybe"}, {}, "stream"),
        ({"response_format": "diarized_json", "diarize": "false"}, {}, "diarize"),
        ({"language": "english"}, {}, "language"),
        ({"min_speakers": "3", "max_speakers": "2"}, {}, None),
    ],
)
def test_bad_parameters_are_invalid_parameter(fields: dict[str, str], multi: dict[str, list[str]], param: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        parse_openai(fields, multi, "transcribe")
    assert e.value.http_status == 400 and e.value.param == param


def test_known_speakers_are_unsupported_and_translations_have_no_diarized_json() -> None:
    with pytest.raises(Unsupported):
        parse_openai({}, {"known_speaker_names[]": ["agent"]}, "transcribe")
    with pytest.raises(InvalidParameter):
        parse_openai({"response_format": "diarized_json"}, {}, "translate")
