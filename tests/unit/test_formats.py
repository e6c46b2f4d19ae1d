"""Rendering transcripts (`whisperx_service.transcripts.formats`), checked by parsing the output back."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import pytest

from whisperx_service.domain.transcript import Segment, Transcript, Word
from whisperx_service.pipeline.post.segments import build_segments
from whisperx_service.transcripts.formats import (
    FORMATS,
    MAX_CUE_S,
    MAX_LINE_CHARS,
    MAX_LINES,
    format_timestamp,
    render,
)
from whisperx_service.transcripts.text import is_trailing_punctuation

# --------------------------------------------------------------------------- independent parsers

_SRT_TIME = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$")
_VTT_TIME = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


@dataclass
class ParsedCue:
    start_ms: int
    end_ms: int
    speaker: str | None
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def parse_srt(body: str) -> list[ParsedCue]:
    assert body.endswith("\n") and "\r" not in body
    cues = []
    for n, block in enumerate(body.strip("\n").split("\n\n"), start=1):
        index, timing, *lines = block.split("\n")
        assert index == str(n)
        m = _SRT_TIME.match(timing)
        assert m, timing
        assert lines and all(line.strip() for line in lines)
        speaker = None
        sm = re.match(r"^\[([^\]]+)\] (.*)$", lines[0])
        if sm:
            speaker, lines[0] = sm.group(1), sm.group(2)
        g = m.groups()
        cues.append(ParsedCue(_ms(*g[:4]), _ms(*g[4:]), speaker, lines))
    return cues


def parse_vtt(body: str) -> list[ParsedCue]:
    header, *blocks = body.strip("\n").split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in blocks:
        timing, *lines = block.split("\n")
        m = _VTT_TIME.match(timing)
        assert m, timing
        assert lines and all(line.strip() for line in lines)
        speaker = None
        vm = re.match(r"^<v ([^>]+)>(.*)$", lines[0])
        if vm:
            speaker, lines[0] = html.unescape(vm.group(1)), vm.group(2)
        # Outside the voice tag no raw markup may remain: "<" starts a tag in WebVTT cue text.
        assert all("<" not in line and ">" not in line for line in lines)
        g = m.groups()
        cues.append(ParsedCue(_ms(*g[:4]), _ms(*g[4:]), speaker, [html.unescape(x) for x in lines]))
    return cues


def parse_tsv(body: str) -> tuple[list[str], list[list[str]]]:
    def unescape(field: str) -> str:
        return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], field)

    header, *rows = body.rstrip("\n").split("\n")
    return header.split("\t"), [[unescape(f) for f in row.split("\t")] for row in rows]


# --------------------------------------------------------------------------- fixtures


def _words(text: str, start: float, step: float, speaker: str | None) -> list[Word]:
    """One word per token, `step` seconds apart, each lasting 80% of the step."""
    out = []
    for i, tok in enumerate(text.split(" ")):
        s = round(start + i * step, 3)
        out.append(Word(word=tok, start=s, end=round(s + 0.8 * step, 3), speaker=speaker, score=0.9))
    return out


def _seg(i: int, words: list[Word], text: str | None = None) -> Segment:
    return Segment(
        id=i,
        start=words[0].start,
        end=words[-1].end,
        text=text if text is not None else " ".join(x.word for x in words),
        speaker=words[0].speaker,
        words=words,
    )


LONG = (
    "This is a rather long monologue that goes on and on, well past the usual limits of a "
    "subtitle cue , so that the renderer has to cut it into several cues at word boundaries."
)


@pytest.fixture
def transcript() -> Transcript:
    long_words = _words(LONG, 1.0, 0.45, "SPEAKER_00")
    segments = [
        _seg(0, long_words, text=LONG.replace(" ,", ",")),
        _seg(1, _words("Yes, <really> & truly.", 25.0, 0.3, "SPEAKER_01")),
        _seg(2, _words("Nobody knows who said this.", 30.0, 0.2, None)),
        # A zero-length segment: the cue must still end after it starts.
        Segment(id=3, start=40.0, end=40.0, text="Hm.", speaker="SPEAKER_00"),
        # A long segment without words: split by text, timed across the segment.
        Segment(
            id=4,
            start=3700.0,
            end=3720.0,
            text="No word times here but the text is long enough that it must be split into cues anyway.",
            speaker="SPEAKER_01",
        ),
    ]
    return Transcript(language="en", duration=3725.0, segments=segments)


def _tokens(seg: Segment) -> list[tuple[str, float, float]]:
    """The displayed tokens of a segment with times: punctuation-only words glued to the previous one."""
    if not seg.words:
        return [(tok, seg.start, seg.end) for tok in seg.text.split()]
    out: list[tuple[str, float, float]] = []
    for x in seg.words:
        if out and is_trailing_punctuation(x.word):
            out[-1] = (out[-1][0] + x.word, out[-1][1], max(out[-1][2], x.end))
        else:
            out.append((x.word, x.start, x.end))
    return out


def _ms_of(t: float) -> int:
    return round(t * 1000)


def _check_cues(cues: list[ParsedCue], t: Transcript) -> None:
    """Cues cover every segment's tokens in order, with the segment's speaker and word times."""
    it = iter(cues)
    for seg in t.segments:
        toks = _tokens(seg)
        pos = 0
        first = True
        while pos < len(toks):
            cue = next(it)
            assert cue.speaker == seg.speaker
            words = cue.text.split(" ")
            assert [w for w, _, _ in toks[pos : pos + len(words)]] == words
            assert cue.end_ms > cue.start_ms
            if first:
                assert cue.start_ms == _ms_of(seg.start)
            elif seg.words:
                assert cue.start_ms == _ms_of(toks[pos][1])
            if pos + len(words) == len(toks):
                assert cue.end_ms == max(_ms_of(seg.end), cue.start_ms + 1)
            elif seg.words:
                assert cue.end_ms == _ms_of(max(e for _, _, e in toks[pos : pos + len(words)]))
            # Subtitle limits: 2 lines of 42 characters, 7 s, unless one word alone breaks them.
            if len(words) > 1:
                assert len(cue.lines) <= MAX_LINES
                assert all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
                assert cue.end_ms - cue.start_ms <= MAX_CUE_S * 1000
            pos += len(words)
            first = False
    assert next(it, None) is None


# --------------------------------------------------------------------------- tests


def test_srt_parses_back_to_the_transcript(transcript: Transcript) -> None:
    body, media_type = render(transcript, "srt")
    assert media_type.startswith("application/x-subrip")
    cues = parse_srt(body.decode("utf-8"))
    _check_cues(cues, transcript)
    # The long segments really were split (otherwise the limits above would be vacuous).
    assert sum(c.speaker == "SPEAKER_00" for c in cues) >= 4
    assert cues[0].start_ms == 1000 and cues[0].lines[0].startswith("This is a rather")
    assert sum(c.start_ms >= 3_700_000 for c in cues) >= 2
    zero = next(c for c in cues if c.text == "Hm.")
    assert (zero.start_ms, zero.end_ms) == (40_000, 40_001)
    assert "01:01:40,000 --> " in body.decode()


def test_vtt_parses_back_with_voice_tags_and_escaping(transcript: Transcript) -> None:
    body, media_type = render(transcript, "VTT")
    assert media_type == "text/vtt; charset=utf-8"
    text = body.decode("utf-8")
    assert text.startswith("WEBVTT\n\n")
    assert "<v SPEAKER_01>Yes, &lt;really&gt; &amp; truly." in text
    cues = parse_vtt(text)
    _check_cues(cues, transcript)
    assert [c.text for c in cues if c.speaker is None] == ["Nobody knows who said this."]


def test_srt_and_vtt_agree(transcript: Transcript) -> None:
    srt = parse_srt(render(transcript, "srt")[0].decode())
    vtt = parse_vtt(render(transcript, "vtt")[0].decode())
    assert [(c.start_ms, c.end_ms, c.speaker, c.lines) for c in srt] == [
        (c.start_ms, c.end_ms, c.speaker, c.lines) for c in vtt
    ]


def test_txt_one_line_per_segment(transcript: Transcript) -> None:
    body, media_type = render(transcript, "txt")
    assert media_type == "text/plain; charset=utf-8"
    lines = body.decode().split("\n")
    assert lines[-1] == ""
    assert lines[:-1] == [f"{s.speaker}: {s.text}" if s.speaker is not None else s.text for s in transcript.segments]
    assert lines[2] == "Nobody knows who said this."


def test_tsv_round_trips_with_escaped_fields() -> None:
    segs = [
        Segment(id=0, start=0.0, end=1.2345, text="tab\there", speaker="SPEAKER_00"),
        Segment(id=1, start=1.5, end=1.5, text="two\nlines \\n not a newline", speaker=None),
        Segment(id=2, start=3601.0004, end=3602.9996, text="plain", speaker="SPEAKER_01"),
    ]
    t = Transcript(language="en", duration=4000, segments=segs)
    body, media_type = render(t, "tsv")
    assert media_type == "text/tab-separated-values; charset=utf-8"
    assert body.decode().count("\n") == 4  # header + one physical line per segment
    header, rows = parse_tsv(body.decode())
    assert header == ["start", "end", "speaker", "text"]
    assert rows == [
        ["0", "1235", "SPEAKER_00", "tab\there"],
        ["1500", "1501", "", "two\nlines \\n not a newline"],
        ["3601000", "3603000", "SPEAKER_01", "plain"],
    ]


def test_json_round_trips(transcript: Transcript) -> None:
    body, media_type = render(transcript, "json")
    assert media_type == "application/json"
    assert Transcript.model_validate_json(body) == transcript


def test_unknown_format_is_refused(transcript: Transcript) -> None:
    with pytest.raises(ValueError, match="docx"):
        render(transcript, "docx")
    assert set(FORMATS) == {"json", "srt", "vtt", "txt", "tsv"}


def test_format_timestamp() -> None:
    assert format_timestamp(3_723_456, ",") == "01:02:03,456"
    assert format_timestamp(0, ".") == "00:00:00.000"
    assert format_timestamp(100 * 3_600_000 + 59_999, ".") == "100:00:59.999"


def test_languages_without_spaces_join_words_without_them() -> None:
    words = [Word(word=c, start=i * 0.5, end=i * 0.5 + 0.4, speaker="SPEAKER_00") for i, c in enumerate("今日は")]
    words.append(Word(word="。", start=1.5, end=1.5, speaker="SPEAKER_00"))
    # Pipeline words carry the text before them in the ASR text: "" between Japanese words.
    t = Transcript(language="ja", duration=2, segments=build_segments(words))
    cues = parse_srt(render(t, "srt")[0].decode())
    assert [(c.text, c.speaker, c.start_ms, c.end_ms) for c in cues] == [("今日は。", "SPEAKER_00", 0, 1500)]


def test_speaker_changes_inside_asr_segments_become_separate_cues() -> None:
    # Pipeline words carry the text before them in the ASR text (" one two three four").
    words = [x.model_copy(update={"word": " " + x.word}) for x in _words("one two three four", 0.0, 0.5, "SPEAKER_00")]
    words[2] = words[2].model_copy(update={"speaker": "SPEAKER_01"})
    words[3] = words[3].model_copy(update={"speaker": "SPEAKER_01"})
    t = Transcript(language="en", duration=2, segments=build_segments(words))
    cues = parse_vtt(render(t, "vtt")[0].decode())
    assert [(c.speaker, c.text, c.start_ms, c.end_ms) for c in cues] == [
        ("SPEAKER_00", "one two", 0, 900),
        ("SPEAKER_01", "three four", 1000, 1900),
    ]
