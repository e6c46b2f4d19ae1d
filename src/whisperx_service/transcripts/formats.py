"""Render a `Transcript` as json, srt, vtt, txt or tsv (`render`). Pure Python, no I/O.

Formats and the conventions followed:

- **json**: the `Transcript` model itself (`result.json`), `application/json`.
- **srt**: SubRip. Numbered cues from 1, a timing line `HH:MM:SS,mmm --> HH:MM:SS,mmm`, one or
  more text lines, a blank line (the de facto SubRip format, as written by openai-whisper's
  `WriteSRT`). The speaker prefixes the text: `[SPEAKER_00] text`.
- **vtt**: W3C WebVTT (https://www.w3.org/TR/webvtt1/): the `WEBVTT` header, cue timings
  `HH:MM:SS.mmm --> HH:MM:SS.mmm`, the speaker as a voice span `<v SPEAKER_00>text` (section
  4.2.2 "WebVTT cue voice span"), and `&`, `<`, `>` in text escaped as `&amp;`, `&lt;`, `&gt;`
  (section 4.2.2, "WebVTT cue text"; a raw `<` would start a tag and `-->` a timing).
- **txt**: one line per segment, `SPEAKER_00: text` (no prefix when the speaker is unknown).
- **tsv**: openai-whisper's TSV writer (`whisper.utils.WriteTSV`): a header row and one row per
  segment with integer milliseconds (`round(1000 * seconds)`), here with a speaker column:
  `start\\tend\\tspeaker\\ttext`. Tabs, newlines and backslashes inside fields are escaped as
  `\\t`, `\\n`, `\\r`, `\\\\` (the "linear TSV" convention, also PostgreSQL's COPY text format), so
  every row is one line and the file round-trips exactly; openai-whisper instead replaces tabs
  with spaces, which loses them.

Subtitle cues (srt, vtt) follow the usual subtitling limits: at most 2 lines of 42 characters
and at most 7 seconds per cue (e.g. the BBC and Netflix timed-text style guides). A segment that
does not fit is cut into several cues at word boundaries, each cue timed by its own words (first
word's start, last word's end), its text the segment's text between those boundaries.
Trailing punctuation tokens (`is_trailing_punctuation`) stay glued to the word before them. The
speaker prefix or voice tag does not count toward the 42 characters.

Every cue and row has `end > start` in whole milliseconds: a zero-length one gets 1 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from whisperx_service.domain.transcript import Segment, Transcript
from whisperx_service.transcripts.text import is_trailing_punctuation, word_separator, words_with_spacing
from whisperx_service.transcripts.timing import interpolate_word_times


class ResultFormat(StrEnum):
    """The formats a transcript renders to (the `format` query of the result route)."""

    json = "json"  # the full Transcript (segments, words, speakers, models, timings)
    srt = "srt"  # SubRip subtitles
    vtt = "vtt"  # WebVTT subtitles
    txt = "txt"  # plain text, one segment per line
    tsv = "tsv"  # start, end (ms), speaker, text


#: The formats `render` accepts, as strings.
FORMATS: tuple[str, ...] = tuple(f.value for f in ResultFormat)
#: Media type of each format's body (text formats are always UTF-8).
MEDIA_TYPES: dict[ResultFormat, str] = {
    ResultFormat.json: "application/json",
    ResultFormat.srt: "application/x-subrip; charset=utf-8",
    ResultFormat.vtt: "text/vtt; charset=utf-8",
    ResultFormat.txt: "text/plain; charset=utf-8",
    ResultFormat.tsv: "text/tab-separated-values; charset=utf-8",
}
#: Longest subtitle cue (seconds) before it is split at a word boundary.
MAX_CUE_S = 7.0
#: Characters per subtitle line, and lines per cue (2 x 42: the usual subtitling convention).
MAX_LINE_CHARS = 42
MAX_LINES = 2
#: Header row of the TSV format.
TSV_HEADER = "start\tend\tspeaker\ttext"


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: text lines shown from `start` to `end` (seconds) for `speaker`."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None


@dataclass(frozen=True)
class _Piece:
    """A word with the trailing punctuation tokens that follow it glued on, and the text that
    precedes it in the segment's text (`gap`, dropped at the start of a line)."""

    gap: str
    text: str
    start: float
    end: float


def _clean(text: str) -> str:
    """Collapse all whitespace (newlines included) to single spaces; a blank line would end a cue."""
    return " ".join(text.split())


def to_ms(seconds: float) -> int:
    """Seconds -> whole milliseconds, rounding half up; negative or non-finite times become 0."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return math.floor(seconds * 1000.0 + 0.5)


def cue_span_ms(start: float, end: float) -> tuple[int, int]:
    """A cue's `(start_ms, end_ms)` with `end_ms > start_ms` (a zero-length or reversed span gets 1 ms)."""
    a = to_ms(start)
    return a, max(to_ms(end), a + 1)


def format_timestamp(ms: int, decimal_marker: str) -> str:
    """`HH:MM:SS<marker>mmm` for a time in milliseconds (hours grow past 2 digits when needed).

    `decimal_marker` is "," for SubRip and "." for WebVTT.
    """
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, msec = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal_marker}{msec:03d}"


def _pieces(seg: Segment, sep: str) -> list[_Piece]:
    """The segment's displayable tokens with times and the segment text's spacing before each; a
    segment without words gets its text's tokens timed by character length across the segment
    (`interpolate_word_times`)."""
    text = _clean(seg.text)
    words = seg.words
    if not words:
        tokens = text.split() if sep else list(text.replace(" ", ""))
        words = interpolate_word_times([{"word": t} for t in tokens], seg.start, max(seg.end, seg.start))
    spaced = words_with_spacing(text, [_clean(w.word) for w in words], sep)
    out: list[_Piece] = []
    for w, item in zip(words, spaced, strict=True):
        tok = item.lstrip()
        if not tok:
            continue
        gap = item[: len(item) - len(tok)]
        if out and is_trailing_punctuation(tok):
            p = out[-1]
            out[-1] = _Piece(p.gap, p.text + gap + tok, p.start, max(p.end, w.end))
        else:
            out.append(_Piece(gap, tok, w.start, w.end))
    return out


def _wrap(pieces: Sequence[_Piece], width: int) -> list[str]:
    """Greedy line filling: as many pieces per line as fit in `width` characters, each after its
    gap (a longer piece gets a line of its own, without its gap)."""
    lines: list[str] = []
    for p in pieces:
        if lines and len(lines[-1]) + len(p.gap) + len(p.text) <= width:
            lines[-1] += p.gap + p.text
        else:
            lines.append(p.text)
    return lines


def subtitle_cues(
    t: Transcript,
    *,
    max_cue_s: float = MAX_CUE_S,
    max_line_chars: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
) -> list[Cue]:
    """Cut the transcript into subtitle cues.

    A segment that lasts at most `max_cue_s` seconds and whose text wraps into at most
    `max_lines` lines of `max_line_chars` characters is one cue with the segment's own text and
    times. Otherwise its words are packed greedily into cues: a word goes into the current cue
    while the cue still wraps into `max_lines` lines and lasts at most `max_cue_s` seconds, else
    it starts the next cue. A single word that breaks a limit alone still gets a cue. Segments
    with no text give no cue, but for a speaker turn of a job that transcribes nothing
    (`task=diarize`: no text, no words, a speaker), which gets one cue with no lines. A cue's
    text is the segment's text cut at those word boundaries,
    with its spacing and punctuation (each word is located in the segment text,
    `words_with_spacing`; "" between words of languages written without spaces); a line break
    replaces the spacing where a line ends.
    """
    sep = word_separator(t.language)
    cues: list[Cue] = []
    for seg in t.segments:
        text = _clean(seg.text)
        if not text and not seg.words and seg.speaker is not None:
            cues.append(Cue(seg.start, seg.end, (), seg.speaker))
            continue
        if text and sep and seg.end - seg.start <= max_cue_s:
            lines = _wrap([_Piece(" ", tok, seg.start, seg.end) for tok in text.split(" ")], max_line_chars)
            if len(lines) <= max_lines:
                cues.append(Cue(seg.start, seg.end, tuple(lines), seg.speaker))
                continue
        cur: list[_Piece] = []
        cur_lines: list[str] = []
        for p in _pieces(seg, sep):
            if cur:
                lines = _wrap([*cur, p], max_line_chars)
                long = max(max(q.end for q in cur), p.end) - cur[0].start > max_cue_s
                if len(lines) <= max_lines and not long:
                    cur.append(p)
                    cur_lines = lines
                    continue
                cues.append(Cue(cur[0].start, max(q.end for q in cur), tuple(cur_lines), seg.speaker))
            cur, cur_lines = [p], [p.text]
        if cur:
            cues.append(Cue(cur[0].start, max(q.end for q in cur), tuple(cur_lines), seg.speaker))
    return cues


def _srt(t: Transcript) -> str:
    blocks = []
    for i, c in enumerate(subtitle_cues(t), start=1):
        a, b = cue_span_ms(c.start, c.end)
        body = "\n".join(c.lines)
        if c.speaker is not None:
            body = f"[{_clean(c.speaker)}] {body}" if body else f"[{_clean(c.speaker)}]"
        blocks.append(f"{i}\n{format_timestamp(a, ',')} --> {format_timestamp(b, ',')}\n{body}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt(t: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for c in subtitle_cues(t):
        a, b = cue_span_ms(c.start, c.end)
        body = "\n".join(_vtt_escape(line) for line in c.lines)
        if c.speaker is not None:
            body = f"<v {_vtt_escape(_clean(c.speaker))}>{body}"
        blocks.append(f"{format_timestamp(a, '.')} --> {format_timestamp(b, '.')}\n{body}\n")
    return "\n".join(blocks)


def _txt(t: Transcript) -> str:
    lines = []
    for seg in t.segments:
        text = _clean(seg.text)
        if text:
            lines.append(f"{_clean(seg.speaker)}: {text}" if seg.speaker is not None else text)
    return "".join(line + "\n" for line in lines)


def tsv_escape(field: str) -> str:
    """Escape a TSV field: `\\` -> `\\\\`, tab -> `\\t`, newline -> `\\n`, carriage return -> `\\r`."""
    return field.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _tsv(t: Transcript) -> str:
    rows = [TSV_HEADER]
    for seg in t.segments:
        a, b = cue_span_ms(seg.start, seg.end)
        rows.append(f"{a}\t{b}\t{tsv_escape(seg.speaker or '')}\t{tsv_escape(seg.text.strip())}")
    return "".join(r + "\n" for r in rows)


def render(t: Transcript, fmt: ResultFormat | str) -> tuple[bytes, str]:
    """Render the transcript in format `fmt` (a `ResultFormat`, or its name in any case).

    Returns:
        `(body, media_type)`: the UTF-8 body and its media type (`MEDIA_TYPES`).

    Raises:
        ValueError: `fmt` is not one of `FORMATS`.
    """
    try:
        key = ResultFormat(fmt.strip().lower())
    except ValueError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    writers = {
        ResultFormat.json: lambda: t.model_dump_json(),
        ResultFormat.srt: lambda: _srt(t),
        ResultFormat.vtt: lambda: _vtt(t),
        ResultFormat.txt: lambda: _txt(t),
        ResultFormat.tsv: lambda: _tsv(t),
    }
    return writers[key]().encode("utf-8"), MEDIA_TYPES[key]
